"""What an experiment writes: the summary of ``results.json``, CSV tables and figures.

:func:`summarize` turns the steps' tables into the summary dict (``results.json``; the
demo's :mod:`~interp.experiments.summary` reads nothing else), :func:`write_table` writes a
CSV, :func:`save_figures` draws the run's figures. Nothing here depends on time or paths.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from interp import plots

__all__ = ["patch_summary", "save_figures", "summarize", "write_table"]


def write_table(out: Path, name: str, frame: pd.DataFrame) -> None:
    frame.drop(columns=[c for c in frame.columns if c == "direction"]).to_csv(
        out / f"{name}.csv", index=False
    )


def patch_summary(result, top: int = 5) -> dict:
    """Clean / corrupt values; per site, the recovered share at the positions every pair
    has whatever its length (its last token, and the aligned tag's last token); and the
    aggregate cells that recover most, among the columns every pair has."""
    n_pairs = len(result.prompt_tokens)
    norm = result.normalized()
    gap = result.clean_value - result.corrupt_value
    flat = [
        (float(norm[i, j]), result.sites[i], result.tokens[j], result.counts[j])
        for i in range(norm.shape[0])
        for j in range(norm.shape[1])
        if not result.counts or result.counts[j] == n_pairs
    ]
    flat.sort(key=lambda r: -abs(r[0]))
    readings = ["last"] + ([result.align] if result.align in result.tags else [])
    at = {
        which: {s: (float(result.at(s, which).nanmean()) - result.corrupt_value) / gap for s in result.sites}
        for which in readings
    } if result.per_prompt is not None else {}  # fmt: skip
    return {
        "clean": result.clean_value,
        "corrupt": result.corrupt_value,
        "align": result.align,
        "n_pairs": n_pairs,
        "at": at,
        "top": [dict(site=s, column=t, normalized=v, n=n) for v, s, t, n in flat[:top]],
    }


def summarize(spec, behaviour, probe, layer, movement, ablation, dose, patching) -> dict:
    def share(variant, group):
        row = behaviour[(behaviour.variant == variant) & (behaviour.group == group)]
        if row.empty:
            return None
        out = {k: float(row.iloc[0][k]) for k in ("value", "lo", "hi")}
        seeds = row.iloc[0].per_seed
        if isinstance(seeds, list):
            out["per_seed"] = [float(x) for x in seeds]
        return out

    variants = list(dict.fromkeys(behaviour.variant))
    out = {
        "setting": spec.setting,
        "target_group": spec.target_group,
        "behaviour": {v: share(v, spec.target_group) for v in variants},
        "layer": layer,
        "probe_accuracy": float(probe.set_index("layer").loc[layer, "accuracy"]),
        "movement": {r.model: float(r.value) for r in movement.itertuples()},
    }
    if spec.specificity_group:
        out["specificity"] = {v: share(v, spec.specificity_group) for v in variants}
    out["ablation"] = {}
    for g, rows in ablation.items():
        by = {r.condition: r for r in rows}
        randoms = [r.value for r in rows if r.condition == "random"]
        out["ablation"][g] = {
            "none": by["none"].value,
            "ablated": by["ablated"].value,
            "random_mean": sum(randoms) / len(randoms) if randoms else None,
        }
    if dose is not None:
        curve = dose.curve()
        band = dose.band()
        out["steering"] = {
            "alphas": [p.alpha for p in curve],
            "direction": [p.value for p in curve],
            "random_max": [band[p.alpha][2] if p.alpha in band else None for p in curve],
            "coherence": [p.coherence for p in curve],
        }
    if patching is not None:
        exact, attribution = patching
        out["patching"] = patch_summary(exact)
        out["patching_attribution"] = patch_summary(attribution)
    return out


def save_figures(
    spec,
    fig_dir,
    probe,
    movement,
    ablation_rows,
    dose,
    patching,
    localization=None,
    sae=None,
    **_,
):
    import matplotlib.pyplot as plt  # after the backend is chosen

    def save(fig, name):
        fig.savefig(fig_dir / f"{spec.name}_{name}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)

    save(
        plots.plot_probe_accuracy(probe, title=f"{spec.name}: probe accuracy by layer"),
        "probe_accuracy",
    )
    save(
        plots.plot_movement(movement, title=f"{spec.name}: target prompts along the direction"),
        "movement",
    )
    save(
        plots.plot_ablation_groups(
            ablation_rows, title=f"{spec.name}: ablating the direction in the finetuned model"
        ),
        "ablation",
    )
    if dose is not None:
        save(
            plots.plot_dose_response(
                dose,
                metric_label=f"share of {spec.target_group}",
                title=f"{spec.name}: steering the base model",
            ),
            "steering",
        )
    if patching is not None:
        save(
            plots.plot_patching(patching[0], title=f"{spec.name}: activation patching"), "patching"
        )
    if localization is not None and localization.get("place"):
        places = pd.read_csv(fig_dir.parent / "localization_places.csv")
        title = f"{spec.name}: ablating the finetune's own shift"
        save(plots.plot_shift_places(places, localization, title=title), "shift_ablation")
    for arch, res in ((sae or {}).get("architectures") or {}).items():
        top = pd.DataFrame(res["top"])
        title = f"{spec.name}: {arch} SAE latents against the finetune's shift (seed 0)"
        save(plots.plot_ranked_latents(top[top.seed == 0], title=title), f"sae_{arch}")
