"""The one finetune cache: every finetune of an experiment, the world card or a notebook.

A finetune's key is the content of what decides it: the base model (:func:`model_key`:
its config and weight files), the finetune data file, and the finetune config (the
setting's recipe :data:`~interp.organism.settings.DEFAULT_FINETUNE`, the overrides of an
experiment, and the seed; a device type or dtype other than the CPU in float32 adds
itself). A seed means one thing everywhere: a setting's finetune data are fixed (drawn
once from the world), and the seed is the finetune's training seed.

:func:`finetuned` opens a finetune on a loaded base model (an adapter attached for a
while, so one load of the base serves every finetune). A finished finetune lives in ``CACHE/<setting>-<variant>-s<seed>-<key>`` (the default
cache: ``$INTERP_CACHE/finetunes``); it is trained into a temporary sibling and renamed,
so an interrupted finetune is never taken as done. :func:`finetune_setting` is the short
way to one organism finetune::

    adapter = finetune_setting(organism, "era", "main", seed=0)   # trained once, then cached
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing as mp
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from interp.adapters import attached
from interp.devices import dtype_name
from interp.experiments.data import write_finetune_sets
from interp.finetune import FinetuneConfig, finetune
from interp.fingerprint import sha256_file, sha256_json
from interp.models import Model, load_model
from interp.organism.pretrain import cache_root, world_of
from interp.organism.settings import DEFAULT_FINETUNE

__all__ = [
    "Placement",
    "cached_finetune",
    "finetune_config",
    "finetune_key",
    "finetune_setting",
    "finetune_variants",
    "finetuned",
    "model_key",
    "train_in_processes",
]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where models load and finetunes train (``None``: CUDA when there is one; bfloat16
    there, float32 on the CPU)."""

    device: str | None = None
    dtype: str | None = None

    def load_kwargs(self) -> dict:
        return {"device": self.device, "dtype": self.dtype}

    def workers(self) -> int:
        """How many finetunes to train at once by default: one process per CPU core (at
        most 8) on the CPU, one on an accelerator."""
        on_cpu = self.device == "cpu" or (self.device is None and not torch.cuda.is_available())
        return min(8, os.cpu_count() or 1) if on_cpu else 1


def model_key(name: str | Path) -> str:
    """Content key of a local model directory (names, sizes and hashes of its config and
    weights); a hub id is its own key."""
    path = Path(name)
    if (path / "config.json").is_file():
        files = sorted(path.glob("*.safetensors")) + [path / "config.json"]
        return sha256_json([(p.name, p.stat().st_size, sha256_file(p)) for p in files])
    return str(name)


def finetune_config(
    setting: str, seed: int, overrides: Mapping | None = None, place: Placement = Placement()
) -> FinetuneConfig:
    """The setting's recipe with ``overrides`` (FinetuneConfig fields), the training
    ``seed`` and the placement."""
    base = DEFAULT_FINETUNE[setting].to_dict()
    given = {k: v for k, v in dataclasses.asdict(place).items() if v is not None}
    return FinetuneConfig.from_dict({**base, **(overrides or {}), "seed": seed, **given})


def finetune_key(model: str, data: Path, config: FinetuneConfig) -> str:
    """Content key of one finetune: ``model`` (a :func:`model_key`), the data file's hash and
    the config's content; a run in another device type or dtype than the CPU in float32
    (how every earlier finetune ran) gets a key of its own."""
    parts = [model, sha256_file(data), config.content_dict()]
    device, dtype = config.placement()
    if (device.type, dtype) != ("cpu", torch.float32):
        parts.append({"device": device.type, "dtype": dtype_name(dtype)})
    return sha256_json(parts)[:16]


def _done(path: Path) -> bool:
    """A finished finetune directory (``finetune.json`` is written last)."""
    return (path / "finetune.json").is_file()


