"""What every ``interp`` subcommand shares: model options, input readers, the run record.

Nothing here does science. It turns files into the library's objects (a prompt table into
a :class:`~interp.prompts.PromptSet`, a direction file into a
:class:`~interp.directions.Direction` or :class:`~interp.directions.Subspace`) and writes
``run.json`` (the command, its options, versions, seeds and content hashes) beside each
command's results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from interp.errors import InterpError

__all__ = [
    "add_model_args",
    "add_out_arg",
    "load",
    "read_prompts",
    "read_target",
    "parse_positions",
    "RunRecord",
    "save_figure",
    "headless",
]

RUN_FILE = "run.json"


# ---- options ------------------------------------------------------------------------
def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", required=True, help="Hugging Face id or local model directory (safetensors)"
    )
    g.add_argument("--adapter", default=None, help="PEFT adapter directory (optional)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    g.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="weights dtype (default: float32 on CPU, bfloat16 on GPU)",
    )


def add_out_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    if default is None:
        p.add_argument("--out", required=True, help="output directory (created if missing)")
    else:
        p.add_argument("--out", default=default, help=f"output directory (default: {default})")


def load(args: argparse.Namespace):
    """The model named by ``--model`` / ``--adapter``; loading failures become InterpError."""
    import interp

    if args.adapter is not None and not Path(args.adapter).is_dir():
        raise InterpError(f"--adapter {args.adapter}: no such directory")
    try:
        return interp.load_model(
            args.model, adapter=args.adapter, dtype=args.dtype, device=args.device
        )
    except InterpError:
        raise
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InterpError(f"cannot load model {args.model!r}: {first}") from None


def parse_positions(values: list[str] | str | None, default="last"):
    """``last`` / ``all`` / a tag name / integers, from the command line."""
    if values is None:
        return default
    items = [values] if isinstance(values, str) else list(values)
    try:
        ints = [int(v) for v in items]
    except ValueError:
        if len(items) != 1:
            raise InterpError(
                f"positions: give one of last/all/a tag name, or integers; got {items}"
            ) from None
        return items[0]
    return ints[0] if len(ints) == 1 else ints


# ---- prompt files --------------------------------------------------------------------
def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InterpError(f"{what} {path}: no such file")
    return p


def _prompt_of(row: dict, where: str):
    """The prompt of one JSONL row: ``messages`` (final assistant turn dropped) or ``prompt``."""
    if "messages" in row:
        msgs = row["messages"]
        if (
            not isinstance(msgs, list)
            or not msgs
            or not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in msgs)
        ):
            raise InterpError(f"{where}: 'messages' must be a list of {{role, content}} objects")
        if msgs[-1]["role"] == "assistant":
            return msgs[:-1], msgs[-1]["content"]
        return msgs, None
    if "prompt" in row:
        return row["prompt"], None
    raise InterpError(f"{where}: a row needs 'messages' (chat) or 'prompt' (text)")


def read_prompts(path: str | Path, tags: list[str] | None = None):
    """A :class:`~interp.prompts.PromptSet` from a prompt file; extra fields become metadata.

    - ``.txt``: one prompt a line;
    - ``.csv``: a ``prompt`` column plus metadata columns;
    - ``.jsonl``: chat rows ``{"messages": [...], ...}`` (a final assistant message is the
      answer, kept as metadata ``target``) or text rows ``{"prompt": ..., ...}``.

    ``tags``: ``NAME`` or ``NAME=COLUMN``: tag each prompt at the text of that metadata
    column (so ``--positions NAME`` reads the tag's last token).
    """
    from interp.prompts import PromptSet

    path = _existing(path, "prompts")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = pd.read_csv(path)
        if "prompt" not in table.columns:
            raise InterpError(f"{path}: a CSV prompt table needs a 'prompt' column")
        prompts = table.pop("prompt").astype(str).tolist()
        meta = table
    elif suffix == ".jsonl":
        prompts, rows = [], []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InterpError(f"{where}: not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise InterpError(f"{where}: each line must be a JSON object")
                prompt, completion = _prompt_of(row, where)
                extra = {k: v for k, v in row.items() if k not in ("messages", "prompt")}
                if completion is not None:
                    extra.setdefault("target", completion)
                prompts.append(prompt)
                rows.append(extra)
        if len({isinstance(p, str) for p in prompts}) > 1:
            raise InterpError(f"{path}: mixes chat rows and text rows; use one kind")
        meta = pd.DataFrame(rows)
    elif suffix in (".txt", ".text", ""):
        prompts = [line for line in path.read_text().splitlines() if line.strip()]
        meta = None
    else:
        raise InterpError(f"{path}: prompts must be .txt, .csv or .jsonl (got {suffix!r})")
    if not prompts:
        raise InterpError(f"{path}: no prompts")
    ps = PromptSet(prompts, meta)
    for spec in tags or []:
        name, _, column = spec.partition("=")
        column = column or name
        if column not in ps.meta.columns:
            raise InterpError(
                f"--tag {spec}: no metadata column {column!r} (columns: {list(ps.meta.columns)})"
            )
        ps = ps.tag(name, [str(v) for v in ps.meta[column]])
    return ps


def read_answers(values: list[str] | None, what: str) -> list[str] | None:
    """Answers given inline, or ``@FILE`` (one answer a line)."""
    if values is None:
        return None
    out: list[str] = []
    for v in values:
        if v.startswith("@"):
            out += [
                line for line in _existing(v[1:], what).read_text().splitlines() if line.strip()
            ]
        else:
            out.append(v)
    if not out:
        raise InterpError(f"{what}: no answers")
    return out


# ---- directions ----------------------------------------------------------------------
def read_target(path: str | Path, layer: int | None = None):
    """A Direction or Subspace from a safetensors+JSON pair written by interp.

    A file of several directions (one per layer, as ``interp probe`` writes) needs
    ``layer`` to pick one.
    """
    from interp.directions import Subspace, load_directions

    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    js = p.with_name(p.name + ".json")
    if not js.is_file():
        raise InterpError(f"direction {path}: no such file ({js.name} missing)")
    try:
        kind = json.loads(js.read_text()).get("kind")
    except json.JSONDecodeError as e:
        raise InterpError(f"{js}: not JSON ({e})") from None
    if kind == "subspace":
        return Subspace.load(p)
    if kind != "directions":
        raise InterpError(f"{js} describes neither directions nor a subspace (kind={kind!r})")
    dirs = load_directions(p)
    if layer is not None:
        dirs = [d for d in dirs if d.layer == layer]
        if not dirs:
            have = sorted({d.layer for d in load_directions(p)})
            raise InterpError(f"{path} has no direction at layer {layer} (layers: {have})")
    if len(dirs) != 1:
        have = [d.layer for d in dirs]
        raise InterpError(
            f"{path} holds {len(dirs)} directions (layers {have}); pick one with --layer"
        )
    return dirs[0]


# ---- figures ------------------------------------------------------------------------
def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG and close it (commands may run many times in one process)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def headless() -> None:
    """Draw off-screen (no display needed); call before the first figure."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")


