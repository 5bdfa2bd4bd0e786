"""Activation patching through hooks and forwards only: batched per-cell runs.

:mod:`interp.patching`'s exact engine replays blocks one at a time from a recorded run,
which needs the model's modules at hand; a model behind traces (nnsight on NDIF) has
none. This engine needs nothing but :func:`interp.hooks.hooks` and ``model.forward``:

1. one forward of the clean prompts keeps the activation at every requested site;
2. for each site and each chunk of positions, one forward of the corrupted prompts
   repeated once per position, where a hook writes the clean activation into row block
   ``i`` at position ``i`` of the chunk; the metric reads each block's last-position logits.

It computes every patched run in full (no prefix or layer reuse), so it costs
``n_sites * n_positions / chunk`` forwards of ``chunk * n`` rows: slow, and exact.
Positions are indices into the (left-padded) sequence, as in :func:`interp.patch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.hooks import hooks
from interp.patching import Metric, PatchResult
from interp.sites import resolve_sites

__all__ = ["patch_by_traces"]


def _pairs(model, clean, corrupt) -> tuple[dict, dict]:
    clean = [clean] if isinstance(clean, str) else list(clean)
    corrupt = [corrupt] if isinstance(corrupt, str) else list(corrupt)
    if len(clean) != len(corrupt) or not clean:
        raise InterpError("clean and corrupt need the same, non-zero number of prompts")
    enc = model.tokenize(clean + corrupt)
    n = len(clean)
    a, b = ({k: v[s] for k, v in enc.items()} for s in (slice(0, n), slice(n, None)))
    if not torch.equal(a["attention_mask"], b["attention_mask"]):
        raise InterpError("clean and corrupt prompts must tokenize to the same length, pairwise")
    return a, b


def _positions(positions, seq: int) -> list[int]:
    if positions is None or positions == "all":
        return list(range(seq))
    items = [positions] if isinstance(positions, int) else list(positions)
    bad = [p for p in items if not -seq <= p < seq]
    if bad:
        raise InterpError(f"position {bad[0]} is out of range for {seq} tokens")
    return sorted({p % seq for p in items})


def _last_logits(model, batch: dict) -> Tensor:
    with torch.no_grad():
        out = model.forward(batch["input_ids"], batch["attention_mask"], logits_to_keep=1)
    return out.logits[:, -1]


def _per_prompt(value, n: int) -> Tensor:
    value = torch.as_tensor(value).detach().float().cpu()
    if value.ndim == 0:
        return value.expand(n)
    if value.shape != (n,):
        raise InterpError(f"the metric must return a scalar or a [{n}] tensor, got {value.shape}")
    return value


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
    return [_per_prompt(metric(logits[i * n : (i + 1) * n]), n) for i in range(len(pos))]


def patch_by_traces(
    model,
    clean: Sequence[str] | str,
    corrupt: Sequence[str] | str,
    *,
    metric: Metric,
    sites: str | Sequence[str] = "resid_pre",
    layers: int | Sequence[int] | None = None,
    positions: int | Sequence[int] | str | None = None,
    chunk: int | None = None,
) -> PatchResult:
    """Exact activation patching by batched per-cell forwards (see the module docstring)."""
    clean_b, corrupt_b = _pairs(model, clean, corrupt)
    n, seq = clean_b["input_ids"].shape
    site_list = resolve_sites(sites, model.n_layers, layers)
    pos_list = _positions(positions, seq)
    chunk = max(1, chunk or 64 // n)
    kept: dict = {}

    def keep(act: Tensor, s) -> None:
        kept[s] = act.detach()

    with hooks(model, {s: keep for s in site_list}):
        clean_logits = _last_logits(model, clean_b)
    clean_vec = _per_prompt(metric(clean_logits), n)
    corrupt_vec = _per_prompt(metric(_last_logits(model, corrupt_b)), n)
    per = torch.zeros(len(site_list), len(pos_list), n)
    for i, site in enumerate(site_list):
        for c0 in range(0, len(pos_list), chunk):
            pos = pos_list[c0 : c0 + chunk]
            for j, v in enumerate(_patched_runs(model, corrupt_b, site, kept[site], pos, metric)):
                per[i, c0 + j] = v
    ids = clean_b["input_ids"][0].tolist()
    tokens = [f"{p}:{model.tokenizer.convert_ids_to_tokens(ids[p])}" for p in pos_list]
    return PatchResult(
        values=per.mean(-1),
        sites=[s.name for s in site_list],
        positions=pos_list,
        tokens=tokens,
        clean_value=float(clean_vec.mean()),
        corrupt_value=float(corrupt_vec.mean()),
        mode="exact",
        per_prompt=per,
        config=dict(
            model=model.name,
            variant=model.variant,
            n_prompts=n,
            mode="exact",
            engine="per-cell traces",
        ),
    )
