"""Step 6 of an experiment: where each finetune's shift lives, proven on held-out questions.

The target group's evaluation questions are split in two (alternate items): the
*select* half chooses the place, the *report* half measures it, so the number reported
was not tuned on the questions it is reported on.

1. The finetune's own activation difference on the select half
   (finetuned minus base, at every token entering each block) is decomposed by SVD, and
   its top-k subspace ablated for every layer and rank in every seed
   (:func:`interp.causal.shift.place_scan`). Pooled over the seeds (the excess removed over
   the excess, summed over the seeds), among the places
   within 0.05 of the best removal, the one whose ablation moves the next token of
   ordinary prompts (their select half) least from the base model's is the place
   (:func:`~interp.causal.shift.choose_place`).
2. In every seed, that seed's finetune gives its own subspace at the chosen place (from
   the select half) and the ablation is measured on the report half: the removal (the
   fraction of the excess, finetuned minus base, taken away) against ``n_random``
   norm-matched random subspaces of the same rank; on ordinary prompts, the next-token KL
   divergence from the finetune and from the base model to the ablated finetune (a random
   subspace's for scale); on the other settings' evaluation groups (at most
   :data:`OTHER_ITEMS` items each), how far the finetune and the ablated finetune are
   from the base model's shares. The ablation should take the
   finetune back to the base, not somewhere else. A seed whose finetune shows less than
   :data:`MIN_EXCESS` on the report half is left out of the removal (listed as excluded).
3. The same subspace ablated in every control finetune of that seed: controls should not
   move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

from interp.causal.interventions import ablate, random_like
from interp.causal.shift import (
    Shift,
    choose_place,
    place_scan,
    pooled_removal,
    shift_ablation,
    shift_subspace,
)
from interp.execution import last_logits
from interp.experiments.finetunes import Placement, finetuned
from interp.experiments.results import write_table
from interp.metrics.answers import render_prompts
from interp.metrics.evalset import EvalSet
from interp.metrics.stats import mean_ci
from interp.models import Model, ModelPair
from interp.organism import settings as S
from interp.organism.world import World

__all__ = ["MIN_EXCESS", "RANKS", "TOLERANCE", "localize", "opened", "pool_seeds", "split_halves"]

RANKS = (1, 2, 4, 8, 16)
TOLERANCE = 0.05  # the smallest rank within this of the best removal is the place
N_ORDINARY = 96  # ordinary prompts: half choose the place (its cost), half report the KL
KL = ("kl", "kl_random", "kl_base_finetune", "kl_base_ablated")  # the worst seed's
OTHER = ("other_finetune", "other_ablated")
OTHER_ITEMS = 24  # items of each other setting's group (the backdoor's hold 160 years x goals)
MIN_EXCESS = 0.05  # below this (finetune minus base share) there is nothing to localize


def _pair(base_model: Model, ft: Model) -> ModelPair:
    return ModelPair(ft.as_base(), ft) if ft.has_adapter else ModelPair(base_model, ft)


@contextmanager
def opened(base_model: Model, path, place: Placement) -> Iterator[ModelPair]:
    """A finetune opened on ``base_model`` as a :class:`ModelPair` (views of one load for
    an adapter)."""
    with finetuned(base_model, path, place) as ft:
        yield _pair(base_model, ft)


def split_halves(items: Sequence) -> tuple[list, list]:
    """(select, report): alternate items, so both halves cover the whole list."""
    return list(items[0::2]), list(items[1::2])


def _ordinary(world: World | None, data) -> list:
    """Prompts unrelated to the setting: the organism's ordinary questions, else the
    no-trigger half of the contrast set."""
    if world is not None:
        qs = S.ordinary_questions(world, N_ORDINARY, seed=20261202)
        return [[{"role": "user", "content": q}] for q in qs]
    keep = [i for i, y in enumerate(data.contrast.meta.label) if y == 0][:N_ORDINARY]
    return list(data.contrast.subset(keep).prompts)


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean KL(p || q) of next-token distributions given as logits ``[n, vocab]``."""
    lp, lq = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def _with(pair: ModelPair, target, shift: Shift, fn: Callable[[Model], object]):
    with ablate(pair.finetuned, target, site=target.site, mode="mean", reference=shift.reference):
        return fn(pair.finetuned)


