"""An on-disk activation store: safetensors shards plus a JSON manifest, resumable.

``capture(model, prompts, ..., to="runs/acts")`` writes one shard per batch
(``shard-00000.safetensors`` ...) and, after each, rewrites ``manifest.json`` atomically
with the shard's row count and SHA-256. Memory stays at one batch. If the process dies
(even ``kill -9``) a rerun of the same call checks the manifest against the request,
verifies the finished shards and continues from the first missing one, which gives
exactly the result of an uninterrupted run. A manifest that does not match the request
(another model, adapter, site list, prompt set, ...) is an error, never silently mixed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from interp.activations import Activations
from interp.errors import StoreCorruptedError, StoreMismatchError
from interp.fingerprint import sha256_file, sha256_json, sha256_texts
from interp.models import Model
from interp.prompts import PromptSet
from interp.sites import Site

__all__ = ["ActivationStore", "capture_to_store"]

FORMAT = "interp.activation_store/1"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ActivationStore:
    """A directory of activation shards; :meth:`load` gives one :class:`Activations`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @property
    def manifest(self) -> dict:
        if not self.exists():
            raise StoreMismatchError(f"{self.path} is not an activation store (no manifest.json)")
        return json.loads(self.manifest_path.read_text())

    @property
    def complete(self) -> bool:
        return self.exists() and self.manifest["complete"]

    def __repr__(self) -> str:
        if not self.exists():
            return f"ActivationStore({str(self.path)!r}, empty)"
        m = self.manifest
        return (
            f"ActivationStore({str(self.path)!r}, shards={len(m['shards'])}/{m['n_batches']}, "
            f"complete={m['complete']})"
        )

    def verify(self) -> None:
        """Check every listed shard against its checksum; raise on the first mismatch."""
        for shard in self.manifest["shards"]:
            f = self.path / shard["file"]
            if not f.is_file() or sha256_file(f) != shard["sha256"]:
                raise StoreCorruptedError(f"shard {f} is missing or does not match its checksum")

    def iter_shards(self, verify: bool = True) -> Iterator[Activations]:
        """Yield one :class:`Activations` per shard (bounded memory)."""
        m = self.manifest
        prompt_meta = pd.DataFrame(**m["prompt_meta"])
        for shard in m["shards"]:
            f = self.path / shard["file"]
            if verify and (not f.is_file() or sha256_file(f) != shard["sha256"]):
                raise StoreCorruptedError(f"shard {f} is missing or does not match its checksum")
            data = load_file(str(f))
            idx = data["prompt"].tolist()
            meta = prompt_meta.iloc[idx].reset_index(drop=True).copy()
            meta.insert(0, "prompt", idx)
            meta.insert(1, "position", data["position"].tolist())
            meta.insert(2, "token_id", data["token_id"].tolist())
            req = m["request"]
            yield Activations(
                data["acts"],
                req["sites"],
                meta,
                req["model"],
                req["adapter_hash"],
                {"variant": req["variant"], "positions": req["positions"]},
            )

    def load(self) -> Activations:
        """All shards as one :class:`Activations` (verifies checksums)."""
        return Activations.concat(list(self.iter_shards()))


def _request(model: Model, prompts: PromptSet, sites, positions, batch_size, dtype, texts) -> dict:
    return {
        "model": model.name,
        "adapter_hash": model.adapter_hash if model.variant == "finetuned" else None,
        "variant": model.variant,
        "sites": [s.name for s in sites],
        "positions": repr(positions),
        "batch_size": batch_size,
        "dtype": str(dtype).removeprefix("torch."),
        "n_prompts": len(prompts),
        "prompts_sha256": sha256_texts(texts),
        "meta_sha256": sha256_json(prompts.meta.to_json(orient="split", index=False)),
    }


def capture_to_store(
    model: Model,
    prompts: PromptSet,
    sites: list[Site],
    positions,
    batch_size: int,
    dtype: torch.dtype,
    path: Path,
    progress: bool,
) -> ActivationStore:
    """The streaming form of :func:`interp.capture` (see the module docstring)."""
    from interp.capture import batch_meta, iter_batches, run_batch

    store = ActivationStore(path)
    texts = prompts.render(model)
    request = _request(model, prompts, sites, positions, batch_size, dtype, texts)
    n_batches = -(-len(texts) // batch_size)
    if store.exists():
        manifest = store.manifest
        diff = sorted(k for k in request if manifest["request"].get(k) != request[k])
        if manifest.get("format") != FORMAT or diff:
            raise StoreMismatchError(
                f"{path} holds a different capture (differs in: {', '.join(diff) or 'format'}); "
                "use another directory or delete it"
            )
        store.verify()
        if manifest["complete"]:
            return store
    else:
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "request": request,
            "n_batches": n_batches,
            "shards": [],
            "complete": False,
            "prompt_meta": json.loads(prompts.meta.to_json(orient="split", index=False)),
        }
        _atomic_write_text(store.manifest_path, json.dumps(manifest))
    done = len(manifest["shards"])
    bar = tqdm(total=n_batches, initial=done, desc=f"capture -> {path.name}", disable=not progress)
    for k, batch in enumerate(
        iter_batches(model, prompts, positions, batch_size, start_batch=done), done
    ):
        acts = run_batch(model, batch, sites, dtype)
        meta = batch_meta(prompts, batch)
        name = f"shard-{k:05d}.safetensors"
        tmp = path / (name + ".tmp")
        save_file(
            {
                "acts": acts.contiguous(),
                "prompt": torch.tensor(meta["prompt"].to_numpy()),
                "position": torch.tensor(meta["position"].to_numpy()),
                "token_id": torch.tensor(meta["token_id"].to_numpy()),
            },
            str(tmp),
        )
        os.replace(tmp, path / name)
        manifest["shards"].append(
            {"file": name, "rows": len(meta), "sha256": sha256_file(path / name)}
        )
        manifest["complete"] = k + 1 == n_batches
        _atomic_write_text(store.manifest_path, json.dumps(manifest))
        bar.update(1)
    bar.close()
    return store