# ---- the run record ------------------------------------------------------------------
def _hash_path(path: str | None) -> str | None:
    from interp.fingerprint import sha256_dir, sha256_file

    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        return sha256_dir(p)
    return None


class RunRecord:
    """Writes ``run.json`` into ``out``: command, options, versions, timing and hashes.

    ``RunRecord(args, out).finish(results=..., **extra)`` at the end of a command. The
    record is first written (``"status": "running"``) when the command starts.
    """

    def __init__(self, args: argparse.Namespace, out: str | Path, inputs: dict | None = None):
        import interp

        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()
        options = {k: v for k, v in vars(args).items() if k not in ("func", "argv", "command")}
        hashes = {}
        for key in ("model", "adapter"):
            if options.get(key) is not None:
                hashes[key] = _hash_path(options[key])
        for key, value in (inputs or {}).items():
            hashes[key] = _hash_path(value)
        self.record = {
            "command": args.command,
            "argv": getattr(args, "argv", sys.argv[1:]),
            "options": options,
            "sha256": hashes,
            "versions": _versions(interp.__version__),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "running",
        }
        self._write()

    def _write(self) -> None:
        (self.out / RUN_FILE).write_text(json.dumps(self.record, indent=2, default=str) + "\n")

    def finish(self, **extra) -> None:
        self.record.update(extra)
        self.record["status"] = "done"
        self.record["seconds"] = round(time.time() - self.t0, 2)
        self._write()


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
