"""Activation patching: one engine, exact and attribution modes, one result type.

``patch(model, clean, corrupt, sites=..., positions=..., metric=...)`` runs each corrupted
prompt with one activation (site x own token position) taken from its clean partner and
records the metric, for every site and position asked for. Pairs may differ in length from
one another; within a pair, clean and corrupt must tokenize to the same length. Positions
follow :mod:`interp.positions` (each prompt's own tokens; default every token). The metric
is a plain callable::

    metric(logits: Tensor[n, vocab]) -> Tensor[n] | scalar

that receives the *last-position* logits of the ``n`` pairs in prompt order and returns
one value per pair (rows of pairs not patched in that call hold placeholder logits and
their values are ignored), or one scalar when every pair has the same length.

The result (:class:`~interp.causal.patch_result.PatchResult`) holds each pair's own map and an
aggregate whose columns are aligned in a way that is true for every pair (by a tag, from
the start, or from the end: ``align=``).

Exact mode (``mode="exact"``) never pays one forward per (layer, position) and attribution
mode (``mode="attribution"``) is the first-order estimate from one forward and one
backward: :mod:`interp.causal.patch_engines`.

:func:`patch_resid_pre`, :func:`patch_attn_out`, :func:`patch_mlp_out` and
:func:`patch_resid_post` are the engine at one site kind (as ``get_act_patch_*`` in
TransformerLens). Inputs and memory sizing: :mod:`interp.causal.patch_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.causal.patch_engines import attribution, exact
from interp.causal.patch_pairs import (
    Metric,
    Pairs,
    as_values,
    chunk_size,
    group_metric,
    length_groups,
    memory_budget,
    pairs,
    row_bytes,
    split_group,
)
from interp.causal.patch_result import PatchResult, cells_to_result
from interp.errors import BackendError, InterpError
from interp.models import Model
from interp.positions import Positions, Span, normalize, resolve
from interp.prompts import PromptSet
from interp.sites import resolve_sites

__all__ = [
    "Metric",
    "PatchResult",
    "patch",
    "patch_attn_out",
    "patch_mlp_out",
    "patch_resid_post",
    "patch_resid_pre",
]


# ---- entry point ---------------------------------------------------------------------
def patch(
    model: Model,
    clean: Sequence[str] | PromptSet | dict,
    corrupt: Sequence[str] | PromptSet | dict,
    *,
    metric: Metric,
    sites: str | Sequence[str] = "resid_pre",
    layers: int | Sequence[int] | None = None,
    positions: Positions | None = "all",
    align: str | Span | None = None,
    mode: str = "exact",
    chunk: int | None = None,
    reuse_prefix: bool = True,
    memory: int | None = None,
) -> PatchResult:
    """Patch each clean activation into its corrupted partner; one metric value per pair,
    site and own token position.

    ``clean`` / ``corrupt``: prompts (strings, chat message lists, a
    :class:`~interp.prompts.PromptSet` whose tags ``positions`` and ``align`` may name), or
    a batch from :meth:`Model.tokenize`. Pair ``i`` must have the same token length on both
    sides; pairs may differ from each other. ``sites``: kinds (``resid_pre``, ``attn_out``,
    ``mlp_out``, ``resid_post``) with ``layers`` (default all) or full names.
    ``positions``: which own token positions to patch (:mod:`interp.positions`; default
    every token). ``align``: how the aggregate ``values`` lines pairs up: ``"start"``,
    ``"end"`` or a tag name of ``clean`` (default: ``"start"`` when every pair has the same
    length, else ``"end"``). ``chunk``: positions per batched exact run (default from
    ``memory``, the bytes one run may use).
    """
    if mode not in _ENGINES:
        raise InterpError(f"mode must be 'exact' or 'attribution', got {mode!r}")
    backend = getattr(model, "exact_engine", None)  # a backend without local blocks (NDIF)
    if backend is not None and mode != "exact":
        raise BackendError(f"mode={mode!r} patching needs local blocks; use mode='exact'")
    spec = normalize("all" if positions is None else positions)
    align_tag = align.tag if isinstance(align, Span) else align
    if align_tag is not None and not isinstance(align_tag, str):
        raise InterpError(f"align must be 'start', 'end' or a tag name, got {align!r}")
    tags = {t for t in (spec.tag if isinstance(spec, Span) else None, align_tag) if t}
    both = pairs(model, clean, corrupt, tags - {"start", "end"})
    lengths = both.lengths
    site_list = resolve_sites(sites, model.n_layers, layers)
    spans = both.clean.tags.get(spec.tag) if isinstance(spec, Span) else None
    per_positions = resolve(spec, lengths, spans=spans)
    if align_tag is None:
        align_tag = "start" if len(set(lengths)) == 1 else "end"
    if align_tag == "start" and len(set(lengths)) > 1:
        raise InterpError("align='start' needs pairs of one length; use 'end' or a tag")
    options = _Options(mode, chunk, reuse_prefix, memory_budget(model, memory))
    run = _run_groups(model, both, site_list, per_positions, metric, options)
    tok = model.tokenizer.convert_ids_to_tokens
    return cells_to_result(
        sites=site_list,
        prompt_tokens=[tok(ids.tolist()) for ids in both.clean.ids],
        tags=both.clean.tags,
        per_positions=per_positions,
        groups=run.groups,
        cells=run.cells,
        clean_values=as_values(metric(run.clean_logits), len(lengths)),
        corrupt_values=as_values(metric(run.corrupt_logits), len(lengths)),
        align=align_tag,
        mode=mode,
        config=dict(model=model.name, variant=model.variant, n_prompts=len(lengths), mode=mode),
    )


@dataclass(frozen=True)
class _Options:
    mode: str
    chunk: int | None
    reuse_prefix: bool
    budget: int  # bytes one exact run may use


@dataclass
class _Run:
    """What the length groups gave: ``cells[site index, position, length]`` -> values of
    that group's pairs, and every pair's clean and corrupt last-position logits."""

    groups: dict[int, list[int]]
    cells: dict[tuple[int, int, int], Tensor]
    clean_logits: Tensor  # [n, vocab]
    corrupt_logits: Tensor  # [n, vocab]


def _run_groups(model, both: Pairs, sites, per_positions, metric, options: _Options) -> _Run:
    """Each length group through the engine of ``options.mode``, split to fit memory."""
    n = len(both.lengths)
    groups = length_groups(both.lengths)
    cells: dict[tuple[int, int, int], Tensor] = {}
    logits: list[Tensor | None] = [None, None]  # clean, corrupt: [n, vocab]
    for length, members in groups.items():
        row = row_bytes(model, len(sites), length)
        parts = split_group(members, row, options.budget) if options.mode == "exact" else [members]
        wanted = sorted({p for i in members for p in per_positions[i]})
        got: dict[tuple[int, int], list[Tensor]] = {}
        for index in parts:
            clean, corrupt = both.batches(index)
            on_group = group_metric(metric, index, n)
            backend = getattr(model, "exact_engine", None)  # no local blocks (nnsight, NDIF)
            if options.mode == "exact":
                size = max(1, options.chunk or chunk_size(model, len(index), row, options.budget))
                if backend is not None:
                    out = backend(clean, corrupt, sites, wanted, on_group, size)
                else:
                    out = exact(
                        model, clean, corrupt, sites, wanted, on_group, size, options.reuse_prefix
                    )
            else:
                out = attribution(model, clean, corrupt, sites, wanted, on_group)
            for k, part in enumerate(out[:2]):
                if logits[k] is None:
                    logits[k] = torch.zeros(n, part.shape[-1])
                logits[k][index] = part.detach().float().cpu()
            for (site, p), value in out[2].items():
                got.setdefault((sites.index(site), p), []).append(as_values(value, len(index)))
        for (k, p), values in got.items():
            cells[k, p, length] = values[0] if len(values) == 1 else torch.cat(values)
    return _Run(groups, cells, logits[0], logits[1])  # type: ignore[arg-type]


_ENGINES = ("exact", "attribution")


# ---- specialisations (as TransformerLens' get_act_patch_*) ----------------------------
def patch_resid_pre(model: Model, clean, corrupt, *, metric: Metric, **options) -> PatchResult:
    """:func:`patch` at ``resid_pre`` (the residual entering each block) of every layer, or
    of ``layers=``; the other options are :func:`patch`'s."""
    return patch(model, clean, corrupt, metric=metric, sites="resid_pre", **options)


def patch_attn_out(model: Model, clean, corrupt, *, metric: Metric, **options) -> PatchResult:
    """:func:`patch` at ``attn_out`` (what each attention sublayer adds); options as there."""
    return patch(model, clean, corrupt, metric=metric, sites="attn_out", **options)


def patch_mlp_out(model: Model, clean, corrupt, *, metric: Metric, **options) -> PatchResult:
    """:func:`patch` at ``mlp_out`` (what each MLP adds); options as there."""
    return patch(model, clean, corrupt, metric=metric, sites="mlp_out", **options)


def patch_resid_post(model: Model, clean, corrupt, *, metric: Metric, **options) -> PatchResult:
    """:func:`patch` at ``resid_post`` (the residual leaving each block); options as there."""
    return patch(model, clean, corrupt, metric=metric, sites="resid_post", **options)
