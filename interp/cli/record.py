"""``run.json``: the record every ``interp`` command writes beside its results, and the
check that keeps a command from writing where it would lose data (:func:`claim_out`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from interp.errors import RunDirectoryError

__all__ = ["RUN_FILE", "RunRecord", "claim_out", "one_line"]

RUN_FILE = "run.json"


# ---- the run record ------------------------------------------------------------------
def _hash_path(path: str | None) -> str | None:
    """sha256 of a file, of a directory's json/safetensors, or of a ``NAME.{json,safetensors}``
    pair named by its stem (a direction); ``None`` for what is not on disk (a hub id)."""
    from interp.fingerprint import sha256_dir, sha256_file, sha256_json

    if path is None:
        return None
    if isinstance(path, list):  # a repeated option (``--adapter NAME=DIR`` ...)
        return sha256_json([_hash_path(_named_path(v)) for v in path])
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        return sha256_dir(p)
    pair = [p.with_name(p.name + ext) for ext in (".json", ".safetensors")]
    if all(f.is_file() for f in pair):
        return sha256_json({f.name: sha256_file(f) for f in pair})
    return None


_NOT_OPTIONS = ("func", "argv", "command", "quiet", "debug")
# how the work is split over processes, not what it computes: a rerun may change them
_SPLIT_OPTIONS = ("part", "devices")


def _options(args: argparse.Namespace) -> dict:
    keep = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS and not k.startswith("_")}
    return json.loads(json.dumps(keep, default=str))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _named_path(value: str) -> str:
    """``NAME=PATH`` -> ``PATH`` (when ``value`` itself is not on disk)."""
    name, sep, path = str(value).partition("=")
    return path if sep and not Path(value).exists() else value


def _on_disk(value) -> list[Path]:
    """The files an input names: itself, or the ``.json`` / ``.safetensors`` of a stem."""
    if isinstance(value, list):
        return [p for v in value for p in _on_disk(_named_path(v))]
    p = Path(value)
    if p.exists():
        return [p]
    return [f for f in (p.with_name(p.name + e) for e in (".json", ".safetensors")) if f.exists()]


def claim_out(out: Path, command: str, options: dict, inputs: dict, adopt: bool = False) -> None:
    """Refuse an ``--out`` that writing into would lose data; create it otherwise.

    Allowed: a new or empty directory, or one holding ``run.json`` of the same command
    with the same options (a rerun: it resumes or redoes that run). Refused: a file, an
    unwritable place, a directory of other files, another run's directory, and any
    ``--out`` that holds one of the command's inputs. ``adopt``: the command itself has
    just written ``out`` (``interp run`` into the spec's own directory).
    """
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"--out {out} is a file, not a directory")
    for key, value in inputs.items():
        if value is not None and any(_inside(p, out) for p in _on_disk(value)):
            raise RunDirectoryError(
                f"--out {out} holds the input {key} ({value}); interp never writes beside "
                "its inputs: choose another --out"
            )
    record = out / RUN_FILE
    if record.is_file():
        try:
            old = json.loads(record.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunDirectoryError(
                f"{record} is not a readable run record; choose another --out"
            ) from None
        if not isinstance(old, dict) or old.get("command") != command:
            what = old.get("command") if isinstance(old, dict) else "?"
            raise RunDirectoryError(
                f"--out {out} holds a run of `interp {what}`; interp never replaces another "
                "run's results: choose another --out"
            )
        before = old.get("options") if isinstance(old.get("options"), dict) else {}
        before = {k: v for k, v in before.items() if k not in _NOT_OPTIONS and k[:1] != "_"}
        changed = sorted(  # --out itself may be spelled differently: it is this directory
            k
            for k in {*before, *options} - {"out", *_SPLIT_OPTIONS}
            if before.get(k) != options.get(k)
        )
        if changed:
            shown = ", ".join(f"{k}: {before.get(k)!r} -> {options.get(k)!r}" for k in changed[:3])
            raise RunDirectoryError(
                f"--out {out} holds an earlier `interp {command}` run with other options "
                f"({shown}); rerun with the same options to resume, or choose another --out"
            )
    elif out.is_dir() and any(out.iterdir()) and not adopt:
        raise RunDirectoryError(
            f"--out {out} is not empty and holds no {RUN_FILE}; interp writes only into a new "
            "or empty directory (or its own earlier run): choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".interp-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunDirectoryError(f"--out {out}: cannot write there ({e.strerror or e})") from None


class RunRecord:
    """Writes ``run.json`` into ``out``: command, options, versions, timing and hashes.

    ``RunRecord(args, out, inputs).finish(results=..., **extra)`` at the end of a
    command. Creating it first checks ``out`` (:func:`claim_out`), then writes the record
    with ``"status": "running"``; :meth:`fail` (called by ``interp``'s top-level handler
    when a command raises) records ``"failed"`` and the error.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        out: str | Path,
        inputs: dict | None = None,
        *,
        adopt: bool = False,
    ):
        from interp.version import __version__

        self.out = Path(out)
        self.t0 = time.time()
        options = _options(args)
        paths = {k: options.get(k) for k in ("model", "adapter")}
        paths.update(inputs or {})
        claim_out(self.out, args.command, options, paths, adopt=adopt)
        hashes = {k: _hash_path(v) for k, v in paths.items() if v is not None}
        self.record = {
            "command": args.command,
            "help": getattr(args, "_help", None),  # the command's --help line (for reports)
            "argv": getattr(args, "argv", sys.argv[1:]),
            "options": options,
            "sha256": hashes,
            "versions": _versions(__version__),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
        }
        self._write()
        args._run_record = self  # the top-level handler marks the run failed on an error

    def _write(self) -> None:
        (self.out / RUN_FILE).write_text(json.dumps(self.record, indent=2, default=str) + "\n")

    def finish(self, **extra) -> None:
        self.record.update(extra)
        self.record["status"] = "done"
        self.record["seconds"] = round(time.time() - self.t0, 2)
        self._write()

    def fail(self, error: BaseException | str, status: str = "failed") -> None:
        """Record that the command stopped: ``status`` and the error's one-line message."""
        self.record["status"] = status
        self.record["error"] = str(error) if isinstance(error, str) else one_line(error)
        self.record["seconds"] = round(time.time() - self.t0, 2)
        try:
            self._write()
        except OSError:  # pragma: no cover - the directory vanished; nothing left to record
            pass


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (its type name when it has none)."""
    text = " ".join(ln.strip() for ln in str(error).splitlines() if ln.strip())
    return text or type(error).__name__


def _versions(interp_version: str) -> dict:
    import platform
    from importlib import metadata

    out = {"interp": interp_version, "python": platform.python_version()}
    for package in ("torch", "transformers", "peft"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover
            pass
    return out
