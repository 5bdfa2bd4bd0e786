"""Reading interp's own files safely: clear errors for missing, corrupted or altered files.

Every pair interp writes (a ``.safetensors`` file of tensors and a ``.json`` file that
describes them: directions, subspaces, saved :class:`~interp.record.activations.Activations`)
carries a ``sha256`` entry in its JSON: the hash of the tensor file and the hash of the
JSON's own other fields. :func:`verify` recomputes both on load, so one flipped byte in
either file is an :class:`~interp.errors.IntegrityError` naming the file, never a
silently different result. Files written before checksums existed (no ``sha256`` entry)
still load.

- :func:`read_json`: a JSON file -> object; missing, not UTF-8 or not JSON -> one line;
  :func:`jsonl_rows`: the rows of a JSONL file, a bad line named by its number.
- :func:`read_safetensors`: a safetensors file -> tensors; missing, truncated or
  corrupted -> one line (safetensors never unpickles anything).
- :func:`seal` / :func:`verify`: add / check the ``sha256`` entry of a JSON header.
- :func:`read_text`: UTF-8 text with a clear error for other encodings; :func:`read_yaml`:
  a YAML file -> object, the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.errors import IntegrityError, InterpError
from interp.fingerprint import sha256_file, sha256_json

__all__ = [
    "read_text",
    "read_json",
    "jsonl_rows",
    "read_safetensors",
    "seal",
    "verify",
    "yaml_problem",
    "CHECKSUM_KEY",
]

CHECKSUM_KEY = "sha256"


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a missing file or another encoding is an InterpError."""
    p = Path(path)
    if not p.is_file():
        raise InterpError(f"{what} {p}: no such file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InterpError(
            f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None


def read_json(path: str | Path, what: str = "file"):
    """The parsed JSON of ``path`` (missing, not UTF-8, or not JSON: one clear error)."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise IntegrityError(f"{path}: not valid JSON ({e}); the file is corrupted") from None


def jsonl_rows(path: str | Path, what: str = "file", text: str | None = None):
    """``(where, row)`` for each non-blank line of a JSONL file, ``where`` = ``path:line``;
    a line that is not JSON is one InterpError naming it. ``text``: the file's text, if read."""
    text = read_text(path, what) if text is None else text
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            raise InterpError(f"{where}: not JSON ({e.msg})") from None


def read_safetensors(path: str | Path, what: str = "tensor file") -> dict:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise InterpError(f"{what} {p}: no such file (the .json and .safetensors go together)")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise IntegrityError(f"{p}: corrupted or truncated safetensors file ({first})") from None


def yaml_problem(error) -> str:
    """A YAML parse error in one line: what is wrong and where (``line 3, column 7``)."""
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def read_yaml(path: str | Path, what: str = "file", error: type[InterpError] = InterpError):
    """The parsed YAML (or JSON) of ``path``: missing, not UTF-8 or not YAML is one clear
    line (``error``, an :class:`~interp.errors.InterpError` subclass, for the last)."""
    import yaml

    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({yaml_problem(e)})") from None


def _header_hash(meta: dict) -> str:
    return sha256_json({k: v for k, v in meta.items() if k != CHECKSUM_KEY})


def seal(meta: dict, tensor_path: str | Path) -> dict:
    """``meta`` plus ``sha256``: the tensor file's hash and the hash of ``meta`` itself.

    Call after the tensor file is written; write the returned dict as the JSON header.
    """
    meta = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    meta = json.loads(json.dumps(meta, default=str))  # exactly what will be read back
    return {
        **meta,
        CHECKSUM_KEY: {"tensors": sha256_file(tensor_path), "header": _header_hash(meta)},
    }


def verify(meta: dict, tensor_path: str | Path, json_path: str | Path | None = None) -> dict:
    """Check the ``sha256`` entry of ``meta`` against the files; returns ``meta``.

    A header without ``sha256`` (written before checksums) passes unchecked.
    """
    sums = meta.get(CHECKSUM_KEY)
    if sums is None:
        return meta
    where = json_path or "the JSON header"
    if not isinstance(sums, dict) or not {"tensors", "header"} <= sums.keys():
        raise IntegrityError(f"{where}: malformed {CHECKSUM_KEY!r} entry; the file is corrupted")
    if _header_hash(meta) != sums["header"]:
        raise IntegrityError(
            f"{where}: checksum mismatch: the JSON header was changed or corrupted after it "
            "was written"
        )
    p = Path(tensor_path)
    if not p.is_file():
        raise InterpError(f"{p}: no such file (the .json and .safetensors go together)")
    if sha256_file(p) != sums["tensors"]:
        raise IntegrityError(
            f"{p}: checksum mismatch: the tensor file was changed or corrupted after it was "
            f"written (sha256 recorded in {where})"
        )
    return meta
