"""The two engines of :func:`interp.causal.patching.patch`, over one length group of pairs.

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

Each returns ``(clean logits [n, vocab], corrupt logits [n, vocab], values)`` with
``values[site, position]`` the metric of the ``n`` pairs patched there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interp.causal.replay import can_reuse_prefix, record, run_block, unembed
from interp.execution import forward
from interp.hooks import ModuleHook, hooks
from interp.models import Model
from interp.sites import Site

__all__ = ["exact", "attribution"]


def _last_logits(model: Model, batch: dict) -> Tensor:
    return forward(model, batch, logits_to_keep=1).logits[:, -1]


# ---- exact ---------------------------------------------------------------------------
def _start_block(site: Site) -> int:
    return site.layer + 1 if site.kind == "resid_post" else site.layer


@torch.no_grad()
def exact(model, clean, corrupt, sites, positions, metric, chunk, reuse_prefix):
    """``(clean logits [n, vocab], corrupt logits [n, vocab], {(site, position): values})``
    of one length group of pairs by replaying blocks (see the module docstring)."""
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
def attribution(model, clean, corrupt, sites, positions, metric):
    """As :func:`exact`, the values being ``metric(corrupt) + grad . (clean - corrupt)``."""
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
