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

The result (:class:`~interp.patch_result.PatchResult`) holds each pair's own map and an
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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.execution import chunks, forward
from interp.hooks import ModuleHook, hooks
from interp.models import Model
from interp.patch_result import PatchResult, align_columns
from interp.positions import Positions, Span, normalize, resolve, span_tokens
from interp.prompts import PromptSet, as_prompt_set
from interp.replay import can_reuse_prefix, record, run_block, unembed
from interp.sites import Site, resolve_sites

__all__ = ["Metric", "PatchResult", "patch"]

Metric = Callable[[Tensor], Tensor]  # last-position logits [n, vocab] -> [n] or scalar

# Default memory for one chunk of patched runs (bytes), on CPU; on a GPU half its free memory.
CPU_BUDGET = 1 << 30


# ---- inputs --------------------------------------------------------------------------
@dataclass
class _Prompts:
    """Prompts as unpadded token ids, with each prompt's tag tokens when a tag is used."""

    ids: list[Tensor]  # [n_i] each
    tags: dict[str, list[list[int]]]


def _tokens(model: Model, prompts, tags: set[str]) -> _Prompts:
    if isinstance(prompts, dict):  # a batch from Model.tokenize: strip each row's padding
        if tags:
            raise InterpError("tag positions and align= need prompts (a PromptSet), not ids")
        mask = prompts["attention_mask"].bool()
        return _Prompts([row[m] for row, m in zip(prompts["input_ids"], mask, strict=True)], {})
    if isinstance(prompts, str):
        prompts = [prompts]
    pset = as_prompt_set(prompts)
    texts = pset.render(model)
    chars = {t: pset.char_spans(t, texts) for t in tags}
    ids: list[Tensor | None] = [None] * len(texts)
    spans: dict[str, list[list[int]]] = {t: [[] for _ in texts] for t in tags}
    for chunk in chunks(model, texts, 64, offsets=bool(tags)):
        for r, i in enumerate(chunk.index):
            ids[i] = chunk.inputs["input_ids"][r, chunk.width - chunk.lengths[r] :]
            for t in tags:
                spans[t][i] = span_tokens(chunk.own_offsets(r), chars[t][i])
    return _Prompts(ids, spans)  # type: ignore[arg-type]


def _pairs(model: Model, clean, corrupt, tags: set[str]) -> tuple[_Prompts, _Prompts]:
    c = _tokens(model, clean, tags)
    x = _tokens(model, corrupt, set())
    if len(c.ids) != len(x.ids) or not c.ids:
        raise InterpError(
            f"clean and corrupt need the same, non-zero number of prompts "
            f"(got {len(c.ids)} and {len(x.ids)})"
        )
    for i, (a, b) in enumerate(zip(c.ids, x.ids, strict=True)):
        if len(a) != len(b):
            raise InterpError(
                f"pair {i}: clean and corrupt prompts must tokenize to the same length so that "
                f"positions line up (clean {len(a)} tokens, corrupt {len(b)} tokens)"
            )
    return c, x


