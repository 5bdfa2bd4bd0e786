"""Record activations at canonical sites for chosen layers and token positions.

``interp.capture(model, prompts, sites="resid_post", layers=[4, 6], positions="last")``
returns :class:`~interp.activations.Activations`. Positions are ``"last"`` (the last
prompt token), ``"all"`` (every real token, one row each), explicit token indices
(negative count from the end), a tag name of the :class:`~interp.prompts.PromptSet`
(the last token of that span) or a :class:`Span` for the first / every token of a span.

The forward pass stops right after the deepest requested site, so capturing early
layers costs a fraction of a full forward. With ``to=path`` the capture streams to an
on-disk :class:`~interp.store.ActivationStore`, one shard a batch, and resumes after an
interruption.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.activations import Activations
from interp.errors import InterpError
from interp.hooks import StopForward, hooks
from interp.models import Model
from interp.prompts import Prompt, PromptSet, as_prompt_set
from interp.sites import Site, resolve_sites

__all__ = ["Span", "Positions", "capture", "iter_batches"]


@dataclass(frozen=True)
class Span:
    """The tokens of tag ``tag``: its ``"last"`` token, its ``"first"`` or ``"all"`` of them."""

    tag: str
    which: Literal["last", "first", "all"] = "last"


Positions = Literal["last", "all"] | int | Sequence[int] | str | Span


@dataclass
class _Batch:
    """One tokenized batch and the token rows to read from it."""

    start: int  # index of the batch's first prompt in the prompt set
    inputs: dict[str, Tensor]  # input_ids, attention_mask, position_ids  [b, s]
    batch_idx: Tensor  # [rows] row -> batch element
    token_idx: Tensor  # [rows] row -> padded token index
    position: Tensor  # [rows] row -> token index in the unpadded prompt


def _span_tokens(offsets: Tensor, pad: int, span: tuple[int, int]) -> list[int]:
    """Unpadded indices of the tokens overlapping the character ``span``."""
    lo, hi = span
    out = []
    for j, (s, e) in enumerate(offsets[pad:].tolist()):
        if e > s and s < hi and e > lo:
            out.append(j)
    return out


def _positions_for(
    positions: Positions,
    lengths: list[int],
    offsets: Tensor | None,
    char_spans: list[tuple[int, int]] | None,
    first: int,
) -> list[list[int]]:
    """For each prompt of a batch, the unpadded token indices to read."""
    seq = max(lengths)
    out: list[list[int]] = []
    for i, n in enumerate(lengths):
        if positions == "last":
            out.append([n - 1])
        elif positions == "all":
            out.append(list(range(n)))
        elif isinstance(positions, Span):
            toks = _span_tokens(offsets[i], seq - n, char_spans[i])
            if not toks:
                raise InterpError(f"tag {positions.tag!r} covers no token in prompt {first + i}")
            out.append(
                toks if positions.which == "all" else [toks[-1 if positions.which == "last" else 0]]
            )
        else:
            idx = [positions] if isinstance(positions, int) else list(positions)
            for p in idx:
                if not -n <= p < n:
                    raise InterpError(
                        f"position {p} is out of range for prompt {first + i} ({n} tokens)"
                    )
            out.append([p % n for p in idx])
    return out


def _normalize_positions(positions: Positions) -> Positions:
    if isinstance(positions, str) and positions not in ("last", "all"):
        return Span(positions)
    return positions


def iter_batches(
    model: Model, prompts: PromptSet, positions: Positions, batch_size: int, start_batch: int = 0
) -> Iterator[_Batch]:
    """Tokenize ``prompts`` in left-padded batches and resolve which rows each one reads."""
    positions = _normalize_positions(positions)
    texts = prompts.render(model)
    spans = prompts.char_spans(positions.tag, texts) if isinstance(positions, Span) else None
    for start in range(start_batch * batch_size, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = model.tokenize(chunk, offsets=spans is not None)
        mask = enc["attention_mask"]
        lengths = mask.sum(1).tolist()
        seq = mask.shape[1]
        per_prompt = _positions_for(
            positions,
            lengths,
            enc.get("offset_mapping"),
            spans[start : start + batch_size] if spans else None,
            start,
        )
        b_idx, t_idx, pos = [], [], []
        for i, toks in enumerate(per_prompt):
            pad = seq - lengths[i]
            b_idx += [i] * len(toks)
            t_idx += [pad + t for t in toks]
            pos += toks
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "position_ids")}
        yield _Batch(start, inputs, torch.tensor(b_idx), torch.tensor(t_idx), torch.tensor(pos))


@torch.inference_mode()
def run_batch(model: Model, batch: _Batch, sites: list[Site], dtype: torch.dtype) -> Tensor:
    """``[rows, n_sites, d_model]`` for one batch; stops after the deepest site."""
    dev = model.device
    b_idx, t_idx = batch.batch_idx.to(dev), batch.token_idx.to(dev)
    got: dict[Site, Tensor] = {}
    deepest = max(sites)

    def record(act: Tensor, site: Site) -> None:
        got[site] = act[b_idx, t_idx].to(device="cpu", dtype=dtype)
        if site == deepest:
            raise StopForward

    with hooks(model, {s: record for s in sites}):
        try:
            model.forward(**batch.inputs)
        except StopForward:
            pass
    return torch.stack([got[s] for s in sites], dim=1)


def batch_meta(prompts: PromptSet, batch: _Batch) -> pd.DataFrame:
    prompt_idx = (batch.batch_idx + batch.start).tolist()
    meta = prompts.meta.iloc[prompt_idx].reset_index(drop=True).copy()
    meta.insert(0, "prompt", prompt_idx)
    meta.insert(1, "position", batch.position.tolist())
    meta.insert(2, "token_id", batch.inputs["input_ids"][batch.batch_idx, batch.token_idx].tolist())
    return meta


def capture(
    model: Model,
    prompts: PromptSet | Sequence[Prompt],
    *,
    sites: str | Site | Sequence[str | Site] = "resid_post",
    layers: int | Sequence[int] | None = None,
    positions: Positions = "last",
    batch_size: int = 16,
    dtype: torch.dtype = torch.float32,
    to: str | Path | None = None,
    progress: bool = True,
) -> Activations:
    """Activations of ``model`` on ``prompts`` at ``sites`` x ``layers`` and ``positions``.

    ``prompts``: a list of strings, a list of chat message lists (rendered with the
    model's chat template) or a :class:`~interp.prompts.PromptSet`. ``sites``: full names
    (``"blocks.-1.hook_resid_post"``) or short kinds with ``layers`` (default: every
    layer). With ``to`` the result streams to an :class:`~interp.store.ActivationStore`
    in that directory (resumable) and the store is returned instead.
    """
    prompts = as_prompt_set(prompts)
    site_list = resolve_sites(sites, model.n_layers, layers)
    if batch_size < 1:
        raise InterpError(f"batch_size must be at least 1, got {batch_size}")
    if to is not None:
        from interp.store import capture_to_store

        return capture_to_store(
            model, prompts, site_list, positions, batch_size, dtype, Path(to), progress
        )
    n_batches = -(-len(prompts) // batch_size)
    tensors, metas = [], []
    for batch in tqdm(
        iter_batches(model, prompts, positions, batch_size),
        total=n_batches,
        desc="capture",
        disable=not progress or n_batches < 2,
    ):
        tensors.append(run_batch(model, batch, site_list, dtype))
        metas.append(batch_meta(prompts, batch))
    return Activations(
        torch.cat(tensors),
        [s.name for s in site_list],
        pd.concat(metas, ignore_index=True),
        model.name,
        model.adapter_hash if model.variant == "finetuned" else None,
        {"variant": model.variant, "positions": repr(positions)},
    )
