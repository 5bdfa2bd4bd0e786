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

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.activations import Activations
from interp.errors import InterpError
from interp.execution import chunks, forward
from interp.hooks import StopForward, hooks
from interp.models import Model
from interp.positions import Positions, Span, describe, normalize, resolve, span_tokens
from interp.prompts import Prompt, PromptSet, as_prompt_set
from interp.sites import Site, resolve_sites

__all__ = ["Span", "Positions", "capture", "iter_batches"]


@dataclass
class _Batch:
    """One tokenized batch and the token rows to read from it."""

    start: int  # index of the batch's first prompt in the prompt set
    inputs: dict[str, Tensor]  # input_ids, attention_mask, position_ids  [b, s]
    batch_idx: Tensor  # [rows] row -> batch element
    token_idx: Tensor  # [rows] row -> padded token index
    position: Tensor  # [rows] row -> token index in the unpadded prompt


def iter_batches(
    model: Model, prompts: PromptSet, positions: Positions, batch_size: int, start_batch: int = 0
) -> Iterator[_Batch]:
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
        yield _Batch(
            start, chunk.inputs, torch.tensor(b_idx), torch.tensor(t_idx), torch.tensor(pos)
        )


@torch.inference_mode()
def run_batch(model: Model, batch: _Batch, sites: list[Site], dtype: torch.dtype | None) -> Tensor:
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
    dtype: torch.dtype | None = torch.float32,
    to: str | Path | None = None,
    progress: bool = True,
) -> Activations:
    """Activations of ``model`` on ``prompts`` at ``sites`` x ``layers`` and ``positions``.

    ``prompts``: a list of strings, a list of chat message lists (rendered with the
    model's chat template) or a :class:`~interp.prompts.PromptSet`. ``sites``: full names
    (``"blocks.-1.hook_resid_post"``) or short kinds with ``layers`` (default: every
    layer). ``dtype``: what the activations are stored as (``None``: the model's own dtype,
    e.g. bf16, which halves the memory of a float32 copy). With ``to`` the result streams to an :class:`~interp.store.ActivationStore`
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
        {"variant": model.variant, "positions": describe(positions)},
    )
