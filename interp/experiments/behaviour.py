"""Behaviour over finetune seeds: the share of answer set A per evaluation group, for the
base model and every finetune, with 95% intervals.

:func:`measure_behaviour` scores an :class:`~interp.metrics.evalset.EvalSet` on the loaded
base model and on each finetune (opened on that same load, :func:`finetuned`) and returns
one row per (variant, group): ``value``, ``lo``, ``hi``, ``n``, ``level`` and ``per_seed``.
The base row's interval is over the group's items; a finetune's is over seeds (the mean
share of each seed). With a :class:`Sampling` it also adds ``<group>_sampled`` rows (the
share of A among sampled answers that fall in A or B; NaN when none does) and
``<group>_sampled_valid`` rows (the fraction of samples that fall in A or B at all: a
finetune that breaks the model shows here); the base rows' intervals are Wilson's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from interp.experiments.finetunes import Placement, finetuned
from interp.metrics.evalset import EvalSet, sampled_counts
from interp.metrics.stats import mean_ci, wilson
from interp.models import Model

__all__ = ["Sampling", "measure_behaviour"]


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Seeded sampling beside the exact shares: ``n`` samples per item of ``groups``
    (default: every group), answers cut at the ``stop`` token (default: end of sequence)."""

    n: int = 8
    groups: tuple[str, ...] | None = None
    stop: str | None = None
    seed: int = 0
    max_new_tokens: int = 10

    def counts(self, model: Model, evals: EvalSet) -> dict[str, tuple[int, int, int]]:
        return sampled_counts(
            model, evals, self.groups, n_samples=self.n, seed=self.seed,
            max_new_tokens=self.max_new_tokens, stop=self.stop,
        )  # fmt: skip


def _row(variant: str, group: str, est, per_seed) -> dict:
    return {"variant": variant, "group": group, **est.to_dict(), "per_seed": per_seed}


def _base_rows(model: Model, evals: EvalSet, sampling: Sampling | None) -> list[dict]:
    rows = [
        _row("base", g, mean_ci(v.tolist(), bounds=(0, 1)), None)
        for g, v in evals.shares(model).items()
    ]
    for g, (a, b, other) in (sampling.counts(model, evals) if sampling else {}).items():
        for name, k, m in (
            (f"{g}_sampled", a, a + b),
            (f"{g}_sampled_valid", a + b, a + b + other),
        ):
            if m:
                rows.append(_row("base", name, wilson(k, m), None))
            else:
                nan = math.nan
                rows.append({"variant": "base", "group": name, "value": nan, "lo": nan,
                             "hi": nan, "n": 0, "level": 0.95, "per_seed": None})  # fmt: skip
    return rows


def _seed_values(model: Model, evals: EvalSet, sampling: Sampling | None) -> dict[str, float]:
    """One finetune: the mean share per group (and the sampled shares)."""
    out = {g: float(v.mean()) for g, v in evals.shares(model).items()}
    for g, (a, b, other) in (sampling.counts(model, evals) if sampling else {}).items():
        out[f"{g}_sampled"] = a / (a + b) if a + b else math.nan
        out[f"{g}_sampled_valid"] = (a + b) / (a + b + other)
    return out


def measure_behaviour(
    base_model: Model,
    finetunes: Mapping[str, Sequence[str | Path]],
    evals: EvalSet,
    *,
    place: Placement | None = None,
    sampling: Sampling | None = None,
) -> pd.DataFrame:
    """Rows ``{variant, group, value, lo, hi, n, level, per_seed}``: the base model, then
    every variant of ``finetunes`` (``{variant: [finetune dir per seed]}``)."""
    rows = _base_rows(base_model, evals, sampling)
    for variant, paths in finetunes.items():
        per_seed: dict[str, list[float]] = {}
        for path in paths:
            with finetuned(base_model, path, place or Placement()) as model:
                for g, v in _seed_values(model, evals, sampling).items():
                    per_seed.setdefault(g, []).append(v)
        for g, values in per_seed.items():
            rows.append(_row(variant, g, mean_ci(values, bounds=(0, 1)), values))
    return pd.DataFrame(rows)
