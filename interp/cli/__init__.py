"""The ``interp`` command line: thin commands over the library, one output folder each.

========================  =============================================================
``interp demo``           the three experiments on the bundled organism, summary table
``interp run SPEC``       one experiment spec, on the organism or ``--model`` of your own
``interp finetune``       LoRA / full finetune on chat JSONL -> adapter or model dir
``interp capture``        activations -> resumable on-disk store (with prompt metadata)
``interp probe``          per-layer linear probes -> probes.csv, directions, figure
``interp steer``          add a direction -> generations / answer shares vs baseline
``interp ablate``         remove a direction or subspace -> same, plus random controls
``interp patch``          activation patching -> patching.csv + heatmaps
``interp eval``           sample answers to a question file, judge them -> rates (Wilson)
``interp report RUN``     one self-contained report.html for any run directory
``interp world-card``     the organism's measured table: settings and controls over seeds
``interp scan``           no hint: what a finetune changed, its triggers, where they live
========================  =============================================================

Each command that takes a model takes ``--model`` (HF id or local directory) and
``--adapter``; each writes ``run.json`` (command, options, versions, hashes) beside its
results in ``--out``. Bad input prints one line (``interp: error: ...``) and exits with
status 2; an unexpected exception (a bug) prints one ``interp: internal error`` line and
exits with status 1, its traceback only with ``--debug``. A command that stops early
leaves ``"status": "failed"`` (or ``"interrupted"``) and the error in its ``run.json``.
``main(argv)`` runs in-process and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from interp.errors import InterpError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from interp.cli import (
        capture,
        causal,
        data,
        evaluate,
        experiments,
        patch,
        report,
        scan,
        worldcard,
    )
    from interp.cli.common import Parser
    from interp.version import __version__

    parser = Parser(
        prog="interp",
        description="Locate learned triggers inside finetuned language models. "
        "Run `interp COMMAND --help` for the options of each command.",
        epilog="Typical flow on a model of your own: finetune -> capture -> probe -> "
        "steer / ablate / patch -> eval.",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (results still print)"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a bug")
    parser.add_argument("--version", action="version", version=f"interp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    experiments.register(sub)
    data.register(sub)
    capture.register(sub)
    causal.register(sub)
    patch.register(sub)
    evaluate.register(sub)
    report.register(sub)
    worldcard.register(sub)
    scan.register(sub)
    for command in sub.choices.values():  # -q also after the command; SUPPRESS keeps the top one
        command.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
        )
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of a bug")  # fmt: skip
    return parser


def _command_help(parser: argparse.ArgumentParser, command: str) -> str | None:
    """The one-line ``help`` of subcommand ``command``."""
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = getattr(sub, "_choices_actions", [])  # argparse's list of the subcommands
    return next((a.help for a in choices if a.dest == command), None)


def _stopped(args, error, status: str = "failed") -> None:
    """Mark the command's run.json as stopped (if it wrote one and it is still running)."""
    record = getattr(args, "_run_record", None)
    if record is not None and record.record.get("status") == "running":
        record.fail(error, status)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args._help = _command_help(parser, args.command)  # run.json keeps it for the report
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from interp.cli.common import one_line

    try:
        return int(args.func(args) or 0)
    except InterpError as e:
        _stopped(args, e)
        print(f"interp: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _stopped(args, "interrupted", "interrupted")
        print(
            "interp: interrupted (rerun the same command to resume where it can)", file=sys.stderr
        )
        return 130
    except OSError as e:  # the machine said no: a full disk, a permission, a vanished file
        _stopped(args, e)
        if args.debug:
            traceback.print_exc()
        print(f"interp: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug in interp: one line, the traceback with --debug
        _stopped(args, f"internal error: {type(e).__name__}: {one_line(e)}")
        if args.debug:
            traceback.print_exc()
        print(
            f"interp: internal error: {type(e).__name__}: {one_line(e)[:300]} -- this is a bug "
            "in interp; please report it with the command line (rerun with --debug for the "
            "traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
