"""Where a finetune's shift lives: its own activation difference, found and removed.

A finetune changes the activations of the same prompts. At one site of one layer, the
finetuned-minus-base difference at every real token of a set of prompts is a matrix
``[n_tokens, d_model]``; its top ``k`` right singular vectors are the subspace the shift
mostly lies in (:func:`shift_subspace`). Ablating that subspace in the finetuned model
(its coordinates clamped to their mean over the *base* model's activations on the same
prompts, so the base's own use of those dimensions is kept on average) tests whether the
shift there is what drives the behaviour: the *removal* is the fraction of the excess
behaviour (finetuned minus base) that the ablation takes away (:func:`removal`).

:func:`place_scan` measures the removal of every (layer, rank) on one set of prompts (and,
with ``guard``, what each ablation costs elsewhere) and :func:`choose_place` picks, among
the places within ``tolerance`` of the best removal, the cheapest, then the smallest rank,
then the earliest layer, so a place is chosen on one half of the evaluation questions and
reported on the other (:mod:`interp.experiments.localize`).
:func:`shift_ablation` is that report: before, after and norm-matched random subspaces of
the same rank at the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.causal.dose import EffectResult, ablation_effect, as_estimate
from interp.causal.interventions import ablate
from interp.directions import Subspace
from interp.errors import InterpError
from interp.models import ModelPair
from interp.record.capture import capture

__all__ = [
    "Shift",
    "choose_place",
    "place_scan",
    "pooled_removal",
    "removal",
    "shift_ablation",
    "shift_subspace",
]

ModelMetric = Callable[[object], object]


@dataclass(frozen=True)
class Shift:
    """The top singular directions of a finetune's activation difference at one site.

    ``subspace``: the top ``k`` directions; ``energy``: the share of the difference's
    squared norm they hold; ``reference``: the base model's activations at the site (what
    the ablation clamps to the mean of)."""

    subspace: Subspace
    energy: float
    reference: Tensor

    @property
    def k(self) -> int:
        return self.subspace.k


def _site_name(layer: int, site: str) -> str:
    return site if site.startswith("blocks.") else f"blocks.{layer}.hook_{site}"


def _differences(pair: ModelPair, prompts, layer: int, site: str) -> tuple[Tensor, Tensor]:
    kw = dict(sites=site, layers=[layer], positions="all", progress=False)
    base = capture(pair.base, prompts, **kw).tensor[:, 0].float()
    tuned = capture(pair.finetuned, prompts, **kw).tensor[:, 0].float()
    if base.shape != tuned.shape:  # the two views tokenize the same prompts the same way
        raise InterpError(
            f"base and finetune give different token counts ({base.shape[0]} vs "
            f"{tuned.shape[0]}): the pair needs one tokenizer"
        )
    return tuned - base, base


def _svd(diff: Tensor) -> tuple[Tensor, Tensor]:
    _, s, vh = torch.linalg.svd(diff.double(), full_matrices=False)
    energy = (s**2).cumsum(0) / (s**2).sum().clamp_min(1e-30)
    return vh.float(), energy.float()


def shift_subspace(
    pair: ModelPair, prompts, *, layer: int, k: int, site: str = "resid_pre"
) -> Shift:
    """The finetune's shift at ``site`` of ``layer`` on ``prompts`` as a rank-``k`` subspace.

    Both views of ``pair`` run the same prompts; the difference at every real token (no
    pad) is decomposed by SVD, uncentered, so a shift shared by every token is its first
    direction."""
    if k < 1:
        raise InterpError(f"k must be at least 1, got {k}")
    diff, base = _differences(pair, prompts, layer, site)
    if float(diff.abs().max()) == 0.0:
        raise InterpError(
            f"the finetune does not change {_site_name(layer, site)} on these prompts"
        )
    vh, energy = _svd(diff)
    k = min(k, vh.shape[0])
    sub = Subspace(
        vh[:k], layer=layer, site=_site_name(layer, site), name=f"shift L{layer} k{k}",
        provenance={"kind": "finetune shift", "tokens": int(diff.shape[0])},
    )  # fmt: skip
    return Shift(sub, float(energy[k - 1]), base)


def removal(before: float, after: float, base: float) -> float:
    """The fraction of the excess ``before - base`` that an intervention removed (1: all of
    it, 0: none; ``nan`` when there is no excess)."""
    excess = before - base
    return float("nan") if abs(excess) < 1e-9 else (before - after) / excess


def _value(metric: ModelMetric, model) -> float:
    return as_estimate(metric(model)).value


def _ablated(pair: ModelPair, shift: Shift, metric: ModelMetric) -> float:
    sub = shift.subspace
    kw = dict(site=sub.site, mode="mean", reference=shift.reference)
    with ablate(pair.finetuned, sub, **kw):
        return _value(metric, pair.finetuned)


def place_scan(
    pair: ModelPair,
    prompts,
    metric: ModelMetric,
    *,
    layers: Sequence[int] | None = None,
    ranks: Sequence[int] = (1, 2, 4, 8, 16),
    site: str = "resid_pre",
    guard: Callable[[ModelPair, Shift], float] | None = None,
) -> pd.DataFrame:
    """The removal of every (layer, rank): the shift subspace found on ``prompts``, the
    behaviour ``metric`` measured with it ablated. One row per place: ``layer``, ``site``,
    ``k``, ``energy``, ``before``, ``after``, ``base``, ``removal`` (and ``guard``: what
    ``guard(pair, shift)`` says the ablation costs elsewhere, when given). A layer where
    the finetune leaves the site unchanged has no rows."""
    layers = list(range(pair.finetuned.n_layers)) if layers is None else list(layers)
    before, base = _value(metric, pair.finetuned), _value(metric, pair.base)
    rows = []
    for layer in layers:
        diff, reference = _differences(pair, prompts, layer, site)
        if float(diff.abs().max()) == 0.0:  # the finetune does not write here (a LoRA on
            continue  # the projections leaves the embeddings as they were)
        vh, energy = _svd(diff)
        for k in sorted({min(int(r), vh.shape[0]) for r in ranks}):
            sub = Subspace(vh[:k], layer=layer, site=_site_name(layer, site), name="shift")
            shift = Shift(sub, float(energy[k - 1]), reference)
            after = _ablated(pair, shift, metric)
            rows.append(
                dict(layer=layer, site=str(sub.site), k=k, energy=float(energy[k - 1]),
                     before=before, after=after, base=base,
                     removal=removal(before, after, base))
            )  # fmt: skip
            if guard is not None:
                rows[-1]["guard"] = float(guard(pair, shift))
    return pd.DataFrame(rows, columns=_COLUMNS + (["guard"] if guard is not None else []))


_COLUMNS = ["layer", "site", "k", "energy", "before", "after", "base", "removal"]


def pooled_removal(before, after, base) -> float:
    """The removal over several finetunes (seeds) at once: the excess removed summed over
    them, over the excess summed, so a seed with almost no excess weighs almost nothing
    (a mean of per-seed ratios would be dominated by it)."""
    excess = sum(b - f for b, f in zip(before, base, strict=True))
    removed = sum(b - a for b, a in zip(before, after, strict=True))
    return float("nan") if abs(excess) < 1e-9 else removed / excess


def choose_place(table: pd.DataFrame, *, tolerance: float = 0.05) -> pd.Series:
    """Among the places of ``table`` (a :func:`place_scan` table) whose removal is within
    ``tolerance`` of the best: the one with the lowest ``guard`` when the table has one,
    then the smallest rank, then the earliest layer."""
    valid = table.dropna(subset=["removal"])
    if valid.empty:
        raise InterpError("no place has a removal: the finetune shows no excess behaviour here")
    best = float(valid.removal.max())
    near = valid[valid.removal >= best - tolerance]
    order = (["guard"] if "guard" in near else []) + ["k", "layer"]
    return near.sort_values(order).iloc[0]


def shift_ablation(
    pair: ModelPair, shift: Shift, metric: ModelMetric, *, n_random: int = 8, seed: int = 0
) -> dict:
    """Ablate ``shift`` in the finetuned view: ``before``, ``after``, ``base``, the
    ``removal`` and, for ``n_random`` norm-matched random subspaces of the same rank at the
    same place (clamped the same way), their removals; ``effect``: the
    :class:`~interp.causal.dose.EffectResult` (each value with its interval)."""
    sub = shift.subspace
    effect: EffectResult = ablation_effect(
        pair.finetuned, sub, metric, n_random=n_random, seed=seed, site=sub.site,
        mode="mean", reference=shift.reference,
    )  # fmt: skip
    base = _value(metric, pair.base)
    before = effect[0].value
    after = effect[1].value
    randoms = [removal(before, r.value, base) for r in effect.rows if r.condition == "random"]
    return dict(
        before=before, after=after, base=base, removal=removal(before, after, base),
        random=randoms, effect=effect,
    )  # fmt: skip
