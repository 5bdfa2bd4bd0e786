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
``interp scan``           no hint: what a finetune changed, its triggers, where they live
========================  =============================================================

Each command that takes a model takes ``--model`` (HF id or local directory) and
``--adapter``; each writes ``run.json`` (command, options, versions, hashes) beside its
results in ``--out``. Bad input prints one line (``interp: error: ...``) and exits with
status 2. ``main(argv)`` runs in-process and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys

from interp.errors import InterpError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from interp.cli import causal, data, evaluate, experiments, patch, scan

    parser = argparse.ArgumentParser(
        prog="interp",
        description="Locate learned triggers inside finetuned language models. "
        "Run `interp COMMAND --help` for the options of each command.",
        epilog="Typical flow on a model of your own: finetune -> capture -> probe -> "
        "steer / ablate / patch -> eval.",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (results still print)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    experiments.register(sub)
    data.register(sub)
    causal.register(sub)
    patch.register(sub)
    evaluate.register(sub)
    scan.register(sub)
    for command in sub.choices.values():  # -q also after the command; SUPPRESS keeps the top one
        command.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, message already printed)
        return int(e.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return int(args.func(args) or 0)
    except InterpError as e:
        print(f"interp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interp: interrupted (rerun the same command to resume where it can)", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
