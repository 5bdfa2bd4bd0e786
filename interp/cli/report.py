"""``interp report RUN_DIR``: one self-contained ``report.html`` for a run directory."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _cmd_report(args: argparse.Namespace) -> int:
    from interp.report import write_report

    if args.max_rows < 1:
        from interp.errors import InterpError

        raise InterpError(f"--max-rows must be at least 1, got {args.max_rows}")
    path = write_report(args.run_dir, args.out, max_rows=args.max_rows)
    print(f"written to {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained report.html for a run directory",
        description="Read RUN_DIR (an experiment, `interp demo`'s output, or any command's "
        "--out with its run.json) and write one HTML page: the question, findings in words "
        "generated from the results, the headline tables with intervals, every figure "
        "inline, every CSV table and the provenance (command, versions, seeds, hashes). "
        "The page needs no network and no other file.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory that interp wrote")
    p.add_argument("--out", default=None, help="where to write (default: RUN_DIR/report.html)")
    p.add_argument(
        "--max-rows", type=int, default=50, help="rows shown per CSV table (default: 50)"
    )
    p.set_defaults(func=_cmd_report)
