"""An on-disk activation store: safetensors shards plus a JSON manifest, resumable.

``capture(model, prompts, ..., to="runs/acts")`` writes one shard per batch
(``shard-00000.safetensors`` ...) and, after each, rewrites ``manifest.json`` atomically
with the shard's row count and SHA-256. Memory stays at one batch. If the process dies
(even ``kill -9``) a rerun of the same call checks the manifest against the request,
verifies the finished shards and continues from the first missing one, which gives
exactly the result of an uninterrupted run. A manifest that does not match the request
is a :class:`~interp.errors.StoreMismatchError` naming what differs, never silently mixed:
the request holds the model's name and a content hash of its weights, config and
tokenizer (new weights at the same path differ), the adapter's hash, the sites, a hash of
the resolved token positions of every prompt (the same tag name over other text differs),
the prompts and their metadata.

A store larger than RAM is read in pieces: :meth:`ActivationStore.iter_shards` (one
shard at a time, chosen sites only), :meth:`ActivationStore.site` (one site across
shards) and :attr:`ActivationStore.meta` (the row table alone). Besides the file's
SHA-256 the manifest keeps one for each part a reader may load alone (the index
tensors, each site's column), so a partial read is verified without reading the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open
from torch import Tensor

from interp.errors import InterpError, StoreCorruptedError, StoreMismatchError
from interp.fingerprint import sha256_file
from interp.record.activations import Activations, site_index
from interp.sites import Site

__all__ = ["ActivationStore", "FORMAT", "INDEX", "tensor_sha256"]

FORMAT = "interp.activation_store/1"


class ActivationStore:
    """A directory of activation shards, read whole (:meth:`load`) or streamed.

    Streaming access never holds more than one shard, or one site: :meth:`iter_shards`
    yields ``(tensor [rows, n_sites_selected, d_model], meta)`` per shard, :meth:`site`
    reads one site's ``[n_rows, d_model]`` across shards through safetensors' lazy
    slices (a site costs ``n_rows * d_model``, not ``n_rows * n_sites * d_model``), and
    :attr:`meta` is the row table alone. Every read is checked against the manifest's
    checksums of exactly the parts it reads (stores written before part checksums fall
    back to the whole-file checksum).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._meta_cache: tuple[tuple[str, ...], pd.DataFrame] | None = None

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @property
    def manifest(self) -> dict:
        if not self.exists():
            if (self.path / "parts").is_dir():
                raise StoreMismatchError(
                    f"{self.path} holds a data-parallel capture whose parts have not all "
                    "finished (no manifest.json yet); rerun the same capture to finish it"
                )
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

    # ---- what the store holds (from the manifest; no tensor is read) ------------------
    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self.manifest["request"]["sites"])

    @property
    def model_name(self) -> str:
        return self.manifest["request"]["model"]

    @property
    def adapter_hash(self) -> str | None:
        return self.manifest["request"]["adapter_hash"]

    @property
    def info(self) -> dict:
        req = self.manifest["request"]
        return {"variant": req["variant"], "positions": req["positions"]}

    def __len__(self) -> int:
        return sum(shard["rows"] for shard in self.manifest["shards"])

    def site_index(self, key: str | int | Site) -> int:
        return site_index(self.sites, key)

    @property
    def meta(self) -> pd.DataFrame:
        """The metadata of every row ``[n_rows]`` (reads only the shards' index tensors)."""
        m = self.manifest
        key = tuple(shard["sha256"] for shard in m["shards"])
        if self._meta_cache is None or self._meta_cache[0] != key:
            prompt_meta = pd.DataFrame(**m["prompt_meta"])
            parts = [
                _meta_frame(prompt_meta, _read_shard(self.path, shard, [], True)[1], None)
                for shard in m["shards"]
            ]
            self._meta_cache = (key, pd.concat(parts, ignore_index=True))
        return self._meta_cache[1].copy()

    # ---- reading ----------------------------------------------------------------------
    def verify(self) -> None:
        """Check every listed shard against its checksum; raise on the first mismatch."""
        for shard in self.manifest["shards"]:
            f = self.path / shard["file"]
            if not f.is_file() or sha256_file(f) != shard["sha256"]:
                raise StoreCorruptedError(f"shard {f} is missing or does not match its checksum")

    def iter_shards(
        self,
        sites: Sequence[str | int | Site] | None = None,
        columns: Sequence[str] | None = None,
        verify: bool = True,
    ) -> Iterator[tuple[Tensor, pd.DataFrame]]:
        """Yield ``(tensor [rows, n_sites_selected, d_model], meta [rows])`` per shard.

        ``sites``: names, kinds or layers (default: all, in stored order); ``columns``:
        the metadata columns to keep (default: all). Only the selected sites are read.
        """
        m = self.manifest
        idx = None if sites is None else [site_index(m["request"]["sites"], s) for s in sites]
        return self._iter(m, idx, columns, verify)

    def _iter(self, m: dict, idx, columns, verify: bool) -> Iterator[tuple[Tensor, pd.DataFrame]]:
        prompt_meta = pd.DataFrame(**m["prompt_meta"])
        for shard in m["shards"]:
            acts, index = _read_shard(self.path, shard, idx, verify)
            yield acts, _meta_frame(prompt_meta, index, columns)

    def site(self, key: str | int | Site, verify: bool = True) -> Tensor:
        """``[n_rows, d_model]`` at one site, read across shards (only that site's bytes)."""
        m = self.manifest  # read once: it holds every prompt's metadata
        j = site_index(m["request"]["sites"], key)
        n = sum(shard["rows"] for shard in m["shards"])
        out = None
        row = 0
        for shard in m["shards"]:
            part = _read_shard(self.path, shard, [j], verify, index=False)[0][:, 0]
            if out is None:
                out = torch.empty(n, part.shape[-1], dtype=part.dtype)
            out[row : row + len(part)] = part
            row += len(part)
        if out is None:
            raise InterpError(f"{self.path} holds no shard yet")
        return out

    def load(self) -> Activations:
        """All shards as one :class:`Activations` (verifies checksums; peak: the store
        plus one shard)."""
        m = self.manifest  # one snapshot: a capture may be appending shards meanwhile
        n = sum(shard["rows"] for shard in m["shards"])
        out, metas, row = None, [], 0
        for t, meta in self._iter(m, None, None, True):
            if out is None:
                out = torch.empty(n, *t.shape[1:], dtype=t.dtype)
            out[row : row + len(t)] = t
            row += len(t)
            metas.append(meta)
        if out is None:
            raise InterpError(f"{self.path} holds no shard yet")
        meta = pd.concat(metas, ignore_index=True)
        return Activations(out, self.sites, meta, self.model_name, self.adapter_hash, self.info)


