"""Dose-response and ablation comparisons, each against random-direction controls.

``dose_response(model, direction, alphas, metric)`` steers with ``alpha * direction`` at
each alpha and measures ``metric(model)``; with ``n_random`` it repeats the sweep with
norm-matched random directions (the band any direction would give), and with
``coherence`` it measures a guard at each alpha (e.g. :func:`reference_logprob` of fluent
text) so a curve cannot hide a broken model. ``ablation_effect`` does the same for one
ablation: the metric without it, with it, and with random controls of the same kind.

A metric (and a coherence guard) is a plain callable ``metric(model) -> value`` run inside
the intervention, where ``value`` is an :class:`~interp.metrics.stats.Estimate`, a number, or a
tensor of per-item values (summarized by its mean with a Student-t interval).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from interp.causal.interventions import ablate, random_like, steer
from interp.directions import Direction
from interp.execution import tail_logprobs, token_lengths
from interp.metrics.sampled import write_results
from interp.metrics.stats import Estimate, mean_ci
from interp.models import Model

__all__ = [
    "DosePoint",
    "DoseResult",
    "EffectResult",
    "EffectRow",
    "as_estimate",
    "dose_response",
    "ablation_effect",
    "reference_logprob",
]

ModelMetric = Callable[[Model], object]


def as_estimate(value) -> Estimate:
    """An :class:`Estimate` from an Estimate, a number or a tensor of per-item values."""
    if isinstance(value, Estimate):
        return value
    if isinstance(value, Tensor):
        value = value.detach().float().cpu()
        if value.ndim == 0:
            v = float(value)
            return Estimate(v, v, v, 1)
        return mean_ci(value.reshape(-1).tolist())
    if all(hasattr(value, a) for a in ("value", "lo", "hi")):
        return Estimate(
            float(value.value), float(value.lo), float(value.hi), int(getattr(value, "n", 1))
        )
    v = float(value)
    return Estimate(v, v, v, 1)


@dataclass(frozen=True)
class DosePoint:
    """The metric (and coherence guard) at one alpha for one direction."""

    alpha: float
    kind: str  # "direction" or "random"
    seed: int | None
    value: float
    lo: float
    hi: float
    n: int
    coherence: float | None = None
    coherence_lo: float | None = None
    coherence_hi: float | None = None


@dataclass
class DoseResult:
    """Every :class:`DosePoint` of a sweep; ``curve`` for the direction, ``band`` for controls."""

    points: list[DosePoint]
    config: dict = field(default_factory=dict)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([asdict(p) for p in self.points])

    def curve(self) -> list[DosePoint]:
        return [p for p in self.points if p.kind == "direction"]

    def band(self) -> dict[float, tuple[float, float, float]]:
        """Per alpha: (min, median, max) of the random-direction values."""
        out: dict[float, list[float]] = {}
        for p in self.points:
            if p.kind == "random":
                out.setdefault(p.alpha, []).append(p.value)
        return {a: (min(v), statistics.median(v), max(v)) for a, v in sorted(out.items())}

    def save(self, directory: str | Path, config: dict | None = None) -> Path:
        return write_results(
            self.to_frame(), directory, "dose_response", config={**self.config, **(config or {})}
        )


def _measure(model: Model, metric: ModelMetric, coherence: ModelMetric | None):
    est = as_estimate(metric(model))
    coh = as_estimate(coherence(model)) if coherence is not None else None
    return est, coh


def _point(alpha, kind, seed, est: Estimate, coh: Estimate | None) -> DosePoint:
    return DosePoint(
        float(alpha),
        kind,
        seed,
        est.value,
        est.lo,
        est.hi,
        est.n,
        None if coh is None else coh.value,
        None if coh is None else coh.lo,
        None if coh is None else coh.hi,
    )


def dose_response(
    model: Model,
    direction: Direction | Tensor,
    alphas: Sequence[float],
    metric: ModelMetric,
    *,
    layers: int | Sequence[int] | None = None,
    site: str | None = None,
    positions="all",
    scale: float | Mapping[int, float] | None = None,
    coherence: ModelMetric | None = None,
    n_random: int = 0,
    seed: int = 0,
) -> DoseResult:
    """``metric`` while steering with ``alpha * scale * direction`` for each alpha.

    ``n_random`` norm-matched random directions (seeds ``seed .. seed + n_random - 1``) are
    swept at the same alphas and places. Steering arguments as in :func:`interp.steer`.
    """
    where = dict(layers=layers, site=site, positions=positions, scale=scale)
    controls = [(s, random_like(direction, seed=s)) for s in range(seed, seed + n_random)]
    points = []
    for kind, s, vec in [("direction", None, direction)] + [("random", s, r) for s, r in controls]:
        for alpha in alphas:
            with steer(model, vec, alpha=alpha, **where):
                est, coh = _measure(model, metric, coherence)
            points.append(_point(alpha, kind, s, est, coh))
    config = dict(
        model=model.name,
        variant=model.variant,
        direction=getattr(direction, "name", "tensor"),
        layers=layers if layers is not None else getattr(direction, "layer", None),
        site=site or getattr(direction, "site", None),
        positions=positions if isinstance(positions, (str, int)) else list(positions),
        alphas=[float(a) for a in alphas],
        n_random=n_random,
        seed=seed,
    )
    return DoseResult(points, config)


@dataclass(frozen=True)
class EffectRow:
    """The metric under one condition: ``"none"``, ``"ablated"`` or ``"random"``."""

    condition: str
    seed: int | None
    value: float
    lo: float
    hi: float
    n: int
    coherence: float | None = None


@dataclass
class EffectResult:
    """The :class:`EffectRow` of each condition (iterable, indexable) and the config."""

    rows: list[EffectRow]
    config: dict = field(default_factory=dict)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> EffectRow:
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.rows])

    def save(self, directory: str | Path, config: dict | None = None) -> Path:
        return write_results(
            self.to_frame(), directory, "ablation", config={**self.config, **(config or {})}
        )


def ablation_effect(
    model: Model,
    target,
    metric: ModelMetric,
    *,
    n_random: int = 0,
    seed: int = 0,
    coherence: ModelMetric | None = None,
    **ablate_kwargs,
) -> EffectResult:
    """``metric`` without the ablation, with it, and with ``n_random`` random controls of
    the same kind and rank (:func:`interp.causal.interventions.random_like`); ``ablate_kwargs``
    go to :func:`interp.ablate` (``layers``, ``site``, ``positions``, ``mode``, ...)."""
    rows = []
    est, coh = _measure(model, metric, coherence)
    rows.append(EffectRow("none", None, est.value, est.lo, est.hi, est.n, coh and coh.value))
    conditions = [("ablated", None, target)]
    conditions += [("random", s, random_like(target, seed=s)) for s in range(seed, seed + n_random)]
    for name, s, t in conditions:
        with ablate(model, t, **ablate_kwargs):
            est, coh = _measure(model, metric, coherence)
        rows.append(EffectRow(name, s, est.value, est.lo, est.hi, est.n, coh and coh.value))
    config = dict(
        model=model.name,
        variant=model.variant,
        target=getattr(target, "name", type(target).__name__),
        n_random=n_random,
        seed=seed,
        **{k: _describe(v) for k, v in ablate_kwargs.items()},
    )
    return EffectResult(rows, config)


def _describe(value):
    """A JSON-friendly stand-in for a config value (tensors and prompt lists by size)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return list(value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def reference_logprob(texts: Sequence[str], *, batch_size: int = 16) -> ModelMetric:
    """A coherence guard: mean per-token log-probability of fluent ``texts`` (one value per
    text, so the estimate carries a t interval). Falls as steering breaks the model."""

    @torch.no_grad()
    def guard(model: Model) -> Tensor:
        lengths = token_lengths(model, list(texts))
        tails = tail_logprobs(model, list(texts), [n - 1 for n in lengths], batch_size=batch_size)
        return torch.stack([t.mean() if t.numel() else t.new_zeros(()) for t in tails])

    return guard
