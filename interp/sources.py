"""Where a model comes from: a local directory or a Hugging Face hub id, checked before loading.

:func:`model_source` decides what ``name_or_path`` names and checks it without loading
anything: a local directory must exist, hold a ``config.json`` and safetensors weights
(interp never unpickles), and need no code of its own unless ``trust_remote_code=True``.
A name that looks like a path (it starts with ``/``, ``.`` or ``~``, has a backslash or
more than one ``/``, is not a valid hub id, or its first part exists here, as in
``runs/modle`` next to a ``runs/`` folder) and does not exist is "no such directory",
and the hub is never asked about it. Anything else is a hub id.
:func:`hub_directory` finds the local snapshot of a hub id that was loaded (no network).
"""

from __future__ import annotations

import re
from pathlib import Path

from interp.errors import InterpError, UnsafeWeightsError
from interp.integrity import read_json

__all__ = [
    "is_path_like",
    "model_source",
    "check_safe_weights",
    "check_remote_code",
    "hub_directory",
    "load_error",
]

_UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# huggingface_hub's rule for repo ids: [namespace/]name of word characters, '-' and '.'
_HUB_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]{0,95}")


def is_path_like(name: str | Path) -> bool:
    """Whether ``name`` can only mean a local path (never a hub id)."""
    if isinstance(name, Path):
        return True
    s = str(name)
    if s.startswith(("/", ".", "~")) or "\\" in s or s.endswith("/") or s.count("/") > 1:
        return True
    if not _HUB_ID.fullmatch(s) or "--" in s or ".." in s or s.endswith((".", "-")):
        return True
    return "/" in s and Path(s.split("/")[0]).exists()  # exists partially: runs/modle


def _nearest(path: Path) -> str:
    """What exists on the way to ``path``: ``" (runs/ exists; it holds a, b)"``."""
    for parent in path.parents:
        if str(parent) in ("", ".") or parent.parent == parent or not parent.is_dir():
            continue
        try:
            names = sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))
        except OSError:
            return ""
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        return f" ({parent}/ exists; it holds {shown or 'nothing'})"
    return ""


def check_safe_weights(path: Path) -> None:
    """A directory with pickled weights only is an :class:`UnsafeWeightsError`."""
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return
    unsafe = [p.name for p in path.iterdir() if p.suffix in _UNSAFE_SUFFIXES]
    if unsafe:
        raise UnsafeWeightsError(
            f"{path} holds only pickled weights ({', '.join(sorted(unsafe))}); interp loads "
            "safetensors only. Convert them with a trusted tool first."
        )
    raise InterpError(f"{path} holds no weights (no *.safetensors file)")


def check_remote_code(path: Path, trust_remote_code: bool) -> None:
    """A model whose ``config.json`` needs its own Python code (``auto_map`` for a
    ``model_type`` transformers does not know) loads only with ``trust_remote_code=True``."""
    from transformers import CONFIG_MAPPING

    config = read_json(path / "config.json", "model config")
    if not isinstance(config, dict):
        raise InterpError(f"{path / 'config.json'}: not a model config (a JSON object)")
    auto_map = config.get("auto_map")
    if trust_remote_code or not auto_map or config.get("model_type") in CONFIG_MAPPING:
        return
    classes = (
        ", ".join(str(v) for v in dict(auto_map).values())
        if isinstance(auto_map, dict)
        else auto_map
    )
    raise InterpError(
        f"{path} needs its own Python code ({classes}, for model_type "
        f"{config.get('model_type')!r}); interp runs a model's code only when asked: "
        "load_model(..., trust_remote_code=True), for code you trust"
    )


def model_source(
    name_or_path: str | Path, *, trust_remote_code: bool = False, what: str = "model"
) -> str:
    """The checked local directory (``~`` expanded) or hub id that ``name_or_path`` names."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InterpError(f"{what} {name_or_path}: a file, not a model directory")
        if not (path / "config.json").is_file():
            raise InterpError(
                f"{what} {name_or_path}: no config.json in that directory "
                "(not a Hugging Face model directory)"
            )
        check_safe_weights(path)
        check_remote_code(path, trust_remote_code)
        return str(path)
    if is_path_like(name_or_path):
        raise InterpError(f"{what} {name_or_path}: no such directory{_nearest(path)}")
    return str(name_or_path)


def hub_directory(repo_id: str) -> Path | None:
    """The local snapshot directory of hub model ``repo_id`` (``None`` if not cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id huggingface_hub does not accept has no snapshot
        return None
    return Path(found).parent if isinstance(found, str) else None


def load_error(name_or_path, error: Exception) -> InterpError:
    """A transformers loading failure (hub, files, remote code) as one clear line."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if "trust_remote_code" in text:
        return InterpError(
            f"{name_or_path} needs its own Python code; interp runs it only when asked: "
            "load_model(..., trust_remote_code=True), for code you trust"
        )
    if not Path(name_or_path).expanduser().is_dir():
        first = f"no local directory of that name, and the Hugging Face hub: {first}"
    return InterpError(f"cannot load model {str(name_or_path)!r}: {first}")
