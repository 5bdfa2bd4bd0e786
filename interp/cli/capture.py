"""``interp capture``: record activations into a resumable store, in one process or parts."""

from __future__ import annotations

import argparse

from interp.cli.common import (
    RunRecord,
    add_model_args,
    add_out_arg,
    load,
    parse_positions,
    positive_int,
    read_prompts,
)
from interp.errors import InterpError

__all__ = ["register"]


def _cmd_capture(args: argparse.Namespace) -> int:
    import torch

    import interp

    prompts = read_prompts(args.prompts, args.tag)
    positions = parse_positions(args.positions)
    rec = RunRecord(args, args.out, {"prompts": args.prompts})
    kwargs = {
        "sites": args.sites,
        "layers": args.layers,
        "positions": positions,
        "batch_size": args.batch_size,
        "dtype": getattr(torch, args.store_dtype),
    }
    if args.devices:
        if args.device is not None or args.part is not None:
            raise InterpError("--devices starts one process per device: drop --device / --part")
        from interp.record.parallel import capture_parallel

        store = capture_parallel(
            args.model, prompts, devices=args.devices, to=args.out, adapter=args.adapter,
            model_dtype=args.dtype, progress=not args.quiet, **kwargs,
        )  # fmt: skip
    else:
        model = load(args)
        store = interp.capture(
            model, prompts, to=args.out, part=args.part, progress=not args.quiet, **kwargs
        )
    if not store.complete:  # one part of several: the others are still writing
        rec.finish(n_prompts=len(prompts), part=list(args.part))
        print(f"part {args.part[0]} of {args.part[1]} done; the store completes with the last part")
        return 0
    assert isinstance(store, interp.ActivationStore)  # capture(to=...) returns the store
    m = store.manifest
    rows = sum(s["rows"] for s in m["shards"])
    rec.finish(
        n_prompts=len(prompts),
        rows=rows,
        sites=m["request"]["sites"],
        metadata_columns=list(prompts.meta.columns),
    )
    print(f"{store}: {rows} rows x {len(m['request']['sites'])} sites")
    return 0


def _add_capture(sub) -> None:
    p = sub.add_parser(
        "capture",
        help="record activations to an on-disk store (resumable)",
        description="Capture activations of MODEL on PROMPTS into the store OUT; rerunning "
        "after an interruption resumes. PROMPTS: a .txt file (one prompt a line), a .csv "
        "table with a 'prompt' column, or .jsonl rows with 'messages' (chat, rendered "
        "with the model's chat template; a final assistant message is dropped) or "
        "'prompt'. Every other column or key is kept as metadata for `interp probe`.",
    )
    add_model_args(p)
    p.add_argument("--prompts", required=True, help="prompt file (.txt, .csv or .jsonl)")
    p.add_argument(
        "--sites", nargs="+", default=["resid_post"], help="site kinds or full names (resid_post)"
    )
    p.add_argument("--layers", nargs="+", type=int, default=None, help="layers (default: all)")
    p.add_argument(
        "--positions",
        nargs="+",
        default=None,
        help="'last' (default), 'all', token indices, or a tag name (see --tag)",
    )
    p.add_argument(
        "--tag",
        nargs="+",
        default=None,
        metavar="NAME[=COLUMN]",
        help="tag each prompt at the text of a metadata column (e.g. --tag year)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--store-dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument(
        "--devices",
        nargs="+",
        default=None,
        metavar="DEV",
        help="data parallel: one process per device (cuda:0 cuda:1 ...), all writing OUT",
    )
    p.add_argument(
        "--part",
        type=_part,
        default=None,
        metavar="RANK/WORLD",
        help="this process writes part RANK of WORLD (for torchrun or a Slurm array)",
    )
    add_out_arg(p)
    p.set_defaults(func=_cmd_capture)


def _part(text: str) -> tuple[int, int]:
    try:
        rank, world = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not RANK/WORLD, e.g. 0/4") from None
    if not 0 <= rank < world:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= RANK < WORLD")
    return rank, world


def register(sub) -> None:
    _add_capture(sub)
