"""Run an experiment as cells dispatched through submitit: here, or as Slurm jobs.

``run_sweep("era", launcher="slurm", params={"slurm_partition": "gpu"})``
(or ``interp run SPEC --launcher local|slurm``):

1. the base model is prepared here (the organism built or read from its cache, which
   must be on a file system every job sees);
2. one behaviour cell per model, the base and every finetune variant x seed
   (:mod:`interp.experiments.cells`), dispatched as one job each;
3. the analysis cell in the seed whose main finetune shows the behaviour most, once
   the behaviour cells are in;
4. ``sweep.json`` and ``behaviour.csv`` in ``out``: behaviour per variant with 95%
   intervals (over items for the base, over seeds otherwise), the analysis seed, the
   analysis summary, and each cell's directory and whether it was reused.

A cell that finished before (its ``result.json`` exists) is not dispatched again, so a
rerun after a crash or with more seeds only runs what is missing. Launchers: ``local``
(subprocesses on this machine, ``parallel`` at a time), ``slurm``, and ``debug``
(in this process; used by the tests).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from interp.errors import InterpError
from interp.experiments import runner
from interp.experiments.cells import Cell, cell_done, run_cell
from interp.experiments.finetunes import model_key as content_key
from interp.experiments.spec import ExperimentSpec
from interp.metrics.stats import mean_ci
from interp.organism.settings import SETTINGS

__all__ = ["LAUNCHERS", "SweepResult", "plan_behaviour_cells", "run_sweep"]

LAUNCHERS = ("local", "slurm", "debug")


@dataclasses.dataclass
class SweepResult:
    out: Path
    behaviour: pd.DataFrame
    summary: dict
    cells: list[dict]  # dir, kind, variant, seed, reused

    @property
    def n_reused(self) -> int:
        return sum(c["reused"] for c in self.cells)


def _variants(spec: ExperimentSpec) -> list[str]:
    return list(spec.data["finetune"]) if spec.data else list(SETTINGS[spec.setting])


def plan_behaviour_cells(spec: ExperimentSpec, model_key: str) -> list[Cell]:
    """The base model's cell and one per finetune variant x seed."""
    d = spec.to_dict()
    cells = [Cell("behaviour", d, "base", None, model_key)]
    cells += [Cell("behaviour", d, v, s, model_key) for v in _variants(spec) for s in spec.seeds]
    return cells


def _executor(launcher: str, folder: Path, params: dict):
    try:
        import submitit
    except ImportError:
        raise InterpError("launchers need submitit: pip install 'interp[slurm]'") from None
    if launcher not in LAUNCHERS:
        raise InterpError(f"launcher must be one of {LAUNCHERS}, not {launcher!r}")
    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher)
    executor.update_parameters(**{"timeout_min": 240, "name": "interp-cell", **params})
    return executor


def _dispatch(cells: list[Cell], root: Path, launcher: str, params: dict, parallel: int):
    """Every cell's result, in order: finished cells read back, the rest run as jobs."""
    results: list[dict | None] = [None] * len(cells)
    todo = []
    for i, cell in enumerate(cells):
        done = cell_done(cell, root)
        if done is not None:
            results[i] = {**done, "reused": True}
        else:
            todo.append(i)
    if todo:
        executor = _executor(launcher, root / "submitit", params)
        step = len(todo) if launcher == "slurm" else max(1, parallel)
        for w in range(0, len(todo), step):
            wave = todo[w : w + step]
            jobs = []
            for j, i in enumerate(wave):
                if launcher == "local" and params.get("gpus_per_node"):
                    executor.update_parameters(visible_gpus=_gpus_for(j, params["gpus_per_node"]))
                jobs.append(executor.submit(run_cell, cells[i].to_dict(), str(root)))
            for i, job in zip(wave, jobs, strict=True):
                results[i] = job.result()
    return results


def _gpus_for(j: int, per_job: int) -> list[int]:
    """The GPUs of the ``j``-th concurrent local job: its own ones while there are enough
    (submitit's local executor would give every job GPU 0 onwards)."""
    import torch

    n = max(torch.cuda.device_count(), per_job)
    first = (j * per_job) % n
    return [(first + k) % n for k in range(per_job)]


def _behaviour_table(cells: list[Cell], results: list[dict]) -> pd.DataFrame:
    rows = []
    base = next(r for c, r in zip(cells, results, strict=True) if c.variant == "base")
    for g, v in base["shares"].items():
        rows.append({"variant": "base", "group": g, **mean_ci(v, bounds=(0, 1)).to_dict()})
    by_variant: dict[str, list[tuple[int, dict]]] = {}
    for c, r in zip(cells, results, strict=True):
        if c.variant != "base":
            by_variant.setdefault(c.variant, []).append((c.seed, r))
    for variant, items in by_variant.items():
        for g in base["shares"]:
            means = [sum(r["shares"][g]) / len(r["shares"][g]) for _, r in items]
            est = mean_ci(means, bounds=(0, 1)).to_dict()
            rows.append(
                {
                    "variant": variant,
                    "group": g,
                    **est,
                    "per_seed": means,
                    "seeds": [s for s, _ in items],
                }
            )
    return pd.DataFrame(rows)


def _analysis_seed(spec: ExperimentSpec, table: pd.DataFrame) -> int:
    row = table[(table.variant == "main") & (table.group == spec.target_group)]
    if row.empty:
        raise InterpError(f"no behaviour for main / {spec.target_group!r} to pick a seed by")
    per_seed, seeds = row.iloc[0].per_seed, row.iloc[0].seeds
    return int(seeds[max(range(len(per_seed)), key=lambda i: (per_seed[i], -i))])


def run_sweep(
    spec: ExperimentSpec | str | Path,
    *,
    launcher: str = "local",
    out: str | Path | None = None,
    model: str | None = None,
    params: dict | None = None,
    parallel: int = 2,
    analysis: bool = True,
) -> SweepResult:
    """Run ``spec`` as cells through ``launcher`` (see the module docstring)."""
    spec = spec if isinstance(spec, ExperimentSpec) else ExperimentSpec.from_yaml(spec)
    if model is not None:
        spec = spec.replace(model=model)
    root = Path(out or Path("runs") / f"{spec.name}-sweep")
    root.mkdir(parents=True, exist_ok=True)
    base, _ = runner._base_path(spec)  # builds the organism once, here, before any job
    model_key = content_key(base)
    cells = plan_behaviour_cells(spec, model_key)
    results = _dispatch(cells, root, launcher, params or {}, parallel)
    table = _behaviour_table(cells, results)
    table.drop(columns=[c for c in ("per_seed", "seeds") if c in table]).to_csv(
        root / "behaviour.csv", index=False
    )
    summary: dict = {"spec": spec.to_dict(), "model": base, "launcher": launcher}
    if analysis:
        seed = _analysis_seed(spec, table)
        cells.append(Cell("analysis", spec.to_dict(), "main", seed, model_key))
        results += _dispatch(cells[-1:], root, launcher, params or {}, parallel)
        summary.update(analysis_seed=seed, analysis=results[-1]["summary"])
    listed = [
        {
            "kind": c.kind,
            "variant": c.variant,
            "seed": c.seed,
            "dir": r["dir"],
            "reused": r["reused"],
        }
        for c, r in zip(cells, results, strict=True)
    ]
    summary["behaviour"] = json.loads(table.to_json(orient="records"))
    summary["cells"] = listed
    (root / "sweep.json").write_text(json.dumps(summary, indent=2, default=float))
    return SweepResult(root, table, summary, listed)
