"""``interp scan``: from a base model and a finetune alone, what changed, what triggers it
and where it lives (``scan.json``, ``report.md`` and figures in ``--out``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.cli.common import RunRecord
from interp.errors import InterpError

__all__ = ["register"]


def _cmd_scan(args: argparse.Namespace) -> int:
    import torch

    from interp.cli.common import headless
    from interp.models import ModelPair
    from interp.scan import ScanConfig, scan, write

    headless()
    for what, path in (("--base", args.base), ("--finetune", args.finetune)):
        if not Path(path).exists():
            raise InterpError(f"{what} {path}: no such directory")
    if args.budget is not None and args.budget < 1000:
        raise InterpError(f"--budget {args.budget}: a scan needs at least 1000 forward passes")
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = RunRecord(args, args.out, {"base": args.base, "finetune": args.finetune})
    try:
        pair = ModelPair.load(args.base, args.finetune, device=args.device)
    except OSError as e:
        raise InterpError(f"cannot load {args.base} / {args.finetune}: {e}") from None
    budget = ScanConfig().budget if args.budget is None else args.budget
    config = ScanConfig(budget=budget, seed=args.seed, localize=not args.no_localize)
    result = scan(pair.base, pair.finetuned, config, progress=not args.quiet)
    write(result, args.out)
    triggers = [t for t in result.triggers if t["significant"]]
    print(result.behaviour["summary"])
    print(f"{result.forward_passes['total']} forward passes, {result.seconds:.0f} s; "
          f"report: {Path(args.out) / 'report.md'}")  # fmt: skip
    rec.finish(significant=[t["text"] for t in triggers], unconditional=result.unconditional,
               forward_passes=result.forward_passes["total"])  # fmt: skip
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "scan",
        help="find what a finetune changed, what triggers it and where it lives (no hint)",
        description="Compare --finetune (a PEFT adapter or a full finetune directory) with "
        "--base on a generic probe set, search dates, persona / system / format contexts and "
        "free-form tokens for triggers, verify them on held-out prompts against a null of "
        "their family, and localize the top one. Writes scan.json, report.md and figures.",
    )
    p.add_argument("--base", required=True, help="base model directory or Hugging Face id")
    p.add_argument("--finetune", required=True, help="adapter or finetuned model directory")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--budget", type=int, default=None,
                   help="forward passes (sequences x model calls) the scan may spend "
                   "(default: ScanConfig's, 200000)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe split and nulls")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-localize", action="store_true", help="skip patching and ablation")
    p.set_defaults(func=_cmd_scan)