def _kl_row(pair: ModelPair, shift: Shift, texts: list[str]) -> dict:
    """Next-token KL on ordinary prompts: from the finetune to the ablated finetune (and to
    a random ablation), and from the base to each (0: the base model's own answers)."""
    tuned, base = last_logits(pair.finetuned, texts), last_logits(pair.base, texts)
    ablated = _with(pair, shift.subspace, shift, lambda m: last_logits(m, texts))
    rand = _with(pair, random_like(shift.subspace, seed=0), shift, lambda m: last_logits(m, texts))
    return dict(
        kl=_kl(tuned, ablated), kl_random=_kl(tuned, rand),
        kl_base_finetune=_kl(base, tuned), kl_base_ablated=_kl(base, ablated),
    )  # fmt: skip


def _other_rows(pair: ModelPair, shift: Shift, others: EvalSet | None, base: dict | None) -> dict:
    """The other settings' groups: the largest distance from the base model's share
    (``base``: its shares, the same in every seed), of the finetune and of the ablated
    finetune."""
    if others is None or base is None:
        return dict(other_finetune=None, other_ablated=None)
    tuned = others.shares(pair.finetuned)
    ablated = _with(pair, shift.subspace, shift, others.shares)

    def far(x):
        return max(abs(float(x[g].mean()) - float(base[g].mean())) for g in base)

    return dict(other_finetune=far(tuned), other_ablated=far(ablated))


