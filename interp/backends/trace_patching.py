"""Activation patching through hooks and forwards only: batched per-cell runs.

:mod:`interp.causal.patching`'s exact engine replays blocks one at a time from a recorded run,
which needs the model's modules at hand; a model behind traces (nnsight on NDIF) has
none. This engine needs nothing but :func:`interp.hooks.hooks` and ``model.forward``,
and plugs into :func:`interp.patch` for one group of equal-length pairs (no padding), so
positions, per-pair maps and alignment are the same as with the local engine:

1. one forward of the clean prompts keeps the activation at every requested site;
2. for each site and each chunk of positions, one forward of the corrupted prompts
   repeated once per position, where a hook writes the clean activation into row block
   ``i`` at position ``i`` of the chunk; the metric reads each block's last-position logits.

It computes every patched run in full (no prefix or layer reuse), so it costs
``n_sites * n_positions / chunk`` forwards of ``chunk * n`` rows: slow, and exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from interp.hooks import hooks

__all__ = ["exact_by_traces"]


def _last_logits(model, batch: dict) -> Tensor:
    with torch.no_grad():
        out = model.forward(batch["input_ids"], batch["attention_mask"], logits_to_keep=1)
    return out.logits[:, -1]


def _patched_runs(model, corrupt, site, src: Tensor, pos: list[int], metric) -> list[Tensor]:
    """Metric ``[n]`` of each position in ``pos`` patched from ``src [n, S, d]``."""
    n = corrupt["input_ids"].shape[0]
    rep = {k: v.repeat(len(pos), 1) for k, v in corrupt.items()}  # [len(pos) * n, S]

    def put(act: Tensor, s) -> Tensor:
        out = act.clone()
        for i, p in enumerate(pos):
            out[i * n : (i + 1) * n, p] = src[:, p].to(device=out.device, dtype=out.dtype)
        return out

    with hooks(model, {site: put}):
        logits = _last_logits(model, rep)
    return [metric(logits[i * n : (i + 1) * n]) for i in range(len(pos))]


def exact_by_traces(model, clean, corrupt, sites, positions, metric, chunk):
    """The exact engine's contract (:func:`interp.causal.patching` ``_exact``) by per-cell
    forwards: last-position logits of the clean and corrupt group and the metric of every
    (site, position) patch, for one group of equal-length, unpadded pairs."""
    n = clean["input_ids"].shape[0]
    chunk = max(1, min(chunk, max(1, 64 // n)))
    kept: dict = {}

    def keep(act: Tensor, s) -> None:
        kept[s] = act.detach()

    with hooks(model, {s: keep for s in sites}):
        clean_logits = _last_logits(model, clean)
    corrupt_logits = _last_logits(model, corrupt)
    values = {}
    for site in sites:
        for c0 in range(0, len(positions), chunk):
            pos = positions[c0 : c0 + chunk]
            for p, v in zip(
                pos, _patched_runs(model, corrupt, site, kept[site], pos, metric), strict=True
            ):
                values[site, p] = v
    return clean_logits, corrupt_logits, values
