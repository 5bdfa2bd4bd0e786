"""Walk one experiment spec through the whole flow and write what it finds.

``run_experiment("experiments/era.yaml")`` (or ``interp run experiments/era.yaml``):

1. **model**: the bundled organism (built or taken from the cache) or ``--model``, loaded
   once: every finetune is opened on that load (:func:`~interp.experiments.finetunes.finetuned`);
2. **finetune**: the main finetune and each control, for every seed (the one content-keyed
   cache of :mod:`interp.experiments.finetunes`), on the setting's data or the user's
   (``spec.data``); or the adapters given (``adapter=``: no finetuning);
3. **behaviour**: the share of answer set A per evaluation group for the base model and
   every finetune, with 95% intervals (over items for the base, over seeds otherwise);
4. **locate**, in the seed whose main finetune shows the behaviour most (``analysis_seed``
   in ``results.json``): a probe sweep over layers on the contrast set (grouped
   cross-validation), the difference-of-means direction at the best layer, and how far each
   finetune moved the target prompts along it;
5. **causal**: ablate the direction in the finetuned model (its projection clamped to its
   mean over the no-trigger contrast prompts; against norm-matched random directions),
   steer the base model along it (dose-response with the random band), and
   patch trigger into no-trigger prompts where the spec asks for it; an SAE ranking of
   latents by the paired trigger difference where it asks for that;
6. **write**: ``config.json`` (spec, seeds, model / adapter / data hashes),
   ``results.json``, CSV tables and figures in the run directory, and ``timing.json``
   (wall time: the one file a rerun changes).

Every step is deterministic for the spec (the random controls are seeded), so a rerun
reproduces the numbers byte for byte (and reuses the cached organism and finetunes); no
file but ``timing.json`` holds a time or a path of this machine. Models load, and finetunes
train, on ``device`` in ``dtype`` (defaults: CUDA when there is one; bfloat16 there,
float32 on the CPU); the runner leaves torch's thread count to its caller.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from interp.capture import capture
from interp.diffmeans import diff_of_means
from interp.dose import ablation_effect, dose_response, reference_logprob
from interp.errors import InterpError
from interp.experiments.behaviour import measure_behaviour
from interp.experiments.data import SettingData, setting_data
from interp.experiments.finetunes import Placement, finetune_variants, finetuned, model_key
from interp.experiments.spec import ExperimentSpec
from interp.finetune import FinetuneConfig
from interp.fingerprint import sha256_dir, sha256_file
from interp.interventions import residual_norm
from interp.metrics.answers import render_prompts
from interp.models import Model, ModelPair, load_model
from interp.organism.pretrain import OrganismConfig, build_organism, cache_root, world_of
from interp.organism.world import World, WorldConfig
from interp.patching import patch
from interp.probes import probe_layers
from interp.prompts import PromptSet
from interp.ranking import project
from interp.stats import mean_ci

__all__ = ["run_experiment", "ExperimentResult"]

Adapters = str | Path | Mapping[str, str | Path | list]


@dataclasses.dataclass
class ExperimentResult:
    spec: ExperimentSpec
    out: Path
    behaviour: pd.DataFrame
    probe: pd.DataFrame
    summary: dict


def _log(msg: str) -> None:
    tqdm.write(f"[interp] {msg}")


# ---- step 1-2: models and finetunes ---------------------------------------------------
def _base_path(spec: ExperimentSpec) -> tuple[str, World | None]:
    """The model to finetune and the organism's world (``None`` for the user's data)."""
    if spec.model is not None:
        return spec.model, (None if spec.data else World(WorldConfig()))
    config = {"default": OrganismConfig.default, "small": OrganismConfig.small}[spec.organism]()
    path = build_organism(config)
    return str(path), world_of(path)


def _given_adapters(adapter: Adapters | None) -> dict[str, list[Path]]:
    """``{variant: [adapter dir, ...]}`` from one directory (the main finetune) or a mapping
    of variant -> directory (or list of directories: one per seed)."""
    if adapter is None:
        return {}
    given = adapter if isinstance(adapter, Mapping) else {"main": adapter}
    out = {}
    for variant, dirs in given.items():
        dirs = dirs if isinstance(dirs, list | tuple) else [dirs]
        out[str(variant)] = [Path(d) for d in dirs]
        for d in out[variant]:
            if not (d / "adapter_config.json").is_file() and not (d / "config.json").is_file():
                raise InterpError(f"adapter {d}: not a PEFT adapter or model directory")
    if "main" not in out:
        raise InterpError(f"the adapters given need a 'main' one (got {sorted(out)})")
    return {"main": out.pop("main"), **out}


def _config(spec, base: str, adapters: dict[str, list[Path]], data, given: bool) -> dict:
    """What decides the results: nothing in it depends on where the cache or run live."""
    config = {
        "spec": spec.to_dict(),
        "model": spec.model if spec.model else f"organism:{spec.organism}",
        "model_key": model_key(base),
        "data": {k: sha256_file(p) for k, p in data.finetune.items()},
        "seeds": _seeds(spec, adapters, given),
        "version": _VERSION,
    }
    if given:
        config["adapters"] = {v: [str(p) for p in ps] for v, ps in adapters.items()}
        config["adapter_hashes"] = {v: [sha256_dir(p) for p in ps] for v, ps in adapters.items()}
    else:  # cache entries named by content: setting-variant-seed-key
        config["adapters"] = {v: [p.name for p in ps] for v, ps in adapters.items()}
    return config


def _seeds(spec, adapters: dict[str, list[Path]], given: bool) -> list[int]:
    """The finetune seeds; for given adapters, their index."""
    return list(range(len(adapters["main"]))) if given else list(spec.seeds)


# ---- step 4: locate -------------------------------------------------------------------
def _locate(spec, pair: ModelPair, data: SettingData):
    where = pair.base if spec.locate_on == "base" else pair.finetuned
    acts = capture(where, data.contrast, sites="resid_post", positions="last", progress=False)
    n_groups = acts.meta["group"].nunique()
    if n_groups >= 2:  # held-out groups (questions, facets): the score measures generalization
        table = probe_layers(acts, "label", groups="group", cv=min(5, n_groups))
    else:
        table = probe_layers(acts, "label")
    best = table.sort_values(["accuracy", "layer"], ascending=[False, True]).iloc[0]
    layer = int(best.layer)
    site = f"blocks.{layer}.hook_resid_post"
    direction = diff_of_means(
        acts.where(label=1), acts.where(label=0), site=site, name=f"{spec.setting} direction"
    )
    # the value an ablation clamps the direction to: its mean over every token of the
    # no-trigger half of the contrast (modern contexts, the assistant itself, later years)
    negatives = data.contrast.subset([i for i, y in enumerate(data.contrast.meta.label) if y == 0])
    reference = capture(where, negatives, layers=[layer], positions="all", progress=False).site(
        layer
    )
    return table, layer, direction, reference


def _movement(name: str, model: Model, prompts: list, direction, layer: int) -> dict:
    """How far ``model`` puts the target prompts along ``direction`` (mean, 95% CI)."""
    acts = capture(model, prompts, layers=[layer], positions="last", progress=False)
    proj = project(acts, {"direction": direction})["direction"].to_numpy()
    return {"model": name, **mean_ci(proj.tolist()).to_dict()}


# ---- step 5: causal -------------------------------------------------------------------
def _first_token_ids(model: Model, prompt: str, answers) -> list[int]:
    n = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = set()
    for a in answers:
        full = model.tokenizer(f"{prompt} {a}", add_special_tokens=False)["input_ids"]
        ids.add(full[n])
    return sorted(ids)


def _patch(spec, model: Model, data: SettingData):
    """Patch trigger into no-trigger prompts; maps align on the trigger's tag."""
    prefix = data.patch_prefix
    clean, corrupt = ([t + prefix for t in render_prompts(model, p)] for p in data.patch_pairs)
    item = data.evals[spec.target_group][0]
    strip = lambda answers: [x.removeprefix(prefix.strip()).strip() for x in answers]  # noqa: E731
    a = _first_token_ids(model, clean[0], strip(item.answers_a))
    b = _first_token_ids(model, clean[0], strip(item.answers_b))

    def metric(logits: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(logits.float(), -1)
        return lp[:, a].logsumexp(-1) - lp[:, b].logsumexp(-1)

    align = None
    if data.patch_tag is not None:
        align, text = data.patch_tag
        clean = PromptSet(clean).tag(align, text)
    kw = dict(metric=metric, align=align)
    exact = patch(model, clean, corrupt, sites=["resid_pre", "attn_out", "mlp_out"], **kw)
    attribution = patch(model, clean, corrupt, sites=["resid_pre"], mode="attribution", **kw)
    return exact, attribution


def _patch_summary(result, top: int = 5) -> dict:
    """Clean / corrupt values and the cells that recover most of the clean behaviour."""
    norm = result.normalized()
    flat = [
        (float(norm[i, j]), result.sites[i], result.tokens[j], result.counts[j])
        for i in range(norm.shape[0])
        for j in range(norm.shape[1])
    ]
    flat.sort(key=lambda r: -abs(r[0]))
    return {
        "clean": result.clean_value,
        "corrupt": result.corrupt_value,
        "align": result.align,
        "n_pairs": len(result.prompt_tokens),
        "top": [dict(site=s, column=t, normalized=v, n=n) for v, s, t, n in flat[:top]],
    }


def _write(out: Path, name: str, frame: pd.DataFrame) -> None:
    frame.drop(columns=[c for c in frame.columns if c == "direction"]).to_csv(
        out / f"{name}.csv", index=False
    )


def run_experiment(
    spec: ExperimentSpec | str | Path,
    *,
    model: str | None = None,
    adapter: Adapters | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    force: bool = False,
    device: str | None = None,
    dtype: str | None = None,
) -> ExperimentResult:
    """Run ``spec`` (a spec or a YAML path) and write everything under ``out``.

    ``model`` replaces the spec's model (a Hugging Face id or directory), loaded once.
    ``adapter``: finetunes already made, instead of finetuning: one directory (the main
    finetune) or ``{variant: dir or [dir per seed]}`` with a ``"main"`` entry. A run whose
    directory already holds the results of the same config (spec, model, adapters, data)
    is not repeated unless ``force``; its results are read back. Models load and finetunes
    train on ``device`` in ``dtype`` (default: CUDA when there is one; bfloat16 there,
    float32 on the CPU).
    """
    place = Placement(device, dtype)
    FinetuneConfig(device=device, dtype=dtype).placement()  # a bad device: one error, now
    hf_logging.disable_progress_bar()  # one line per loaded model drowns the run's own log
    spec = spec if isinstance(spec, ExperimentSpec) else ExperimentSpec.from_yaml(spec)
    if model is not None:
        spec = spec.replace(model=model)
    given = _given_adapters(adapter)
    out = Path(out or Path("runs") / spec.name)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    base, world = _base_path(spec)
    _log(f"{spec.name}: model {base}")
    base_model = load_model(base, **place.load_kwargs())  # the one load of the base
    data = setting_data(spec, world, out / "data", base_model=base_model, finetune=not given)
    cache = out.parent / "finetunes" if spec.model else cache_root() / "finetunes"
    adapters = given or finetune_variants(
        base, data.finetune, setting=spec.setting, seeds=spec.seeds, overrides=spec.finetune,
        cache=cache, place=place, model=base_model, log=_log,
    )  # fmt: skip
    config = _config(spec, base, adapters, data, bool(given))
    cached = _cached_result(spec, out, config)
    if cached is not None and not force:
        _log(f"{spec.name}: unchanged since the last run, results reused from {out}")
        return cached

    _log("behaviour")
    behaviour = measure_behaviour(base_model, adapters, data.evals, place=place)
    _write(out, "behaviour", behaviour)
    summary, tables = _analyse(spec, base_model, adapters, data, behaviour, place, out)
    summary["seeds"] = config["seeds"]
    summary["n_random"] = spec.n_random
    summary["analysis_seed"] = config["seeds"][tables.pop("k")]
    if figures:
        matplotlib.use("Agg")  # files only; chosen here, not on import (notebooks plot inline)
        _figures(spec, out / "figures", **tables)
    # results.json last: its presence (with an unchanged config) marks a finished run
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    wall = round(time.time() - t0, 1)
    (out / "timing.json").write_text(json.dumps({"wall_s": wall}, indent=2))
    _log(f"{spec.name}: done in {wall}s -> {out}")
    return ExperimentResult(spec, out, behaviour, tables["probe"], summary)


def _analyse(spec, base_model: Model, adapters, data: SettingData, behaviour, place, out: Path):
    """Steps 4-5 in the seed whose main finetune shows the behaviour most (named in
    results.json; every seed's behaviour is in behaviour.csv)."""
    per_seed = behaviour[(behaviour.variant == "main") & (behaviour.group == spec.target_group)]
    k = int(pd.Series(per_seed.iloc[0].per_seed).idxmax())
    _log(f"locate (seed index {k})")
    target_prompts = [it.prompt for it in data.evals[spec.target_group]]
    with finetuned(base_model, adapters["main"][k], place) as ft:
        pair = ModelPair(ft.as_base(), ft) if ft.has_adapter else ModelPair(base_model, ft)
        probe, layer, direction, reference = _locate(spec, pair, data)
        direction.save(out / "direction")
        _write(out, "probe", probe)
        moved = [
            _movement(name, view, target_prompts, direction, layer)
            for name, view in (("base", pair.base), ("main", pair.finetuned))
        ]
        _log("causal tests")
        causal = _causal(spec, pair, data, layer, direction, reference, target_prompts, out)
    for variant, paths in adapters.items():
        if variant != "main":
            with finetuned(base_model, paths[min(k, len(paths) - 1)], place) as view:
                moved.append(_movement(variant, view, target_prompts, direction, layer))
    movement = pd.DataFrame(moved)
    _write(out, "movement", movement)
    summary = _summary(spec, behaviour, probe, layer, movement, **causal)
    tables = dict(probe=probe, movement=movement, k=k, **causal)
    tables["ablation_rows"] = _ablation_rows(causal["ablation"])
    return summary, tables


def _ablation_rows(ablation: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [{"group": g, **dataclasses.asdict(r)} for g, rows in ablation.items() for r in rows]
    )


def _causal(spec, pair: ModelPair, data, layer, direction, reference, target_prompts, out) -> dict:
    """Ablation in the finetuned model, steering of the base model, patching."""
    evals = data.evals
    ablate_kw = dict(layers=[layer], mode="mean", reference=reference, n_random=spec.n_random)
    ablation = {
        g: ablation_effect(pair.finetuned, direction, evals.metric(g), **ablate_kw)
        for g in [spec.target_group, spec.specificity_group]
        if g
    }
    _write(out, "ablation", _ablation_rows(ablation))
    dose = None
    if spec.steer_alphas:
        rendered = render_prompts(pair.base, target_prompts)
        dose = dose_response(
            pair.base,
            direction,
            list(spec.steer_alphas),
            evals.metric(spec.target_group),
            layers=[layer],
            scale=residual_norm(pair.base, rendered, layers=[layer]),
            n_random=spec.n_random,
            coherence=reference_logprob(rendered),
        )
        _write(out, "dose_response", dose.to_frame())
    patching = None
    if spec.patch and data.patch_pairs is not None:
        patching = _patch(spec, pair.finetuned, data)
        _write(out, "patching", patching[0].to_frame())
        _write(out, "patching_per_prompt", patching[0].per_prompt_frame())
    return {"ablation": ablation, "dose": dose, "patching": patching}


_VERSION = 6  # bump when the runner's steps change what a config produces


def _cached_result(spec, out: Path, config: dict) -> ExperimentResult | None:
    try:
        same = json.loads((out / "config.json").read_text()) == json.loads(json.dumps(config))
        summary = json.loads((out / "results.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not same:
        return None
    behaviour = pd.read_csv(out / "behaviour.csv")
    return ExperimentResult(spec, out, behaviour, pd.read_csv(out / "probe.csv"), summary)


def _summary(spec, behaviour, probe, layer, movement, ablation, dose, patching) -> dict:
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
        out["patching"] = _patch_summary(exact)
        out["patching_attribution"] = _patch_summary(attribution)
    return out


def _figures(spec, fig_dir, probe, movement, ablation_rows, dose, patching, **_):
    import matplotlib.pyplot as plt  # after the backend is chosen

    from interp import plots

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
