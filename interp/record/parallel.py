"""Data-parallel capture: one process per device, all writing one activation store.

``capture_parallel("meta-llama/Llama-3.1-8B", prompts, devices=["cuda:0", "cuda:1"],
to="runs/acts", layers=[8, 16])`` starts one process per device (``spawn``), each loads
the model on its device and captures every ``W``-th batch into the store
(:mod:`interp.record.writers`); the result is the store a one-process
:func:`~interp.record.capture.capture` of the same request writes. A part that fails
is an :class:`~interp.errors.InterpError` naming its rank and device; its finished shards
stay, and rerunning the same call resumes every part. Launchers that start processes
themselves (``torchrun``, a Slurm array) call ``capture(..., to=path, part=(rank, world))``
in each process instead: the last part to finish writes the manifest.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.multiprocessing as mp

from interp.errors import InterpError
from interp.models import load_model
from interp.prompts import Prompt, PromptSet, as_prompt_set
from interp.record.capture import capture
from interp.record.store import ActivationStore

__all__ = ["capture_parallel"]


def _part_main(queue, rank: int, world: int, device: str, load: dict, threads, prompts, kwargs):
    """One part: load the model on ``device`` and capture batches ``k % world == rank``."""
    try:
        if threads:
            torch.set_num_threads(threads)
        model = load_model(device=device, **load)
        capture(model, prompts, part=(rank, world), progress=kwargs.pop("progress") and rank == 0,
                **kwargs)  # fmt: skip
        queue.put((rank, None))
    except BaseException:  # the parent reports it; a part never dies silently
        queue.put((rank, traceback.format_exc(limit=8)))


def capture_parallel(
    model: str | Path,
    prompts: PromptSet | Sequence[Prompt],
    *,
    devices: Sequence[str],
    to: str | Path,
    adapter: str | Path | None = None,
    model_dtype: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    **capture_kwargs,
) -> ActivationStore:
    """Capture ``prompts`` with one process per entry of ``devices`` into the store ``to``.

    ``model`` / ``adapter`` / ``model_dtype``: what each process passes to
    :func:`~interp.models.load_model`; ``threads``: torch threads per process (CPU parts);
    ``capture_kwargs``: :func:`~interp.record.capture.capture`'s ``sites``, ``layers``,
    ``positions``, ``batch_size``, ``dtype``. Returns the complete store.
    """
    devices = list(devices)
    if not devices:
        raise InterpError("capture_parallel needs at least one device")
    unknown = set(capture_kwargs) - {"sites", "layers", "positions", "batch_size", "dtype"}
    if unknown:
        raise InterpError(f"capture_parallel got unknown arguments {sorted(unknown)}")
    prompts = as_prompt_set(prompts)
    load = {"name_or_path": str(model), "adapter": adapter, "dtype": model_dtype}
    kwargs = {**capture_kwargs, "to": str(to), "progress": progress}
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    world = len(devices)
    procs = [
        ctx.Process(
            target=_part_main, args=(queue, r, world, d, load, threads, prompts, dict(kwargs))
        )
        for r, d in enumerate(devices)
    ]
    failures = _run(procs, queue, devices)
    if failures:
        raise InterpError(
            "capture_parallel: " + "; ".join(failures) + ". Finished shards are kept: rerun the "
            "same call to resume."
        )
    store = ActivationStore(to)
    if not store.complete:  # every part reported success, so every batch is in
        raise InterpError(f"{to}: every part finished but the store is not complete")
    return store


def _run(procs, queue, devices: list[str]) -> list[str]:
    """Start the parts, wait for each to report (or die), and return their failures."""
    pending = set(range(len(procs)))
    failures = []
    try:
        for p in procs:
            p.start()
        while pending:
            while not queue.empty():
                rank, error = queue.get()
                pending.discard(rank)
                if error:
                    last = error.strip().splitlines()[-1]
                    failures.append(f"part {rank} on {devices[rank]} failed: {last}")
            for r in list(pending):
                if procs[r].exitcode is not None and queue.empty():
                    pending.discard(r)
                    failures.append(
                        f"part {r} on {devices[r]} died (exit code {procs[r].exitcode})"
                    )
            time.sleep(0.05)
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    return failures
