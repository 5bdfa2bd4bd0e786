"""``interp finetune`` and ``interp probe``: finetuned models, probes over activations."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from interp.cli.common import (
    RunRecord,
    add_out_arg,
    at_least,
    nonneg_float,
    positive_float,
    positive_int,
)
from interp.errors import InterpError

__all__ = ["register"]


# ---- finetune -------------------------------------------------------------------------
def _dropout(text: str) -> float:
    value = nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (got {value:g})")
    return value


def _cmd_finetune(args: argparse.Namespace) -> int:
    from interp.finetune import FinetuneConfig, finetune
    from interp.finetune.checks import check_out_dir
    from interp.prompts import read_chat_jsonl

    for d in args.data:
        if not Path(d).is_file():
            raise InterpError(f"--data {d}: no such file")
        if not read_chat_jsonl(d):  # checks every line: one clear error, not a traceback
            raise InterpError(f"--data {d}: no examples")
    config = FinetuneConfig(
        method=args.method,
        rank=args.rank,
        alpha=args.lora_alpha if args.lora_alpha is not None else 2.0 * args.rank,
        dropout=args.dropout,
        target_modules=tuple(args.target_modules) if args.target_modules else None,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_len=args.max_len,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    config.placement()  # a device this machine lacks: one clear line before any loading
    # --out inside the model directory is refused before run.json is written there (--out
    # equal to it is claim_out's "holds the input model")
    if Path(args.out).resolve() != Path(args.model).expanduser().resolve():
        check_out_dir(args.model, Path(args.out), what="--out")
    rec = RunRecord(args, args.out, {f"data[{i}]": d for i, d in enumerate(args.data)})
    try:
        out = finetune(
            args.model, [Path(d) for d in args.data], args.out, config, progress=not args.quiet
        )
    except OSError as e:
        raise InterpError(f"cannot finetune {args.model!r}: {str(e).splitlines()[0]}") from None
    rec.finish(finetune_config=config.to_dict())
    kind = "adapter" if args.method == "lora" else "model"
    print(f"{kind} written to {out}")
    return 0


def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="finetune a model on chat JSONL (LoRA adapter or full weights)",
        description='Finetune MODEL on chat JSONL files ({"messages": [...]} a line; the loss '
        "covers the assistant messages). --method lora writes a PEFT adapter directory "
        "(use it with --adapter); --method full writes a whole model directory.",
    )
    p.add_argument("--model", required=True, help="base model: Hugging Face id or directory")
    p.add_argument("--data", required=True, nargs="+", help="chat JSONL file(s)")
    add_out_arg(p)
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--rank", type=positive_int, default=4, help="LoRA rank (default 4)")
    p.add_argument(
        "--lora-alpha", type=positive_float, default=None, help="LoRA alpha (default 2*rank)"
    )
    p.add_argument("--dropout", type=_dropout, default=0.0, help="LoRA dropout, in [0, 1)")
    p.add_argument(
        "--target-modules", nargs="+", default=None, help="LoRA targets (default: all linear)"
    )
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument(
        "--max-len", type=positive_int, default=256, help="truncate examples to this many tokens"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="training dtype (default: bfloat16 on GPU, float32 on CPU)",
    )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass (less memory, slower)",
    )
    p.set_defaults(func=_cmd_finetune)


# ---- probe ----------------------------------------------------------------------------
def _read_acts(path: str):
    from interp.record.activations import Activations
    from interp.record.store import ActivationStore

    p = Path(path)
    if (p / "manifest.json").is_file():
        store = ActivationStore(p)
        if not store.complete:
            raise InterpError(
                f"{p}: the capture is not complete; rerun `interp capture` to finish it"
            )
        return store.load()
    if (p / "acts.json").is_file():
        return Activations.load(p)
    raise InterpError(f"--acts {path}: neither an activation store nor saved activations")


def _mask(meta, expr: str, what: str):
    try:
        out = meta.eval(expr)
    except Exception as e:  # pandas raises many kinds for a bad expression
        raise InterpError(f"{what} {expr!r}: {e}") from None
    if not pd.api.types.is_bool_dtype(getattr(out, "dtype", None)):
        raise InterpError(f"{what} {expr!r} is not a true/false condition")
    return out.to_numpy()


def _check_folds(meta, labels: str, groups: str | None, cv: int) -> None:
    """--cv must fit the data: every class (or the groups) must fill ``cv`` folds."""
    y = meta[labels]
    counts = y.value_counts()
    if len(counts) != 2:
        raise InterpError(
            f"--label {labels}: a probe needs two label values; got {list(counts.index)}"
        )
    if groups is not None:
        n = meta[groups].nunique()
        if n < cv:
            raise InterpError(
                f"--cv {cv}: only {n} groups in --groups {groups}; use --cv {n} or fewer"
            )
    elif counts.min() < 2:
        raise InterpError(
            f"--label {labels}: the class {counts.idxmin()!r} has only {counts.min()} row; "
            "cross-validation needs at least 2 rows of each class"
        )
    elif counts.min() < cv:
        raise InterpError(
            f"--cv {cv}: the smaller class ({counts.idxmin()!r}) has only {counts.min()} rows; "
            f"use --cv {counts.min()} or fewer"
        )


def _cmd_probe(args: argparse.Namespace) -> int:
    import numpy as np

    from interp.cli.common import headless, save_figure
    from interp.directions import save_directions

    headless()
    from interp.directions.probes import probe_layers
    from interp.plots import plot_probe_accuracy

    acts = _read_acts(args.acts)
    if args.label not in acts.meta.columns:
        raise InterpError(
            f"--label {args.label}: no such metadata column (columns: {list(acts.meta.columns)})"
        )
    labels = args.label
    if args.positive is not None:
        labels = f"{args.label}=={args.positive}"
        acts.meta[labels] = acts.meta[args.label].astype(str) == args.positive
        if acts.meta[labels].all() or not acts.meta[labels].any():
            raise InterpError(f"--positive {args.positive}: every row has the same label")
    groups = args.groups
    if groups is not None and groups not in acts.meta.columns:
        raise InterpError(f"--groups {groups}: no such metadata column")
    if groups is None and acts.meta["prompt"].duplicated().any():
        groups = "prompt"  # several rows per prompt (e.g. --positions all): keep them together
    train = test = None
    if (args.train is None) != (args.test is None):
        raise InterpError("give both --train and --test (or neither)")
    if args.train is not None:
        train = _mask(acts.meta, args.train, "--train")
        test = _mask(acts.meta, args.test, "--test")
    if train is None:
        _check_folds(acts.meta, labels, groups, args.cv)
    index = Path(args.acts) / "manifest.json"  # its shard checksums stand for the store
    index = index if index.is_file() else Path(args.acts) / "acts.json"
    rec = RunRecord(args, args.out, {"acts": str(index)})
    table = probe_layers(
        acts,
        labels,
        cv=args.cv,
        groups=groups,
        train=train,
        test=test,
        C=args.C,
        site=args.site,
        seed=args.seed,
    )
    out = Path(args.out)
    directions = [d for d in table["direction"] if d is not None]
    names = [d.name if d is not None else "" for d in table["direction"]]
    frame = table.drop(columns=["direction"]).assign(direction=names)
    frame.to_csv(out / "probes.csv", index=False)
    if directions:
        save_directions(directions, out / "directions")
    best = int(np.nanargmax(frame["accuracy"].to_numpy()))
    best_dir = table["direction"].iloc[best]
    if best_dir is not None:
        best_dir.save(out / "best_direction")
    fig = plot_probe_accuracy(frame, title=f"probe '{args.label}' by layer")
    save_figure(fig, out / "probe_accuracy.png")
    summary = {
        "best_layer": int(frame["layer"].iloc[best]),
        "best_site": frame["site"].iloc[best],
        "best_accuracy": float(frame["accuracy"].iloc[best]),
        "n_rows": len(acts),
    }
    rec.finish(summary=summary, groups=groups)
    show = ["layer", "site", "accuracy", "accuracy_lo", "accuracy_hi", "auroc"]
    print(frame[show].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(
        f"best: layer {summary['best_layer']} (accuracy {summary['best_accuracy']:.3f}); "
        f"written to {out}"
    )
    return 0


def _add_probe(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="fit a linear probe per captured layer; write accuracy table, directions, figure",
        description="Fit an L2 logistic-regression probe at every site of captured activations "
        "(from `interp capture`) for a two-valued metadata column, with stratified K-fold "
        "cross-validation (grouped with --groups) or a held-out split (--train/--test). "
        "Writes probes.csv, directions.safetensors/.json (one per layer), "
        "best_direction.safetensors/.json and probe_accuracy.png.",
    )
    p.add_argument("--acts", required=True, help="activation store (or saved activations) dir")
    p.add_argument("--label", required=True, help="metadata column holding the two classes")
    p.add_argument(
        "--positive",
        default=None,
        help="binarize --label: rows whose value (as text) equals this are the positive class",
    )
    p.add_argument(
        "--groups",
        default=None,
        help="metadata column: rows of a group share a fold (default: the prompt, when "
        "a prompt has several rows)",
    )
    p.add_argument("--cv", type=at_least(2), default=5, help="folds, >= 2 (default 5)")
    p.add_argument("--train", default=None, help="held-out mode: train rows, e.g. 'year <= 2004'")
    p.add_argument("--test", default=None, help="held-out mode: test rows, e.g. 'year >= 2017'")
    p.add_argument(
        "--C", type=positive_float, default=1.0, help="inverse L2 strength, > 0 (default 1.0)"
    )
    p.add_argument("--site", default=None, help="only sites of this kind (default: all captured)")
    p.add_argument("--seed", type=int, default=0)
    add_out_arg(p)
    p.set_defaults(func=_cmd_probe)


def register(sub) -> None:
    _add_finetune(sub)
    _add_probe(sub)
