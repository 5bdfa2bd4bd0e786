"""``interp demo``: the three experiments on the bundled organism, and one summary.

The first run builds the organism (pretraining, cached), finetunes every setting's main
model and controls for every seed (cached), and runs each experiment; a rerun reuses
all of it. Figures go to ``figures/``, every table to the run directory, and
``summary.md`` (the table and each experiment's findings, from its ``results.json``:
:mod:`interp.experiments.summary`) beside them; wall times go to ``timing.json`` alone,
so a rerun writes ``summary.md`` and every ``results.json`` byte for byte the same;
``report.html`` (:mod:`interp.report`) shows all three experiments on one page.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from interp.errors import InterpError
from interp.experiments.finetunes import Placement
from interp.experiments.runner import run_experiment
from interp.experiments.spec import SPEC_DIR, ExperimentSpec
from interp.experiments.summary import summary_markdown, summary_table
from interp.report import write_report

__all__ = ["run_demo", "summary_table"]

SPECS = ("era", "persona", "backdoor")
# the organism's finetune recipes: LoRA on the token embeddings (the default), or standard
# LoRA on every attention and MLP projection (the ``*_lora`` specs, chosen by
# :mod:`interp.experiments.lora_sweep`)
VARIANTS = {"embeddings": "", "lora": "_lora"}


def run_demo(
    out: Path = Path("runs/demo"),
    quick: bool = False,
    figures_dir: Path | None = None,
    report: bool = True,
    variant: str = "embeddings",
    workers: int | None = None,
) -> int:
    """Run the three experiments (``quick``: on the small organism) and print the table.

    ``variant``: the finetune recipe (:data:`VARIANTS`: ``"embeddings"`` or ``"lora"``);
    ``report``: also write ``out/report.html`` (:func:`interp.report.write_report`);
    ``workers``: finetunes trained at once, each in its own process (default: one per CPU
    core on the CPU, :meth:`~interp.experiments.finetunes.Placement.workers`); the results
    do not depend on it.
    """
    if variant not in VARIANTS:
        raise InterpError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")
    t0 = time.time()
    out = Path(out)
    figures_dir = Path(figures_dir) if figures_dir else Path("figures")
    results, timing = {}, {}
    workers = Placement().workers() if workers is None else workers
    for name in SPECS:
        spec = ExperimentSpec.from_yaml(SPEC_DIR / f"{name}{VARIANTS[variant]}.yaml")  # bundled
        if quick:
            spec = spec.replace(organism="small", seeds=spec.seeds[:2], n_random=4)
        t = time.time()
        result = run_experiment(spec, out=out / name, workers=workers)
        timing[name] = round(time.time() - t, 1)
        results[name] = result.summary
        if not quick:
            figures_dir.mkdir(parents=True, exist_ok=True)
            for png in (result.out / "figures").glob("*.png"):
                shutil.copy(png, figures_dir / png.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(
        summary_markdown(results, organism="small" if quick else "default", variant=variant)
    )
    timing["total"] = round(time.time() - t0, 1)
    (out / "timing.json").write_text(json.dumps({"wall_s": timing}, indent=2) + "\n")
    print("\n" + summary_table(results))
    print(f"\nwall time {timing['total']:.0f}s; summary, tables and figures under {out}")
    if report:
        print(f"report: {write_report(out)}")
    return 0