INDEX = ("prompt", "position", "token_id")


def tensor_sha256(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy())
    return h.hexdigest()


def _read_shard(
    root: Path, shard: dict, sites: list[int] | None, verify: bool, index: bool = True
) -> tuple[Tensor, dict[str, Tensor]]:
    """``acts[:, sites]`` ``[rows, len(sites), d]`` (all sites for None) and the index tensors.

    Checks what it reads against the shard's part checksums (else the whole file's).
    """
    f = root / shard["file"]
    parts = shard.get("parts")
    if not f.is_file() or (verify and parts is None and sha256_file(f) != shard["sha256"]):
        raise StoreCorruptedError(f"shard {f} is missing or does not match its checksum")
    try:
        with safe_open(str(f), framework="pt") as st:
            got = {k: st.get_tensor(k) for k in INDEX} if index else {}
            sl = st.get_slice("acts")
            acts = sl[:] if sites is None else sl[:, sites] if sites else None
            if acts is None:  # no site asked for: an empty [rows, 0, d] view
                rows, _, d = sl.get_shape()
                acts = torch.empty(rows, 0, d)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise StoreCorruptedError(f"shard {f} cannot be read ({e}); it is damaged") from None
    if verify and parts is not None:
        bad = index and tensor_sha256(*(got[k] for k in INDEX)) != parts["index"]
        chosen = range(acts.shape[1]) if sites is None else sites
        for col, j in enumerate(chosen):
            bad = bad or tensor_sha256(acts[:, col]) != parts["sites"][j]
        if bad:
            raise StoreCorruptedError(f"shard {f} does not match its checksum")
    if len(acts) != shard["rows"]:
        raise StoreCorruptedError(f"shard {f} holds {len(acts)} rows, its manifest {shard['rows']}")
    return acts, got


def _meta_frame(
    prompt_meta: pd.DataFrame, index: dict[str, Tensor], columns: Sequence[str] | None
) -> pd.DataFrame:
    idx = index["prompt"].tolist()
    meta = prompt_meta.iloc[idx].reset_index(drop=True).copy()
    meta.insert(0, "prompt", idx)
    meta.insert(1, "position", index["position"].tolist())
    meta.insert(2, "token_id", index["token_id"].tolist())
    if columns is None:
        return meta
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise InterpError(f"no metadata column {missing} (columns: {list(meta.columns)})")
    return meta[list(columns)]
