"""The ``interp`` command line.

``interp demo`` runs the main job on the bundled model organism;
``interp capture`` records activations of any Hugging Face model (or the organism) to an
on-disk store. Run ``interp COMMAND --help`` for the options of each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_capture(args: argparse.Namespace) -> int:
    import interp
    from interp.prompts import PromptSet, read_chat_jsonl

    model = interp.load_model(args.model, adapter=args.adapter, device=args.device)
    path = Path(args.prompts)
    if path.suffix == ".jsonl":
        chats = read_chat_jsonl(path)
        # the prompt is every message before the last assistant turn
        prompts = PromptSet([c[:-1] if c[-1]["role"] == "assistant" else c for c in chats])
    else:
        prompts = PromptSet([line for line in path.read_text().splitlines() if line.strip()])
    store = interp.capture(
        model,
        prompts,
        sites=args.sites,
        layers=args.layers,
        positions=args.positions,
        batch_size=args.batch_size,
        to=args.out,
    )
    print(store)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from interp.demo import run_demo

    return run_demo(out=Path(args.out), quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Locate learned triggers inside finetuned language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job on the bundled model organism")
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="the small organism (about a minute)")
    demo.set_defaults(func=_cmd_demo)

    cap = sub.add_parser(
        "capture",
        help="record activations to an on-disk store (resumable)",
        description="Capture activations of MODEL on PROMPTS (a text file, one prompt a line, "
        "or a chat JSONL file) into OUT; rerunning after an interruption resumes.",
    )
    cap.add_argument("--model", required=True, help="Hugging Face id or local directory")
    cap.add_argument("--adapter", default=None, help="PEFT adapter directory")
    cap.add_argument("--prompts", required=True, help="text file (one prompt a line) or chat JSONL")
    cap.add_argument("--sites", nargs="+", default=["resid_post"], help="site kinds or full names")
    cap.add_argument("--layers", nargs="+", type=int, default=None, help="layers (default: all)")
    cap.add_argument("--positions", default="last", help="'last', 'all' or a tag name")
    cap.add_argument("--batch-size", type=int, default=16)
    cap.add_argument("--device", default=None)
    cap.add_argument("--out", required=True, help="store directory")
    cap.set_defaults(func=_cmd_capture)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
