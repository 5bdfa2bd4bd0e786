"""What every ``interp`` subcommand shares: model options, input readers, the run record.

Nothing here does science. It turns files into the library's objects (a prompt table into
a :class:`~interp.prompts.PromptSet`, a direction file into a
:class:`~interp.directions.Direction` or :class:`~interp.directions.Subspace`) and writes
``run.json`` (the command, its options, versions, seeds and content hashes) beside each
command's results.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pandas as pd

from interp.cli.record import RUN_FILE, RunRecord, claim_out, one_line  # noqa: F401 (re-export)
from interp.errors import InterpError, PromptError
from interp.integrity import jsonl_rows, read_json, read_text
from interp.prompts import check_message, check_prompt

__all__ = [
    "add_workers_arg",
    "Parser",
    "positive_int",
    "nonneg_int",
    "finite_float",
    "nonneg_float",
    "positive_float",
    "probability",
    "at_least",
    "add_model_args",
    "add_out_arg",
    "load",
    "read_prompts",
    "read_target",
    "parse_positions",
    "RunRecord",
    "claim_out",
    "one_line",
    "save_figure",
    "headless",
]


# ---- options ------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``interp probe: error: ...``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low} (got {value})")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = at_least(1)
nonneg_int = at_least(0)


def finite_float(text: str) -> float:
    return _number(float, text)


def nonneg_float(text: str) -> float:
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (got {value:g})")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 (got {value:g})")
    return value


def probability(text: str) -> float:
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (got {value:g})")
    return value


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


_OUT_HELP = (
    "output directory: new, empty, or this command's own earlier run with the same options "
    "(then it resumes); any other directory is refused, never overwritten"
)


def add_out_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    if default is None:
        p.add_argument("--out", required=True, help=_OUT_HELP)
    else:
        p.add_argument("--out", default=default, help=f"{_OUT_HELP} (default: {default})")


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
        for j, m in enumerate(msgs):
            check_message(m, f"{where}, message {j}")
        if msgs[-1]["role"] == "assistant":
            if len(msgs) == 1:
                raise PromptError(f"{where}: only an assistant message; nothing to prompt with")
            return msgs[:-1], msgs[-1]["content"]
        return msgs, None
    if "prompt" in row:
        if not isinstance(row["prompt"], str):
            raise PromptError(f"{where}: 'prompt' must be a string (got {row['prompt']!r:.40})")
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
    text = read_text(path, "prompts")  # UTF-8 or one clear error
    if suffix == ".csv":
        try:
            table = pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "empty"
            raise InterpError(f"{path}: not a CSV table ({first})") from None
        if "prompt" not in table.columns:
            raise InterpError(f"{path}: a CSV prompt table needs a 'prompt' column")
        empty = table.index[table["prompt"].isna()].tolist()
        if empty:
            raise PromptError(f"{path}: row {empty[0] + 2} has an empty prompt")
        prompts = table.pop("prompt").astype(str).tolist()
        meta = table
    elif suffix == ".jsonl":
        prompts, rows = [], []
        for where, row in jsonl_rows(path, text=text):
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
        prompts = [line for line in text.splitlines() if line.strip()]
        meta = None
    else:
        raise InterpError(f"{path}: prompts must be .txt, .csv or .jsonl (got {suffix!r})")
    if not prompts:
        raise InterpError(f"{path}: no prompts")
    for i, p in enumerate(prompts):
        check_prompt(p, f"{path}: prompt {i + 1}")
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
            text = read_text(_existing(v[1:], what), what)
            out += [line for line in text.splitlines() if line.strip()]
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
    meta = read_json(js, "direction file")
    kind = meta.get("kind") if isinstance(meta, dict) else None
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


def add_workers_arg(parser) -> None:
    """``--workers N``: finetunes trained at once (``None``: the placement decides)."""
    parser.add_argument(
        "--workers", type=at_least(1), default=None, metavar="N",
        help="finetunes trained at once, one process each (default: one per CPU core, at "
        "most 8, on the CPU; 1 on a GPU); the results do not depend on it",
    )  # fmt: skip
