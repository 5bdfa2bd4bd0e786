"""Content hashes that tie results to the exact model, adapter and data that made them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

__all__ = ["sha256_file", "sha256_dir", "sha256_json", "sha256_texts", "sha256_tensors"]

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: str | Path, patterns: Iterable[str] = ("*.json", "*.safetensors")) -> str:
    """Hash of the files in ``path`` matching ``patterns`` (names and contents, sorted)."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
    for p in files:
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sha256_texts(texts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\x00")
    return h.hexdigest()


def sha256_tensors(tensors: Mapping, extra=None) -> str:
    """Hash of named tensors (names, dtypes, shapes and bytes, by sorted name) and ``extra``
    (anything JSON can write)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(sha256_json(extra).encode())
    return h.hexdigest()