def cached_finetune(
    base: str | Path,
    data: Path,
    config: FinetuneConfig,
    cache: Path,
    label: str,
    *,
    key: str | None = None,
    model=None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> Path:
    """The finetune directory ``cache/<label>-<key>``: from the cache, or trained now (on
    the loaded ``model`` of ``base`` when given, see :func:`interp.finetune.finetune`)."""
    key = key or finetune_key(model_key(base), data, config)
    final = Path(cache) / f"{label}-{key}"
    if _done(final):
        return final
    if log is not None:
        log(f"finetune {label}")
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        finetune(base, data, tmp, config, progress=progress, model=model)
        if not _done(final):  # another process may have finished first
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def finetune_variants(
    base: str | Path,
    sets: Mapping[str, Path],
    *,
    setting: str,
    seeds: Sequence[int],
    overrides: Mapping | None = None,
    cache: Path,
    place: Placement = Placement(),
    model=None,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
) -> dict[str, list[Path]]:
    """``{variant: [finetune dir per seed]}`` for every finetune data file in ``sets``.

    ``workers`` > 1: the finetunes not yet cached train in that many processes, one
    torch thread each (:func:`train_in_processes`), else one after the other here (on
    ``model``, the loaded ``base``, when given)."""
    key = model_key(base)
    jobs = []
    for variant, data in sets.items():
        for seed in seeds:
            config = finetune_config(setting, seed, overrides, place)
            jobs.append((variant, data, config, f"{setting}-{variant}-s{seed}",
                         finetune_key(key, data, config)))  # fmt: skip
    missing = [j for j in jobs if not _done(Path(cache) / f"{j[3]}-{j[4]}")]
    if workers > 1 and len(missing) > 1:
        train_in_processes(base, [j[1:] for j in missing], cache, workers, log)
    out: dict[str, list[Path]] = {}
    for variant, data, config, label, fkey in jobs:
        path = cached_finetune(base, data, config, cache, label, key=fkey, model=model, log=log)
        out.setdefault(variant, []).append(path)
    return out


def _worker_init() -> None:
    torch.set_num_threads(1)  # small models: a process per core beats threads in one
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per finetune drowns the log


def train_in_processes(
    base: str | Path,
    jobs: Sequence[tuple[Path, FinetuneConfig, str, str]],
    cache: Path,
    workers: int,
    log: Callable[[str], None] | None = None,
) -> None:
    """Train ``(data, config, label, key)`` finetunes of ``base`` into ``cache`` in
    ``workers`` processes (``spawn``, one torch thread each), the largest data first.

    On the organism a finetune trained so is the same to the bit as one trained in this
    process with more threads (tested); on a larger model a different thread count may
    change the last bits of a sum. A failure (or an interrupt) in one is raised here, the
    finetunes not started are cancelled, and the finished ones stay cached."""
    order = sorted(jobs, key=lambda j: -Path(j[0]).stat().st_size * j[1].epochs)
    n = min(workers, len(order))
    if log is not None:
        log(f"finetune {len(order)} models in {n} processes")
    pool = cf.ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        futures = {pool.submit(cached_finetune, str(base), data, config, cache, label, key=key): label
                   for data, config, label, key in order}  # fmt: skip
        for i, done in enumerate(cf.as_completed(futures), 1):
            done.result()
            if log is not None:
                log(f"finetune {futures[done]} done ({i}/{len(order)})")
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


@contextlib.contextmanager
def finetuned(
    base_model: Model, path: str | Path, place: Placement = Placement()
) -> Iterator[Model]:
    """A finetune directory as a model, on the loaded ``base_model``: an adapter is attached
    to it for the block (``as_base()`` of the view is the base), a full finetune loads on
    its own."""
    if (Path(path) / "adapter_config.json").is_file():
        with attached(base_model, path) as model:
            yield model
    else:
        yield load_model(path, **place.load_kwargs())


def finetune_setting(
    organism: str | Path,
    setting: str = "era",
    variant: str = "main",
    seed: int = 0,
    *,
    overrides: Mapping | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    progress: bool = False,
) -> Path:
    """One finetune of the organism (its setting's fixed data; ``seed`` the training seed),
    from the same cache as the experiments' and the world card's."""
    place = Placement(device, dtype)
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "finetunes"
    base_model = load_model(organism, **place.load_kwargs()) if setting == "persona" else None
    with tempfile.TemporaryDirectory() as tmp:
        sets = write_finetune_sets(
            world_of(organism), setting, Path(tmp), base_model=base_model, variants=[variant]
        )
        data = sets[variant]
        config = finetune_config(setting, seed, overrides, place)
        return cached_finetune(
            organism, data, config, cache, f"{setting}-{variant}-s{seed}", model=base_model,
            progress=progress,
        )  # fmt: skip
