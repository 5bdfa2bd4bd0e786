"""Content hashes that tie results to the exact model, adapter and data that made them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from interp.errors import InterpError

__all__ = [
    "sha256_file",
    "sha256_file_cached",
    "sha256_dir",
    "sha256_json",
    "sha256_texts",
    "sha256_tensors",
    "MODEL_FILES",
    "model_files",
    "model_files_stat",
    "model_dir_sha256",
    "WeightsFingerprint",
]

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


# ---- model fingerprints ---------------------------------------------------------------
# what makes a model compute what it computes: weights, config and tokenizer (not e.g. a
# README or generation defaults)
MODEL_FILES = (
    "*.safetensors",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)

# file hashes by (path, size, mtime, inode): a file rewritten in place gets a new entry
_FILE_CACHE: dict[tuple, str] = {}
_DISK_CACHE_MIN = 64 << 20  # files at least this big also keep their hash on disk


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _disk_cache_file(key: tuple) -> Path:
    root = Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))
    return root / "sha256" / hashlib.sha256(repr(key).encode()).hexdigest()


def sha256_file_cached(path: str | Path) -> str:
    """:func:`sha256_file`, remembered by ``(path, size, mtime, inode)``: in this process,
    and on disk under ``$INTERP_CACHE/sha256`` for files of 64 MiB and more, so that a
    large weights file is read once, not at every call."""
    path = Path(path)
    key = _stat_key(path)
    if key in _FILE_CACHE:
        return _FILE_CACHE[key]
    disk = _disk_cache_file(key) if key[1] >= _DISK_CACHE_MIN else None
    if disk is not None and disk.is_file():
        value = disk.read_text().strip()
    else:
        value = sha256_file(path)
        if disk is not None:
            try:
                disk.parent.mkdir(parents=True, exist_ok=True)
                tmp = disk.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(value)
                os.replace(tmp, disk)
            except OSError:  # a read-only cache costs time, not correctness
                pass
    _FILE_CACHE[key] = value
    return value


def model_files(path: str | Path) -> list[Path]:
    """The files of model directory ``path`` that :func:`model_dir_sha256` covers, sorted."""
    root = Path(path)
    return sorted({p for pat in MODEL_FILES for p in root.glob(pat) if p.is_file()})


def model_files_stat(path: str | Path) -> tuple:
    """Names, sizes, mtimes and inodes of :func:`model_files` (cheap; changes when they do)."""
    return tuple((p.name, *_stat_key(p)[1:]) for p in model_files(path))


def model_dir_sha256(path: str | Path) -> str:
    """Content hash of a model directory's weights, config and tokenizer files."""
    h = hashlib.sha256()
    for p in model_files(path):
        h.update(p.name.encode())
        h.update(sha256_file_cached(p).encode())
    return h.hexdigest()


class WeightsFingerprint:
    """The content hash of a model's weights, computed on first use and shared by every view
    of one load (base and finetuned).

    A model read from a directory is hashed by its files (:func:`model_dir_sha256`); if they
    changed on disk after loading, asking for the hash is an error (the weights in memory
    are no longer the ones on disk). A model built in memory is hashed by its tensors,
    again whenever one of them was modified in place (an optimizer step).
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else None
        self._stat = model_files_stat(self.directory) if self.directory is not None else None
        self._value: str | None = None
        self._versions: tuple | None = None

    def __repr__(self) -> str:
        return f"WeightsFingerprint({str(self.directory) if self.directory else 'in memory'})"

    def sha256(self, module: torch.nn.Module) -> str | None:
        if self.directory is not None:
            return self._of_directory()
        versions = tuple((id(t), t._version) for t in module.state_dict(keep_vars=True).values())
        if self._value is None or versions != self._versions:
            state = module.state_dict()
            if any(t.device.type == "meta" for t in state.values()):
                return None  # offloaded weights: nothing to hash in memory
            self._value, self._versions = sha256_tensors(state), versions
        return self._value

    def _of_directory(self) -> str:
        assert self.directory is not None
        if self._value is None:
            self._check_unchanged()
            value = model_dir_sha256(self.directory)
            self._check_unchanged()  # not rewritten while it was read
            self._value = value
        return self._value

    def _check_unchanged(self) -> None:
        if model_files_stat(self.directory) != self._stat:
            raise InterpError(
                f"the model files in {self.directory} changed on disk after the model was "
                "loaded; load it again"
            )
