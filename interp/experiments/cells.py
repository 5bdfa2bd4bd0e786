"""Experiment cells: one unit of a sweep, a pure function of its config.

A :class:`Cell` names one piece of an experiment: the behaviour of one model (the base,
or one finetune variant at one seed: it finetunes that model if the finetune cache does
not hold it yet) or the analysis (locate + causal tests) in one seed. Its config (the
spec, the variant, the seed, the base model's content key and the runner's version)
hashes to its directory, ``ROOT/cells/NAME-KIND-VARIANT-sSEED-KEY``; :func:`run_cell`
writes everything there and ``result.json`` last, so a cell whose ``result.json`` exists
is finished and is never run again. Cells take and return plain data (``dict``), so a
launcher can ship them to another process or a Slurm job (:mod:`interp.experiments.launch`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import ClassVar

from interp.config import Config
from interp.errors import InterpError
from interp.experiments import runner
from interp.experiments.data import setting_data
from interp.experiments.finetunes import Placement, finetune_variants, finetuned
from interp.experiments.runner import run_experiment
from interp.experiments.spec import ExperimentSpec
from interp.fingerprint import sha256_json
from interp.models import load_model
from interp.organism.pretrain import cache_root

__all__ = ["Cell", "CELL_KINDS", "run_cell", "cell_done"]

CELL_KINDS = ("behaviour", "analysis")
_CELLS_VERSION = 1  # bump when what a cell computes changes


@dataclasses.dataclass(frozen=True)
class Cell(Config):
    """One cell of an experiment (see the module docstring)."""

    config_name: ClassVar[str] = "experiment cell"

    kind: str
    spec: dict  # ExperimentSpec.to_dict()
    variant: str  # "base" or a finetune variant ("main", "control", ...)
    seed: int | None  # finetune seed (None for the base model)
    model_key: str  # content hash of the base model (or its name)
    version: int = _CELLS_VERSION

    def __post_init__(self):
        if self.kind not in CELL_KINDS:
            raise InterpError(f"cell kind must be one of {CELL_KINDS}, not {self.kind!r}")

    @property
    def key(self) -> str:
        runner_version = _runner_version()
        return sha256_json([self.to_dict(), runner_version])[:16]

    def directory(self, root: str | Path) -> Path:
        seed = "" if self.seed is None else f"-s{self.seed}"
        name = f"{self.spec['name']}-{self.kind}-{self.variant}{seed}-{self.key}"
        return Path(root) / "cells" / name


def _runner_version() -> int:
    return runner._VERSION


def cell_done(cell: Cell, root: str | Path) -> dict | None:
    """The result of a finished cell, else ``None``."""
    try:
        return json.loads((cell.directory(root) / "result.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _finetune_cache(spec: ExperimentSpec, root: Path) -> Path:
    """The runner's finetune cache, so cells and plain runs share finetunes."""
    return root.parent / "finetunes" if spec.model else cache_root() / "finetunes"


def _behaviour(cell: Cell, spec: ExperimentSpec, out: Path, root: Path) -> dict:
    place = Placement()  # the defaults: a GPU when there is one, else the CPU
    base, world = runner._base_path(spec)
    base_model = load_model(base, **place.load_kwargs())
    data = setting_data(spec, world, out / "data", base_model=base_model)
    if cell.variant == "base":
        shares, adapter = data.evals.shares(base_model), None
    else:
        if cell.variant not in data.finetune:
            raise InterpError(f"{spec.name} has no finetune variant {cell.variant!r}")
        adapter = finetune_variants(
            base, {cell.variant: data.finetune[cell.variant]}, setting=spec.setting,
            seeds=[cell.seed], overrides=spec.finetune, cache=_finetune_cache(spec, root),
            place=place, model=base_model,
        )[cell.variant][0]  # fmt: skip
        with finetuned(base_model, adapter, place) as model:
            shares = data.evals.shares(model)
    return {
        "shares": {g: [float(x) for x in v] for g, v in shares.items()},
        "adapter": None if adapter is None else str(adapter),
    }


def _analysis(cell: Cell, spec: ExperimentSpec, out: Path) -> dict:
    result = run_experiment(spec.replace(seeds=(cell.seed,)), out=out / "run")
    return {"summary": result.summary, "run": str(result.out)}


def run_cell(cell: dict | Cell, root: str | Path) -> dict:
    """Run ``cell`` under ``root`` (or read it back when finished); its result.

    Plain data in and out, so that it pickles for submitit. Everything the cell writes
    goes into its own directory; ``result.json`` is written last, atomically.
    """
    import torch

    cell = cell if isinstance(cell, Cell) else Cell.from_dict(cell)
    root = Path(root)
    done = cell_done(cell, root)
    if done is not None:
        return {**done, "reused": True}
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = cell.directory(root)
    out.mkdir(parents=True, exist_ok=True)
    spec = ExperimentSpec.from_dict(cell.spec)
    body = (
        _behaviour(cell, spec, out, root)
        if cell.kind == "behaviour"
        else _analysis(cell, spec, out)
    )
    result = {"cell": cell.to_dict(), "key": cell.key, "dir": str(out), **body}
    (out / "cell.json").write_text(json.dumps(cell.to_dict(), indent=2))
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=float))
    os.replace(tmp, out / "result.json")
    return {**result, "reused": False}
