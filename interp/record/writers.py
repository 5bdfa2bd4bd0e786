"""The sinks a streaming capture writes into: one process, or several parts of one store.

:class:`ShardWriter` is the one-process sink: it resumes the store of one request
(checked against the manifest, finished shards verified) and appends a shard a batch,
rewriting ``manifest.json`` atomically after each.

:class:`PartWriter` is the sink of one process of a data-parallel capture, part ``rank``
of ``world``: it writes the batches ``k`` with ``k % world == rank`` as the same
``shard-{k:05d}.safetensors`` files and lists them in its own
``parts/rank-{rank}-of-{world}.json``, rewritten atomically after each shard, so a
killed part resumes where it stopped. A part that finishes and finds every batch written
(by any part, or by an earlier one-process capture of the same request) writes
``manifest.json``: the manifest a one-process capture writes, shards in batch order, so
a reader cannot tell how the store was made. Until then the store has no manifest, and
reading it says that a capture is still in parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file
from torch import Tensor

from interp.errors import InterpError, StoreCorruptedError, StoreMismatchError
from interp.fingerprint import sha256_file
from interp.record.store import FORMAT, INDEX, ActivationStore, tensor_sha256
from interp.record.store_key import mismatch

__all__ = ["ShardWriter", "PartWriter", "PARTS_DIR"]

PARTS_DIR = "parts"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file of this process, then rename."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_shard(path: Path, k: int, acts: Tensor, meta: pd.DataFrame) -> dict:
    """Write batch ``k``'s shard (``acts`` ``[rows, n_sites, d_model]``, its row table);
    return its manifest entry (file, rows, SHA-256, and the checksums of its parts)."""
    name = f"shard-{k:05d}.safetensors"
    tmp = path / f"{name}.{os.getpid()}.tmp"
    tensors = {
        "acts": acts.contiguous(),
        "prompt": torch.tensor(meta["prompt"].to_numpy()),
        "position": torch.tensor(meta["position"].to_numpy()),
        "token_id": torch.tensor(meta["token_id"].to_numpy()),
    }
    save_file(tensors, str(tmp))
    os.replace(tmp, path / name)
    parts = {
        "index": tensor_sha256(*(tensors[key] for key in INDEX)),
        "sites": [tensor_sha256(acts[:, j]) for j in range(acts.shape[1])],
    }
    return {"file": name, "rows": len(meta), "sha256": sha256_file(path / name), "parts": parts}


def _new_manifest(request: dict, n_batches: int, prompt_meta: pd.DataFrame) -> dict:
    return {
        "format": FORMAT,
        "request": request,
        "n_batches": n_batches,
        "shards": [],
        "complete": False,
        "prompt_meta": json.loads(prompt_meta.to_json(orient="split", index=False)),
    }


def _check(store: ActivationStore, request: dict) -> dict:
    """The existing manifest, if it holds this request in this format (else an error)."""
    manifest = store.manifest
    problem = mismatch(store.path, manifest["request"], request)
    if manifest.get("format") != FORMAT:
        problem = f"{store.path} holds a store of another format ({manifest.get('format')!r})"
    if problem:
        raise StoreMismatchError(problem)
    return manifest


class ShardWriter:
    """The one-process sink: the store of one ``request``, resumed (module docstring).

    :meth:`write` adds the next shard (``acts`` ``[rows, n_sites, d_model]`` and its row
    table) and rewrites the manifest atomically after it.
    """

    def __init__(
        self, store: ActivationStore, request: dict, n_batches: int, prompt_meta: pd.DataFrame
    ):
        if store.exists():
            manifest = _check(store, request)
            store.verify()
        else:
            store.path.mkdir(parents=True, exist_ok=True)
            manifest = _new_manifest(request, n_batches, prompt_meta)
            atomic_write_text(store.manifest_path, json.dumps(manifest))
        self.store, self.manifest, self.n_batches = store, manifest, n_batches

    @property
    def done(self) -> int:
        """Shards already in the store (the next batch to write)."""
        return len(self.manifest["shards"])

    @property
    def complete(self) -> bool:
        return self.manifest["complete"]

    def write(self, acts: Tensor, meta: pd.DataFrame) -> None:
        """Write the next shard: ``acts`` ``[rows, n_sites, d_model]``, ``meta`` ``[rows]``."""
        k = self.done
        self.manifest["shards"].append(save_shard(self.store.path, k, acts, meta))
        self.manifest["complete"] = k + 1 == self.n_batches
        atomic_write_text(self.store.manifest_path, json.dumps(self.manifest))


def _finished(store: ActivationStore, request: dict, verify: bool = True) -> dict[int, dict]:
    """Batch index -> manifest entry of every shard written so far, by any writer
    (with ``verify``, each file checked against its checksum; else only that it exists)."""
    done: dict[int, dict] = {}
    if store.exists():
        done.update(enumerate(_check(store, request)["shards"]))
    for f in sorted((store.path / PARTS_DIR).glob("rank-*-of-*.json")):
        part = json.loads(f.read_text())
        problem = mismatch(store.path, part["request"], request)
        if problem:
            raise StoreMismatchError(f"{f.name}: {problem}")
        for entry in part["shards"]:
            done[entry["batch"]] = {key: v for key, v in entry.items() if key != "batch"}
    for k, entry in done.items():
        f = store.path / entry["file"]
        if not f.is_file() or (verify and sha256_file(f) != entry["sha256"]):
            raise StoreCorruptedError(
                f"shard {f} (batch {k}) is missing or does not match its checksum"
            )
    return done


class PartWriter:
    """The sink of part ``rank`` of ``world`` of one request (module docstring).

    :attr:`todo`: the batch indices this part still has to write; :meth:`write` adds
    one; :meth:`merge` writes ``manifest.json`` once every batch is in.
    """

    def __init__(
        self,
        store: ActivationStore,
        request: dict,
        n_batches: int,
        prompt_meta: pd.DataFrame,
        rank: int,
        world: int,
    ):
        ok = isinstance(world, int) and isinstance(rank, int) and 0 <= rank < world
        if not ok:
            raise InterpError(
                f"part must be (rank, world) with 0 <= rank < world, got ({rank}, {world})"
            )
        (store.path / PARTS_DIR).mkdir(parents=True, exist_ok=True)
        self.store, self.request, self.n_batches = store, request, n_batches
        self.prompt_meta, self.rank, self.world = prompt_meta, rank, world
        self.file = store.path / PARTS_DIR / f"rank-{rank}-of-{world}.json"
        self.shards: list[dict] = (
            json.loads(self.file.read_text())["shards"] if self.file.is_file() else []
        )
        done = _finished(store, request)
        self.todo = [k for k in range(rank, n_batches, world) if k not in done]

    def write(self, k: int, acts: Tensor, meta: pd.DataFrame) -> None:
        """Write batch ``k``: ``acts`` ``[rows, n_sites, d_model]``, ``meta`` ``[rows]``."""
        self.shards.append({"batch": k, **save_shard(self.store.path, k, acts, meta)})
        part = {"format": FORMAT, "request": self.request, "n_batches": self.n_batches,
                "rank": self.rank, "world": self.world, "shards": self.shards}  # fmt: skip
        atomic_write_text(self.file, json.dumps(part))

    def merge(self) -> bool:
        """Write the one-process manifest if every batch is in; ``True``: the store is complete."""
        if self.store.complete:
            return True
        # the shards were checked when this part opened or hashed as they were written
        done = _finished(self.store, self.request, verify=False)
        if any(k not in done for k in range(self.n_batches)):
            return False
        manifest = _new_manifest(self.request, self.n_batches, self.prompt_meta)
        manifest["shards"] = [done[k] for k in range(self.n_batches)]
        manifest["complete"] = True
        atomic_write_text(self.store.manifest_path, json.dumps(manifest))
        return True
