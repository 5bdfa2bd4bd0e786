"""``interp patch``: activation patching from clean into corrupted prompts."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def _cmd_patch(args: argparse.Namespace) -> int:
    import torch

    from interp.causal.patching import patch
    from interp.cli.common import headless, save_figure
    from interp.metrics.answers import _first_token

    headless()
    from interp.plots import plot_patching

    clean = read_prompts(args.clean)
    corrupt = read_prompts(args.corrupt)
    if len(clean) != len(corrupt):
        raise InterpError(f"--clean has {len(clean)} prompts, --corrupt {len(corrupt)}")
    if clean.is_chat != corrupt.is_chat:
        raise InterpError("--clean and --corrupt must both be chat or both be text")
    positions = parse_positions(args.positions, default="all")
    rec = RunRecord(args, args.out, {"clean": args.clean, "corrupt": args.corrupt})
    model = load(args)
    clean_texts = clean.render(model)
    try:
        ta = torch.tensor([_first_token(model.tokenizer, t, args.answer_a) for t in clean_texts])
        tb = torch.tensor([_first_token(model.tokenizer, t, args.answer_b) for t in clean_texts])
    except ValueError as e:
        raise InterpError(str(e)) from None

    def metric(logits):  # [n, vocab] -> [n]: logit of A's first token minus B's
        rows = torch.arange(logits.shape[0])
        return logits[rows, ta.to(logits.device)] - logits[rows, tb.to(logits.device)]

    result = patch(
        model,
        clean,
        corrupt,
        metric=metric,
        sites=args.sites,
        layers=args.layers,
        positions=positions,
        align=args.align,
        mode=args.mode,
        chunk=args.chunk,
    )
    out = Path(args.out)
    result.save(out, config={"answer_a": args.answer_a, "answer_b": args.answer_b})
    for kind in dict.fromkeys(s.kind for s in result.sites):
        fig = plot_patching(result, kind=kind)
        save_figure(fig, out / f"patching_{kind}.png")
    rec.finish(
        clean_value=result.clean_value,
        corrupt_value=result.corrupt_value,
        metric="logit(answer_a) - logit(answer_b), first token, last position",
    )
    print(
        f"logit diff clean {result.clean_value:.4f}, corrupt {result.corrupt_value:.4f}; "
        f"{len(result.sites)} sites x {len(result.positions)} columns (aligned by "
        f"{result.align}) written to {out}"
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "patch",
        help="activation patching from clean into corrupted prompts; table + heatmaps",
        description="Run each corrupted prompt with one activation (site x position) taken from "
        "its clean partner and record the logit difference between the first tokens of "
        "--answer-a and --answer-b at the last position. Clean and corrupt prompts must "
        "tokenize to the same length pairwise (pairs may differ from each other); positions "
        "count in each prompt's own tokens. Writes patching.csv (the aligned aggregate), "
        "patching_per_prompt.csv (each pair's own map), patching.json and one heatmap per "
        "site kind (patching_<kind>.png).",
    )
    add_model_args(p)
    p.add_argument("--clean", required=True, help="clean prompts (.txt, .csv or .jsonl)")
    p.add_argument("--corrupt", required=True, help="corrupted prompts, paired line by line")
    p.add_argument("--answer-a", required=True, help="answer the clean prompts favour")
    p.add_argument("--answer-b", required=True, help="answer the corrupted prompts favour")
    p.add_argument("--sites", nargs="+", default=["resid_pre"], help="site kinds (resid_pre)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="layers (default: all)")
    p.add_argument(
        "--positions",
        nargs="+",
        default=None,
        help="'all' (default), 'last', token indices in each prompt (negative from the end) "
        "or a tag name of the clean prompts",
    )
    p.add_argument(
        "--align",
        default=None,
        help="how the aggregate map lines pairs up: 'start', 'end' or a tag name of the clean "
        "prompts (default: 'start' if all pairs have one length, else 'end')",
    )
    p.add_argument("--mode", choices=["exact", "attribution"], default="exact")
    p.add_argument(
        "--chunk",
        type=positive_int,
        default=None,
        help="positions per batched exact run (default: from a memory budget)",
    )
    add_out_arg(p)
    p.set_defaults(func=_cmd_patch)
