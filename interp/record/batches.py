"""Tokenized capture batches and the one recording forward every capture runs.

:func:`iter_batches` tokenizes a :class:`~interp.prompts.PromptSet` in left-padded batches
and resolves which token rows each batch reads (positions in each prompt's own tokens);
:func:`run_batch` runs one batch with a hook at every requested site and stops right after
the deepest; :func:`batch_meta` is the metadata table of a batch's rows. Both capture into
memory and capture into an :class:`~interp.record.store.ActivationStore` use them, and the
store's request key hashes the positions :func:`iter_batches` resolves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from interp.execution import chunks, forward
from interp.hooks import StopForward, hooks
from interp.models import Model
from interp.positions import Positions, Span, normalize, resolve, span_tokens
from interp.prompts import PromptSet
from interp.sites import Site

__all__ = ["Batch", "iter_batches", "run_batch", "batch_meta"]


@dataclass
class Batch:
    """One tokenized batch and the token rows to read from it."""

    start: int  # index of the batch's first prompt in the prompt set
    inputs: dict[str, Tensor]  # input_ids, attention_mask, position_ids  [b, s]
    batch_idx: Tensor  # [rows] row -> batch element
    token_idx: Tensor  # [rows] row -> padded token index
    position: Tensor  # [rows] row -> token index in the unpadded prompt


def iter_batches(
    model: Model, prompts: PromptSet, positions: Positions, batch_size: int, start_batch: int = 0
) -> Iterator[Batch]:
    """Tokenize ``prompts`` in left-padded batches and resolve which rows each one reads."""
    spec = normalize(positions)
    texts = prompts.render(model)
    spans = prompts.char_spans(spec.tag, texts) if isinstance(spec, Span) else None
    first = start_batch * batch_size
    for k, chunk in enumerate(chunks(model, texts[first:], batch_size, offsets=spans is not None)):
        start = first + k * batch_size
        tag_tokens = None
        if spans is not None:
            tag_tokens = [
                span_tokens(chunk.own_offsets(i), spans[start + i]) for i in range(len(chunk.index))
            ]
        per_prompt = resolve(spec, chunk.lengths, spans=tag_tokens, first=start)
        b_idx, t_idx, pos = [], [], []
        for i, toks in enumerate(per_prompt):
            b_idx += [i] * len(toks)
            t_idx += [chunk.column(i, t) for t in toks]
            pos += toks
        yield Batch(
            start, chunk.inputs, torch.tensor(b_idx), torch.tensor(t_idx), torch.tensor(pos)
        )


@torch.inference_mode()
def run_batch(model: Model, batch: Batch, sites: list[Site], dtype: torch.dtype | None) -> Tensor:
    """``[rows, n_sites, d_model]`` for one batch; stops after the deepest site."""
    got: dict[Site, Tensor] = {}
    deepest = max(sites)
    index: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def record(act: Tensor, site: Site) -> None:
        if act.device not in index:  # index tensors live on each activation's device
            index[act.device] = (batch.batch_idx.to(act.device), batch.token_idx.to(act.device))
        b_idx, t_idx = index[act.device]
        got[site] = act[b_idx, t_idx].to(device="cpu", dtype=dtype or act.dtype)
        if site == deepest:
            raise StopForward

    with hooks(model, {s: record for s in sites}):
        try:
            forward(model, batch.inputs)
        except StopForward:
            pass
    return torch.stack([got[s] for s in sites], dim=1)


def batch_meta(prompts: PromptSet, batch: Batch) -> pd.DataFrame:
    prompt_idx = (batch.batch_idx + batch.start).tolist()
    meta = prompts.meta.iloc[prompt_idx].reset_index(drop=True).copy()
    meta.insert(0, "prompt", prompt_idx)
    meta.insert(1, "position", batch.position.tolist())
    meta.insert(2, "token_id", batch.inputs["input_ids"][batch.batch_idx, batch.token_idx].tolist())
    return meta
