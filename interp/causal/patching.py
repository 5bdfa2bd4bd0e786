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

Exact mode (``mode="exact"``) never pays one forward per (layer, position). Pairs are
grouped by length (so nothing inside the engine is padded), and within a group:

- the corrupted run is recorded once: the residual entering every block, the keyword
  arguments the model passes to each block (masks, rotary tables) and each block's keys
  and values;
- a patched run at layer ``l`` starts at block ``l`` from the recorded corrupted residual
  (layers below are reused, not recomputed); all patched runs of a chunk of positions go
  in one batch that grows as deeper layers join; the chunk is as large as a memory budget
  (sites x positions x sequence x d_model) allows, at most about 8 rows per site on CPU;
- positions before the patched one are unchanged by causality, so a chunk only computes
  the suffix from its first position on, attending to the recorded keys and values of the
  prefix (``reuse_prefix``);
- the final norm and unembedding run at the last position only.

Attribution mode (``mode="attribution"``) is the first-order estimate
``metric(corrupt) + grad . (clean - corrupt)`` from one forward of each prompt set (the
clean one without a graph) and one backward to the activations (no weight gradients).

:func:`patch_resid_pre`, :func:`patch_attn_out`, :func:`patch_mlp_out` and
:func:`patch_resid_post` are the engine at one site kind (as ``get_act_patch_*`` in
TransformerLens). Inputs and memory sizing: :mod:`interp.causal.patch_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

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
from interp.causal.replay import can_reuse_prefix, record, run_block, unembed
from interp.errors import BackendError, InterpError
from interp.execution import forward
from interp.hooks import ModuleHook, hooks
from interp.models import Model
from interp.positions import Positions, Span, normalize, resolve
from interp.prompts import PromptSet
from interp.sites import Site, resolve_sites

__all__ = [
    "Metric",
    "PatchResult",
    "patch",
    "patch_attn_out",
    "patch_mlp_out",
    "patch_resid_post",
    "patch_resid_pre",
]


def _last_logits(model: Model, batch: dict) -> Tensor:
    return forward(model, batch, logits_to_keep=1).logits[:, -1]


# ---- exact ---------------------------------------------------------------------------
def _start_block(site: Site) -> int:
    return site.layer + 1 if site.kind == "resid_post" else site.layer


@torch.no_grad()
def _exact(model, clean, corrupt, sites, positions, metric, chunk, reuse_prefix):
    n = clean["input_ids"].shape[0]
    clean_acts: dict[Site, Tensor] = {}

    def keep(act, site):
        clean_acts[site] = act.detach()

    with hooks(model, {s: keep for s in sites}):
        clean_logits = _last_logits(model, clean)
    with record(model, want_kv=reuse_prefix) as rec:
        corrupt_logits = _last_logits(model, corrupt)
    reuse = reuse_prefix and can_reuse_prefix(model, rec)

    values: dict[tuple[Site, int], Tensor] = {}
    for c0 in range(0, len(positions), chunk):
        pos = positions[c0 : c0 + chunk]
        logits, offsets = _run_chunk(model, rec, sites, clean_acts, pos, n, pos[0] if reuse else 0)
        for site in sites:
            for i, p in enumerate(pos):
                off = offsets[site] + i * n
                values[site, p] = metric(logits[off : off + n])
    return clean_logits, corrupt_logits, values


def _run_chunk(model, rec, sites, clean_acts, pos, n, s0) -> tuple[Tensor, dict[Site, int]]:
    """Last-position logits of every patched run for positions ``pos`` (suffix from ``s0``).

    Rows of one site are ordered [position][prompt]; ``offsets`` says where each site's rows
    start. Sites join the batch at the block where their patch takes effect. Index tensors
    follow each activation's device (a dispatched model keeps blocks on several devices).
    """
    n_layers = model.n_layers
    row_pos = torch.tensor(pos).repeat_interleave(n) - s0  # [len(pos) * n]
    row_prompt = torch.arange(n).repeat(len(pos))
    rows_all = torch.arange(len(row_pos))
    offsets: dict[Site, int] = {}

    def patched(site: Site, base: Tensor) -> Tensor:
        clean = clean_acts[site]
        src = clean[row_prompt.to(clean.device), (row_pos + s0).to(clean.device)]
        out = base.clone()
        out[rows_all.to(base.device), row_pos.to(base.device)] = src.to(base)
        return out

    def sublayer_hook(act: Tensor, site: Site) -> Tensor:
        rows = slice(offsets[site], offsets[site] + len(row_pos))
        out = act.clone()
        out[rows] = patched(site, act[rows])
        return out

    active: Tensor | None = None
    sub = {s: sublayer_hook for s in sites if s.kind in ("attn_out", "mlp_out")}
    with model._adapter_mode(), hooks(model, sub):
        for j in range(n_layers + 1):
            base = (rec.inputs[j] if j < n_layers else rec.final)[:, s0:]
            joined = [] if active is None else [active.to(base.device)]
            for site in sites:
                if _start_block(site) != j:
                    continue
                offsets[site] = sum(t.shape[0] for t in joined)
                x = base.repeat(len(pos), 1, 1)
                joined.append(x if site.kind in ("attn_out", "mlp_out") else patched(site, x))
            if joined:
                active = torch.cat(joined) if len(joined) > 1 else joined[0]
            if j < n_layers and active is not None:
                active = run_block(model, rec, j, active, n, s0)
        return unembed(model, active[:, -1]), offsets


# ---- attribution ---------------------------------------------------------------------
def _attribution(model, clean, corrupt, sites, positions, metric):
    clean_acts: dict[Site, Tensor] = {}
    acts: dict[Site, Tensor] = {}

    def keep_clean(act, site):
        clean_acts[site] = act.detach()

    def keep(act, site):
        acts[site] = act

    def leaf(module, args, kwargs, output):  # gradients start here, whatever requires_grad says
        return output.detach().requires_grad_(True)

    with torch.no_grad(), hooks(model, {s: keep_clean for s in sites}):
        clean_logits = _last_logits(model, clean)
    embed = ModuleHook(model.family.embed, leaf)
    with torch.enable_grad(), hooks(model, {s: keep for s in sites}, modules=[embed]):
        logits = _last_logits(model, corrupt)
        corrupt_metric = metric(logits)
        total = torch.as_tensor(corrupt_metric).sum()
        # gradients with respect to the activations only: no weight gradient is computed
        grads = torch.autograd.grad(total, [acts[s] for s in sites], allow_unused=True)
    corrupt_metric = torch.as_tensor(corrupt_metric).detach()
    values = {}
    for site, g in zip(sites, grads, strict=True):
        act = acts[site].detach()
        pos = torch.tensor(positions, device=act.device)
        delta = (clean_acts[site].to(act.device) - act)[:, pos]  # [n, P, d]
        g = torch.zeros_like(delta) if g is None else g[:, pos]
        lin = (g * delta).sum(-1)  # [n, P]
        for i, p in enumerate(positions):
            step = lin[:, i] if corrupt_metric.ndim == 1 else lin[:, i].sum()
            values[site, p] = corrupt_metric + step
    return clean_logits, logits.detach(), values


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
                    out = _exact(
                        model, clean, corrupt, sites, wanted, on_group, size, options.reuse_prefix
                    )
            else:
                out = _attribution(model, clean, corrupt, sites, wanted, on_group)
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
