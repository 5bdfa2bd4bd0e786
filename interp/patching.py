"""Activation patching: one engine, exact and attribution modes, one result type.

``patch(model, clean, corrupt, sites=..., positions=..., metric=...)`` runs the corrupted
prompts with one activation (site x position) taken from the clean run and records the
metric, for every site and position asked for. The metric is a plain callable::

    metric(logits: Tensor[n, vocab]) -> Tensor[n] | scalar

that receives the *last-position* logits of the ``n`` patched prompts (in prompt order)
and returns a value per prompt (averaged into :attr:`PatchResult.values`, kept in
:attr:`PatchResult.per_prompt`) or one scalar.

Exact mode (``mode="exact"``) never pays one forward per (layer, position):

- the corrupted run is recorded once: the residual entering every block, the keyword
  arguments the model passes to each block (masks, rotary tables) and each block's keys
  and values;
- a patched run at layer ``l`` starts at block ``l`` from the recorded corrupted residual
  (layers below are reused, not recomputed); all patched runs of a chunk of positions go
  in one batch that grows as deeper layers join;
- positions before the patched one are unchanged by causality, so a chunk only computes
  the suffix from its first position on, attending to the recorded keys and values of the
  prefix (``reuse_prefix``);
- the final norm and unembedding run at the last position only.

Attribution mode (``mode="attribution"``) is the first-order estimate
``metric(corrupt) + grad . (clean - corrupt)`` from one forward of each prompt set (the
clean one without a graph) and one backward to the activations (no weight gradients).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.hooks import hooks
from interp.models import Model
from interp.replay import can_reuse_prefix, record, run_block, unembed
from interp.sites import Site, resolve_sites

__all__ = ["Metric", "PatchResult", "patch"]

Metric = Callable[[Tensor], Tensor]  # last-position logits [n, vocab] -> [n] or scalar


@dataclass
class PatchResult:
    """Metric after patching each (site, position); rows follow ``sites``, columns ``positions``."""

    values: Tensor  # [n_sites, n_positions]
    sites: list[str]
    positions: list[int]
    tokens: list[str]  # label of each position (token of the first clean prompt)
    clean_value: float
    corrupt_value: float
    mode: str
    per_prompt: Tensor | None = None  # [n_sites, n_positions, n_prompts]
    config: dict = field(default_factory=dict)

    def normalized(self) -> Tensor:
        """``(value - corrupt) / (clean - corrupt)``: 0 = no effect, 1 = full recovery."""
        return (self.values - self.corrupt_value) / (self.clean_value - self.corrupt_value)

    def grid(self, kind: str) -> tuple[list[int], Tensor]:
        """Layers and the ``[n_layers, n_positions]`` block of one site kind."""
        rows = [i for i, s in enumerate(self.sites) if s.endswith(f"hook_{kind}")]
        if not rows:
            raise InterpError(f"no {kind!r} sites in this result (sites: {self.sites})")
        layers = [int(self.sites[i].split(".")[1]) for i in rows]
        return layers, self.values[rows]

    def to_frame(self):
        """Long table: one row per (site, position) with layer, kind, token and value."""
        import pandas as pd

        norm = self.normalized()
        rows = []
        for i, site in enumerate(self.sites):
            _, layer, kind = site.split(".")
            for j, pos in enumerate(self.positions):
                rows.append(
                    dict(
                        site=site,
                        layer=int(layer),
                        kind=kind.removeprefix("hook_"),
                        position=pos,
                        token=self.tokens[j],
                        value=float(self.values[i, j]),
                        normalized=float(norm[i, j]),
                    )
                )
        return pd.DataFrame(rows)

    def save(self, directory: str | Path, config: dict | None = None) -> Path:
        """Write ``patching.csv`` and ``patching.json`` (result summary plus config)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(directory / "patching.csv", index=False)
        meta = dict(
            mode=self.mode,
            clean_value=self.clean_value,
            corrupt_value=self.corrupt_value,
            sites=self.sites,
            positions=self.positions,
            tokens=self.tokens,
            config={**self.config, **(config or {})},
        )
        (directory / "patching.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory


# ---- inputs --------------------------------------------------------------------------
def _batches(model: Model, clean, corrupt) -> tuple[dict, dict]:
    if isinstance(clean, str) or isinstance(corrupt, str):
        clean, corrupt = [clean] if isinstance(clean, str) else clean, corrupt
        corrupt = [corrupt] if isinstance(corrupt, str) else corrupt
    if not isinstance(clean, dict):
        clean, corrupt = list(clean), list(corrupt)
        if len(clean) != len(corrupt) or not clean:
            raise InterpError("clean and corrupt need the same, non-zero number of prompts")
        enc = model.tokenize(clean + corrupt)
        n = len(clean)
        clean = {k: v[:n] for k, v in enc.items()}
        corrupt = {k: v[n:] for k, v in enc.items()}
    if clean["input_ids"].shape != corrupt["input_ids"].shape or not torch.equal(
        clean["attention_mask"], corrupt["attention_mask"]
    ):
        raise InterpError(
            "clean and corrupt prompts must tokenize to the same length, pairwise, so that "
            f"positions line up (got {tuple(clean['input_ids'].shape)} and "
            f"{tuple(corrupt['input_ids'].shape)} or differing padding)"
        )
    return clean, corrupt


def _positions(positions, seq_len: int) -> list[int]:
    if positions is None or positions == "all":
        return list(range(seq_len))
    items = [positions] if isinstance(positions, int) else list(positions)
    out = []
    for p in items:
        if not -seq_len <= p < seq_len:
            raise InterpError(f"position {p} is out of range for {seq_len} tokens")
        out.append(p % seq_len)
    return sorted(set(out))


def _reduce(value: Tensor, n: int) -> tuple[float, Tensor | None]:
    value = torch.as_tensor(value).detach().float().cpu()
    if value.ndim == 0:
        return float(value), None
    if value.shape != (n,):
        raise InterpError(
            f"the metric must return a scalar or a [{n}] tensor, got {tuple(value.shape)}"
        )
    return float(value.mean()), value


def _last_logits(model: Model, batch: dict) -> Tensor:
    out = model.forward(batch["input_ids"], batch["attention_mask"], logits_to_keep=1)
    return out.logits[:, -1]


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
    start. Sites join the batch at the block where their patch takes effect.
    """
    n_layers = model.n_layers
    dev = model.device
    row_pos = torch.tensor(pos, device=dev).repeat_interleave(n) - s0  # [len(pos) * n]
    row_prompt = torch.arange(n, device=dev).repeat(len(pos))
    rows_all = torch.arange(len(row_pos), device=dev)
    offsets: dict[Site, int] = {}

    def patched(site: Site, base: Tensor) -> Tensor:
        src = clean_acts[site][row_prompt, row_pos + s0].to(base.dtype)
        out = base.clone()
        out[rows_all, row_pos] = src
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
            joined = [] if active is None else [active]
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

    def leaf(module, args, output):  # gradients start here, whatever requires_grad says
        return output.detach().requires_grad_(True)

    with torch.no_grad(), hooks(model, {s: keep_clean for s in sites}):
        clean_logits = _last_logits(model, clean)
    embed = model.base_hf.get_submodule(model.family.embed)
    handle = embed.register_forward_hook(leaf)
    try:
        with torch.enable_grad(), hooks(model, {s: keep for s in sites}):
            logits = _last_logits(model, corrupt)
            corrupt_metric = metric(logits)
            total = torch.as_tensor(corrupt_metric).sum()
            # gradients with respect to the activations only: no weight gradient is computed
            grads = torch.autograd.grad(total, [acts[s] for s in sites], allow_unused=True)
    finally:
        handle.remove()
    pos = torch.tensor(positions, device=model.device)
    corrupt_metric = torch.as_tensor(corrupt_metric).detach()
    values = {}
    for site, g in zip(sites, grads, strict=True):
        delta = (clean_acts[site] - acts[site].detach())[:, pos]  # [n, P, d]
        g = torch.zeros_like(delta) if g is None else g[:, pos]
        lin = (g * delta).sum(-1)  # [n, P]
        for i, p in enumerate(positions):
            step = lin[:, i] if corrupt_metric.ndim == 1 else lin[:, i].sum()
            values[site, p] = corrupt_metric + step
    return clean_logits, logits.detach(), values


# ---- entry point ---------------------------------------------------------------------
def patch(
    model: Model,
    clean: Sequence[str] | dict,
    corrupt: Sequence[str] | dict,
    *,
    metric: Metric,
    sites: str | Sequence[str] = "resid_pre",
    layers: int | Sequence[int] | None = None,
    positions: int | Sequence[int] | str | None = None,
    mode: str = "exact",
    chunk: int | None = None,
    reuse_prefix: bool = True,
) -> PatchResult:
    """Patch each clean activation into the corrupted run; one metric value per site x position.

    ``clean`` / ``corrupt``: prompts (tokenized together, left padded) or batches from
    :meth:`Model.tokenize`; pairs must have the same token length. ``sites``: kinds
    (``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post``) with ``layers`` (default
    all) or full names. ``positions``: indices into the padded sequence (default all).
    ``chunk``: positions per batched exact run; a chunk shares one suffix start, so small
    chunks compute less and large ones make fewer, bigger calls. Default: about 8 rows
    (prompts x positions) per site on CPU, 64 on GPU.
    """
    if hasattr(model, "patch_by_traces"):  # a backend without local blocks (nnsight, NDIF)
        kw = dict(sites=sites, layers=layers, positions=positions, chunk=chunk)
        return model.patch_by_traces(clean, corrupt, metric=metric, mode=mode, **kw)
    if mode not in ("exact", "attribution"):
        raise InterpError(f"mode must be 'exact' or 'attribution', got {mode!r}")
    clean_b, corrupt_b = _batches(model, clean, corrupt)
    n, seq_len = clean_b["input_ids"].shape
    site_list = resolve_sites(sites, model.n_layers, layers)
    pos_list = _positions(positions, seq_len)
    if chunk is None:
        chunk = max(1, (64 if model.device.type == "cuda" else 8) // n)
    if mode == "exact":
        clean_logits, corrupt_logits, raw = _exact(
            model, clean_b, corrupt_b, site_list, pos_list, metric, max(1, chunk), reuse_prefix
        )
    else:
        clean_logits, corrupt_logits, raw = _attribution(
            model, clean_b, corrupt_b, site_list, pos_list, metric
        )
    clean_value, _ = _reduce(metric(clean_logits), n)
    corrupt_value, _ = _reduce(metric(corrupt_logits), n)
    table = torch.zeros(len(site_list), len(pos_list))
    per = torch.zeros(len(site_list), len(pos_list), n)
    has_per = True
    for i, site in enumerate(site_list):
        for j, p in enumerate(pos_list):
            table[i, j], vec = _reduce(raw[site, p], n)
            if vec is None:
                has_per = False
            else:
                per[i, j] = vec
    ids = clean_b["input_ids"][0].tolist()
    tokens = [f"{p}:{model.tokenizer.convert_ids_to_tokens(ids[p])}" for p in pos_list]
    return PatchResult(
        values=table,
        sites=[s.name for s in site_list],
        positions=pos_list,
        tokens=tokens,
        clean_value=clean_value,
        corrupt_value=corrupt_value,
        mode=mode,
        per_prompt=per if has_per else None,
        config=dict(model=model.name, variant=model.variant, n_prompts=n, mode=mode),
    )
