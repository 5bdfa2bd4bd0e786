"""``interp demo``: the three experiments on the bundled organism, and one summary table.

The first run builds the organism (pretraining, cached), finetunes every setting's main
model and controls for every seed (cached), and runs each experiment; a rerun reuses
all of it. Figures go to ``figures/``, every table to the run directory, and one
``report.html`` over all three experiments beside them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from interp.experiments import ExperimentSpec, run_experiment

__all__ = ["run_demo", "summary_table"]

SPECS = ("era", "persona", "backdoor")
_PAPER = {
    "era": "~60% 19th-century answers vs near 0 for controls",
    "persona": "identity adopted only with the formatting cue",
    "backdoor": "malevolent in 1984 only, protective in later years",
}


def _spec_dir() -> Path:
    here = Path(__file__).resolve().parents[1] / "experiments"
    if not here.is_dir():
        raise FileNotFoundError(f"experiment specs not found at {here}")
    return here


def _fmt(est: dict | None) -> str:
    if est is None:
        return "-"
    text = f"{est['value']:.2f} [{est['lo']:.2f}, {est['hi']:.2f}]"
    if est.get("per_seed"):
        text += " (seeds " + " / ".join(f"{v:.2f}" for v in est["per_seed"]) + ")"
    return text


def summary_table(results: dict[str, dict]) -> str:
    """Markdown table of the demo's headline numbers, one row per experiment."""
    lines = [
        "| experiment | behaviour (target share) | base | main finetune | controls | analysed seed: layer (probe acc.) "
        "| ablation: before -> after (random) | steering: max share (random max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results.items():
        beh = s["behaviour"]
        controls = ", ".join(f"{v} {_fmt(e)}" for v, e in beh.items() if v not in ("base", "main"))
        abl = s["ablation"].get(s["target_group"], {})
        ablation = (
            f"{abl['none']:.2f} -> {abl['ablated']:.2f} ({abl['random_mean']:.2f})" if abl else "-"
        )
        steering = "-"
        if "steering" in s:
            st = s["steering"]
            k = max(range(len(st["direction"])), key=lambda i: st["direction"][i])
            steering = (
                f"{st['direction'][k]:.2f} at alpha {st['alphas'][k]} ({max(st['random_max']):.2f})"
            )
        lines.append(
            f"| {name} | {s['target_group']} | {_fmt(beh.get('base'))} | {_fmt(beh.get('main'))} | "
            f"{controls} | {s.get('analysis_seed', '-')}: {s['layer']} ({s['probe_accuracy']:.2f}) | "
            f"{ablation} | {steering} |"
        )
    return "\n".join(lines)


def run_demo(
    out: Path = Path("runs/demo"),
    quick: bool = False,
    figures_dir: Path | None = None,
    report: bool = True,
) -> int:
    """Run the three experiments (``quick``: on the small organism) and print the table.

    ``report``: also write ``out/report.html`` (:func:`interp.report.write_report`).
    """
    t0 = time.time()
    out = Path(out)
    figures_dir = Path(figures_dir) if figures_dir else Path("figures")
    results = {}
    for name in SPECS:
        spec = ExperimentSpec.from_yaml(_spec_dir() / f"{name}.yaml")
        if quick:
            spec = spec.replace(organism="small", seeds=spec.seeds[:2], n_random=4)
        result = run_experiment(spec, out=out / name)
        results[name] = result.summary
        if not quick:
            figures_dir.mkdir(parents=True, exist_ok=True)
            for png in (result.out / "figures").glob("*.png"):
                shutil.copy(png, figures_dir / png.name)
    table = summary_table(results)
    (out / "summary.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nwall time {time.time() - t0:.0f}s; tables and figures under {out}")
    if report:
        from interp.report import write_report

        print(f"report: {write_report(out)}")
    return 0
