"""Record activations at canonical sites for chosen layers and token positions.

``interp.capture(model, prompts, sites="resid_post", layers=[4, 6], positions="last")``
returns :class:`~interp.record.activations.Activations`. Positions are ``"last"`` (the last
prompt token), ``"all"`` (every real token, one row each), explicit token indices
(negative count from the end), a tag name of the :class:`~interp.prompts.PromptSet`
(the last token of that span) or a :class:`Span` for the first / every token of a span.

The forward pass stops right after the deepest requested site, so capturing early
layers costs a fraction of a full forward. With ``to=path`` the capture streams to an
on-disk :class:`~interp.record.store.ActivationStore`, one shard a batch, and resumes after an
interruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp.errors import InterpError
from interp.models import Model
from interp.positions import Positions, describe
from interp.prompts import Prompt, PromptSet, as_prompt_set
from interp.record.activations import Activations
from interp.record.batches import batch_meta, iter_batches, run_batch
from interp.record.store import ActivationStore
from interp.record.store_key import request_for
from interp.record.writers import PartWriter, ShardWriter
from interp.sites import Site, resolve_sites

__all__ = ["capture", "capture_to_store"]


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
    part: tuple[int, int] | None = None,
    progress: bool = True,
) -> Activations:
    """Activations of ``model`` on ``prompts`` at ``sites`` x ``layers`` and ``positions``.

    ``prompts``: a list of strings, a list of chat message lists (rendered with the
    model's chat template) or a :class:`~interp.prompts.PromptSet`. ``sites``: full names
    (``"blocks.-1.hook_resid_post"``) or short kinds with ``layers`` (default: every
    layer). ``dtype``: what the activations are stored as (``None``: the model's own dtype,
    e.g. bf16, which halves the memory of a float32 copy). With ``to`` the result streams to an :class:`~interp.record.store.ActivationStore`
    in that directory (resumable) and the store is returned instead. ``part=(rank, world)``
    (with ``to``) makes this process one of ``world`` that write the store together, each
    every ``world``-th batch (:mod:`interp.record.writers`; one process per device:
    :func:`interp.record.parallel.capture_parallel`).
    """
    prompts = as_prompt_set(prompts)
    site_list = resolve_sites(sites, model.n_layers, layers)
    if batch_size < 1:
        raise InterpError(f"batch_size must be at least 1, got {batch_size}")
    if part is not None and to is None:
        raise InterpError("part= writes one part of a store: pass to= as well")
    if to is not None:
        return capture_to_store(
            model, prompts, site_list, positions, batch_size, dtype, Path(to), progress, part
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


def capture_to_store(
    model: Model,
    prompts: PromptSet,
    sites: list[Site],
    positions: Positions,
    batch_size: int,
    dtype: torch.dtype | None,
    path: Path,
    progress: bool,
    part: tuple[int, int] | None = None,
) -> ActivationStore:
    """The streaming form of :func:`capture`: one shard a batch into the store at ``path``
    (resumed where an earlier run of the same request stopped; see :mod:`interp.record.store`)."""
    store = ActivationStore(path)
    texts = prompts.render(model)
    request = request_for(model, prompts, sites, positions, batch_size, dtype, texts)
    n_batches = -(-len(texts) // batch_size)
    if part is not None:
        _capture_part(
            model, prompts, sites, positions, batch_size, dtype, store, request, part, progress
        )
        return store
    sink = ShardWriter(store, request, n_batches, prompts.meta)
    if sink.complete:
        return store
    done = sink.done
    bar = tqdm(total=n_batches, initial=done, desc=f"capture -> {path.name}", disable=not progress)
    for batch in iter_batches(model, prompts, positions, batch_size, start_batch=done):
        sink.write(run_batch(model, batch, sites, dtype), batch_meta(prompts, batch))
        bar.update(1)
    bar.close()
    return store


def _capture_part(
    model, prompts, sites, positions, batch_size, dtype, store, request, part, progress
):
    """One part of a data-parallel capture: this part's missing batches, then the merge."""
    n_batches = -(-len(prompts) // batch_size)
    sink = PartWriter(store, request, n_batches, prompts.meta, *part)
    todo = set(sink.todo)
    if todo:
        first = min(todo)
        desc = f"capture part {part[0]}/{part[1]} -> {store.path.name}"
        bar = tqdm(total=len(todo), desc=desc, disable=not progress)
        for k, batch in enumerate(
            iter_batches(model, prompts, positions, batch_size, first), first
        ):
            if k in todo:
                sink.write(k, run_batch(model, batch, sites, dtype), batch_meta(prompts, batch))
                bar.update(1)
        bar.close()
    sink.merge()