def _buckets(lengths: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        out.setdefault(n, []).append(i)
    return out


def _bucket_metric(metric: Metric, index: list[int], n: int) -> Metric:
    """The metric on a group's rows: called on ``[n, vocab]`` with the group's rows in
    place (other rows zero), so a metric that reads per-prompt targets by row still can."""
    if index == list(range(n)):
        return metric
    idx = torch.tensor(index)

    def group_metric(logits: Tensor) -> Tensor:
        full = logits.new_zeros(n, logits.shape[-1]).index_copy(0, idx.to(logits.device), logits)
        value = torch.as_tensor(metric(full))
        if value.ndim == 0:
            raise InterpError(
                "the metric returned a scalar; with pairs of different lengths it must return "
                f"one value per prompt ([{n}])"
            )
        return value[idx.to(value.device)]

    return group_metric


def _as_values(value, n: int) -> Tensor:
    value = torch.as_tensor(value).detach().float().cpu()
    if value.ndim == 0:
        return value
    if value.shape != (n,):
        raise InterpError(
            f"the metric must return a scalar or a [{n}] tensor, got {tuple(value.shape)}"
        )
    return value


def _last_logits(model: Model, batch: dict) -> Tensor:
    return forward(model, batch, logits_to_keep=1).logits[:, -1]


def _budget(model: Model, memory: int | None) -> int:
    if memory is not None:
        if memory < 1:
            raise InterpError(f"memory must be a positive number of bytes, got {memory}")
        return memory
    if model.device.type == "cuda":
        return torch.cuda.mem_get_info(model.device)[0] // 2
    return CPU_BUDGET


def _row_bytes(model: Model, n_sites: int, seq: int) -> int:
    """Bytes one (prompt, patched position) costs at the deepest block, where every site's
    rows have joined: the sequence's d_model floats per site, and about 8x that for the
    block's intermediates (attention, MLP)."""
    return n_sites * seq * model.d_model * 4 * 8


def _groups(index: list[int], row: int, budget: int) -> list[list[int]]:
    """A length group split so that one patched position of all its prompts fits."""
    size = max(1, min(len(index), budget // max(1, row)))
    return [index[k : k + size] for k in range(0, len(index), size)]


def _chunk_size(model: Model, n: int, row: int, budget: int) -> int:
    """Positions per exact run: about 8 rows per site on CPU (64 on GPU), fewer when the
    rows of every joined site would not fit the budget."""
    default = max(1, (64 if model.device.type == "cuda" else 8) // n)
    return max(1, min(default, budget // max(1, n * row)))


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
    if mode not in ("exact", "attribution"):
        raise InterpError(f"mode must be 'exact' or 'attribution', got {mode!r}")
    spec = normalize("all" if positions is None else positions)
    align_tag = align.tag if isinstance(align, Span) else align
    if align_tag is not None and not isinstance(align_tag, str):
        raise InterpError(f"align must be 'start', 'end' or a tag name, got {align!r}")
    tags = {t for t in (spec.tag if isinstance(spec, Span) else None, align_tag) if t}
    tags -= {"start", "end"}
    clean_p, corrupt_p = _pairs(model, clean, corrupt, tags)
    lengths = [len(t) for t in clean_p.ids]
    site_list = resolve_sites(sites, model.n_layers, layers)
    per_positions = resolve(
        spec, lengths, spans=clean_p.tags.get(spec.tag) if isinstance(spec, Span) else None
    )
    if align_tag is None:
        align_tag = "start" if len(set(lengths)) == 1 else "end"
    if align_tag == "start" and len(set(lengths)) > 1:
        raise InterpError("align='start' needs pairs of one length; use 'end' or a tag")
    n = len(lengths)
    buckets = _buckets(lengths)
    budget = _budget(model, memory)
    clean_logits: Tensor | None = None
    corrupt_logits: Tensor | None = None
    cells: dict[tuple[int, int, int], Tensor] = {}  # (site index, position, length) -> values
    scalar = False
    for length, members in buckets.items():
        row = _row_bytes(model, len(site_list), length)
        parts = _groups(members, row, budget) if mode == "exact" else [members]
        got: dict[tuple[int, int], list[Tensor]] = {}
        wanted = sorted({p for i in members for p in per_positions[i]})
        for index in parts:
            ones = torch.ones(len(index), length, dtype=torch.long)
            cb = {"input_ids": torch.stack([clean_p.ids[i] for i in index]), "attention_mask": ones}
            xb = {
                "input_ids": torch.stack([corrupt_p.ids[i] for i in index]),
                "attention_mask": ones,
            }
            group_metric = _bucket_metric(metric, index, n)
            if mode == "exact":
                size = chunk or _chunk_size(model, len(index), row, budget)
                cl, xl, raw = _exact(
                    model, cb, xb, site_list, wanted, group_metric, max(1, size), reuse_prefix
                )
            else:
                cl, xl, raw = _attribution(model, cb, xb, site_list, wanted, group_metric)
            if clean_logits is None:
                clean_logits = torch.zeros(n, cl.shape[-1])
                corrupt_logits = torch.zeros(n, cl.shape[-1])
            clean_logits[index] = cl.detach().float().cpu()
            corrupt_logits[index] = xl.detach().float().cpu()
            for (site, p), value in raw.items():
                v = _as_values(value, len(index))
                scalar = scalar or v.ndim == 0
                got.setdefault((site_list.index(site), p), []).append(v)
        for (k, p), parts_v in got.items():
            cells[k, p, length] = parts_v[0] if len(parts_v) == 1 else torch.cat(parts_v)
    return _result(
        model, metric, site_list, clean_p, per_positions, buckets, cells, scalar,
        clean_logits, corrupt_logits, align_tag, mode,
    )  # fmt: skip


def _result(
    model, metric, site_list, clean_p, per_positions, buckets, cells, scalar,
    clean_logits, corrupt_logits, align, mode,
) -> PatchResult:  # fmt: skip
    """Per-pair maps from the groups' cells, then the aligned aggregate."""
    n = len(clean_p.ids)
    tok = model.tokenizer.convert_ids_to_tokens
    prompt_tokens = [tok(ids.tolist()) for ids in clean_p.ids]
    clean_values = _as_values(metric(clean_logits), n)
    corrupt_values = _as_values(metric(corrupt_logits), n)
    if scalar:
        uniform = len(buckets) == 1 and all(p == per_positions[0] for p in per_positions)
        if not uniform:
            raise InterpError(
                "the metric returned a scalar; with pairs of different lengths or positions it "
                f"must return one value per prompt ([{n}])"
            )
        (length,) = buckets
        pos = per_positions[0]
        values = torch.tensor(
            [[float(cells[i, p, length]) for p in pos] for i in range(len(site_list))]
        )
        labels = [f"{p}:{prompt_tokens[0][p] if n == 1 else '*'}" for p in pos]
        return PatchResult(
            values, [s.name for s in site_list], pos, labels, float(clean_values),
            float(corrupt_values), mode, align="start", counts=[n] * len(pos),
            prompt_tokens=prompt_tokens, config=_config(model, n, mode),
        )  # fmt: skip
    per = [torch.full((len(site_list), len(ids)), float("nan")) for ids in clean_p.ids]
    for length, index in buckets.items():
        for r, i in enumerate(index):
            for p in per_positions[i]:
                for k in range(len(site_list)):
                    per[i][k, p] = cells[k, p, length][r]
    spans = None
    if align not in ("start", "end"):
        if align not in clean_p.tags:
            raise InterpError(f"align={align!r}: give clean prompts as a PromptSet with that tag")
        spans = [(t[0], t[-1]) for t in clean_p.tags[align]]
    values, labels, counts, keys = align_columns(per, prompt_tokens, align, spans, align)
    return PatchResult(
        values=values,
        sites=[s.name for s in site_list],
        positions=[k[1] for k in keys],
        tokens=labels,
        clean_value=float(clean_values.mean()),
        corrupt_value=float(corrupt_values.mean()),
        mode=mode,
        per_prompt=per,
        prompt_tokens=prompt_tokens,
        clean_values=clean_values,
        corrupt_values=corrupt_values,
        align=align,
        counts=counts,
        tags=clean_p.tags,
        config=_config(model, n, mode),
    )


def _config(model: Model, n: int, mode: str) -> dict:
    return dict(model=model.name, variant=model.variant, n_prompts=n, mode=mode)