def _others(world: World | None, setting: str) -> EvalSet | None:
    """The other settings' evaluation groups, each at most :data:`OTHER_ITEMS` items
    (spread evenly over the group)."""
    if world is None:
        return None
    groups: dict[str, list] = {}
    for other in S.SETTINGS:
        if other != setting:
            evals = S.eval_items(world, other)
            for g in evals:
                if not g[-4:].isdigit():  # the backdoor's per-year groups repeat its summaries
                    items = evals[g]
                    groups[f"{other}/{g}"] = items[:: -(-len(items) // OTHER_ITEMS)]
    return EvalSet.from_groups(groups)


def _guard(texts: list[str]):
    """What an ablation costs on ordinary prompts: KL from the base model's next token."""

    def guard(pair: ModelPair, shift: Shift) -> float:
        base = last_logits(pair.base, texts)
        return _kl(base, _with(pair, shift.subspace, shift, lambda m: last_logits(m, texts)))

    return guard


def _choose(pairs_of, paths, prompts, metric, texts, out: Path) -> pd.Series | None:
    """The place whose removal on the select half, pooled over the seeds, is near the
    best at the lowest cost on the select half of the ordinary prompts."""
    tables = []
    for i, path in enumerate(paths):
        with pairs_of(path) as pair:
            scan = place_scan(pair, prompts, metric, ranks=RANKS, guard=_guard(texts))
            tables.append(scan.assign(seed=i))
    table = pd.concat(tables, ignore_index=True)
    write_table(out, "localization_places", table)
    if table.empty or float((table.before - table.base).mean()) < MIN_EXCESS:
        return None
    return choose_place(pool_seeds(table), tolerance=TOLERANCE)


def pool_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """One row per place of a multi-seed place table: the pooled removal
    (:func:`~interp.causal.shift.pooled_removal`), the mean energy and guard."""
    rows = []
    for (layer, site, k), g in table.groupby(["layer", "site", "k"], sort=True):
        rows.append(dict(layer=layer, site=site, k=k, energy=g.energy.mean(),
                         removal=pooled_removal(g.before, g.after, g.base),
                         guard=g.guard.mean() if "guard" in g else None))  # fmt: skip
    return pd.DataFrame(rows)


def _seed_rows(pairs_of, adapters, layer, rank, select, report, spec, texts, others, base):
    rows, shifts = [], []
    base_shares = others.shares(base) if others is not None else None
    for i, path in enumerate(adapters["main"]):
        with pairs_of(path) as pair:
            shift = shift_subspace(pair, select, layer=layer, k=rank)
            res = shift_ablation(pair, shift, report, n_random=spec.n_random, seed=100 * i)
            res.pop("effect")
            rows.append(
                dict(seed=i, **res, energy=shift.energy, **_kl_row(pair, shift, texts),
                     **_other_rows(pair, shift, others, base_shares))
            )  # fmt: skip
        shifts.append(shift)
    return rows, shifts


def _control_rows(pairs_of, adapters, shifts, report) -> list[dict]:
    rows = []
    for variant, paths in adapters.items():
        if variant == "main":
            continue
        for i, path in enumerate(paths):
            shift = shifts[min(i, len(shifts) - 1)]
            with pairs_of(path) as pair:
                res = shift_ablation(pair, shift, report, n_random=0)
            rows.append(dict(variant=variant, seed=i, before=res["before"], after=res["after"]))
    return rows


def _summary(rows: list[dict], controls: list[dict], place: dict) -> dict:
    """Seeds whose finetune shows less than :data:`MIN_EXCESS` on the report half are
    listed as ``excluded`` and left out of the removal (their ratio means nothing)."""
    every = pd.DataFrame(rows)
    keep = (every.before - every.base) >= MIN_EXCESS
    frame = every[keep] if keep.any() else every
    randoms = [
        r for x, k in zip(rows, keep, strict=True) if k or not keep.any() for r in x["random"]
    ]
    out = {
        "place": place,
        "removal": {**mean_ci(frame.removal.tolist()).to_dict(), "per_seed": frame.removal.tolist()},
        "seeds": frame.seed.tolist(),
        "excluded": every[~keep].seed.tolist() if keep.any() else [],
        "random": {
            "mean": float(pd.Series(randoms).mean()) if randoms else None,
            "max": float(max(randoms)) if randoms else None,
            "n": len(randoms),
        },
        **{k: float(frame[k].mean()) for k in ("before", "after", "base")},
        **{k: float(frame[k].max()) for k in KL},
        **{k: None if frame[k].isna().all() else float(frame[k].max()) for k in OTHER},
        "controls": {},
    }  # fmt: skip
    for variant, sub in pd.DataFrame(controls).groupby("variant", sort=False) if controls else []:
        out["controls"][variant] = {"before": sub.before.tolist(), "after": sub.after.tolist()}
    return out


def localize(
    spec,
    base_model: Model,
    adapters: Mapping[str, list[Path]],
    data,
    place: Placement,
    out: Path,
    world: World | None = None,
    log: Callable[[str], None] = print,
) -> dict | None:
    """Steps 1-3 above; the summary that goes into results.json under ``localization``
    (``None`` when the target group has fewer than 2 questions to split; ``place: None``
    with a note when the finetunes raise the target share by less than
    :data:`MIN_EXCESS`)."""
    items = data.evals[spec.target_group]
    if len(items) < 2:
        log(f"localize: {spec.target_group} has {len(items)} question(s), nothing to hold out")
        return None
    select, report = split_halves(items)
    select_prompts = [it.prompt for it in select]
    metric = {h: EvalSet.from_groups({h: v}).metric(h) for h, v in (("s", select), ("r", report))}

    def pairs_of(path):
        return opened(base_model, path, place)

    texts = split_halves(render_prompts(base_model, _ordinary(world, data)))
    log(f"localize: places on {len(select)} select questions, {len(adapters['main'])} seeds")
    row = _choose(pairs_of, adapters["main"], select_prompts, metric["s"], texts[0], out)
    if row is None:
        log(f"localize: no place (the finetunes raise {spec.target_group} by less than "
            f"{MIN_EXCESS}, or change no site)")  # fmt: skip
        return {"place": None, "note": f"excess below {MIN_EXCESS} or no site changed"}
    layer, rank = int(row.layer), int(row.k)
    log(f"localize: layer {layer} rank {rank}, measured on {len(report)} report questions")
    rows, shifts = _seed_rows(
        pairs_of, adapters, layer, rank, select_prompts, metric["r"], spec, texts[1],
        _others(world, spec.setting), base_model,
    )  # fmt: skip
    controls = _control_rows(pairs_of, adapters, shifts, metric["r"])
    write_table(out, "localization", pd.DataFrame(rows).drop(columns="random"))
    chosen = dict(
        layer=layer, site=str(row.site), k=rank, energy=float(row.energy),
        select_removal=float(row.removal), select_kl=float(row.guard),
        select_items=len(select), report_items=len(report),
        ranks=list(RANKS), tolerance=TOLERANCE,
    )  # fmt: skip
    return _summary(rows, controls, chosen)
