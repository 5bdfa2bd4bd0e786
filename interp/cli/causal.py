"""``interp steer`` and ``interp ablate``: does adding or removing the direction matter?

Both sample generations (and, given two answer sets, teacher-forced answer shares)
without any intervention and under each intervention, into one table, so the comparison
is in the file.
"""

from __future__ import annotations

import argparse
import math
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from interp.cli.common import (
    RunRecord,
    add_model_args,
    add_out_arg,
    finite_float,
    load,
    nonneg_float,
    nonneg_int,
    parse_positions,
    positive_int,
    read_answers,
    read_prompts,
    read_target,
)
from interp.errors import InterpError
from interp.sites import kind_of

__all__ = ["register"]


# ---- shared by steer and ablate -------------------------------------------------------
def _add_measure_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", required=True, help="prompt file (.txt, .csv or .jsonl)")
    g = p.add_argument_group("generations")
    g.add_argument("--max-new-tokens", type=positive_int, default=24)
    g.add_argument(
        "--samples", type=positive_int, default=1, help="completions per prompt (default 1)"
    )
    g.add_argument(
        "--temperature", type=nonneg_float, default=0.0, help="0 = greedy (default); >0 samples"
    )
    g.add_argument(
        "--seed", type=int, default=0, help="sampling seed (the same in every condition)"
    )
    g.add_argument("--no-generate", action="store_true", help="skip generations (shares only)")
    g.add_argument("--batch-size", type=positive_int, default=32)
    a = p.add_argument_group("answer shares (teacher-forced, exact)")
    a.add_argument(
        "--answers-a", nargs="+", default=None, help="answer set A (strings, or @FILE one a line)"
    )
    a.add_argument("--answers-b", nargs="+", default=None, help="answer set B (same forms)")


def _measure(model, prompts, args, answers, condition: dict) -> tuple[list[dict], list[dict]]:
    """Generations and answer shares of ``model`` as it runs now (inside any intervention)."""
    from interp.metrics import answer_share, sample

    gens, shares = [], []
    if not args.no_generate:
        s = sample(
            model,
            prompts.prompts,
            k=args.samples,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
            batch_size=args.batch_size,
        )
        for i, comps in enumerate(s.completions):
            for j, c in enumerate(comps):
                gens.append({**condition, "prompt_index": i, "sample_index": j, "completion": c})
    if answers is not None:
        a, b = answers
        values = answer_share(model, prompts.prompts, a, b, batch_size=args.batch_size)
        for i, v in enumerate(values.tolist()):
            shares.append({**condition, "prompt_index": i, "share": v})
    return gens, shares


def _answers(args) -> tuple[list[str], list[str]] | None:
    a = read_answers(args.answers_a, "--answers-a")
    b = read_answers(args.answers_b, "--answers-b")
    if (a is None) != (b is None):
        raise InterpError("give both --answers-a and --answers-b (or neither)")
    if args.no_generate and a is None:
        raise InterpError("--no-generate without --answers-a/--answers-b leaves nothing to measure")
    return None if a is None else (a, b)


def _write_tables(out: Path, prompts, texts, gens, shares, keys: list[str]) -> dict:
    """generations.csv, shares.csv and summary.csv (mean share per condition, 95% CI)."""
    from interp.metrics.stats import mean_ci

    meta = prompts.meta.copy()
    taken = {"prompt", "prompt_index", "completion", "share", "sample_index", *keys}
    meta.columns = [f"meta_{c}" if c in taken else c for c in meta.columns]
    meta.insert(0, "prompt", texts)
    meta.insert(0, "prompt_index", range(len(texts)))
    summary: dict = {}
    if gens:
        g = pd.DataFrame(gens).merge(meta, on="prompt_index", how="left")
        g.to_csv(out / "generations.csv", index=False)
    if shares:
        s = pd.DataFrame(shares)
        s.merge(meta, on="prompt_index", how="left").to_csv(out / "shares.csv", index=False)
        rows = []
        for key, part in s.groupby(keys, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            est = mean_ci(part["share"].tolist())
            rows.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "share": est.value,
                    "share_lo": est.lo,
                    "share_hi": est.hi,
                    "n": est.n,
                }
            )
        table = pd.DataFrame(rows)
        table.to_csv(out / "summary.csv", index=False)
        summary = {"shares": rows}
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return summary


# ---- steer ----------------------------------------------------------------------------
def _scale(model, args, direction, texts, layers):
    from interp.causal.interventions import residual_norm

    if args.scale == "unit":
        return None, 1.0
    if args.scale == "direction":
        return float(direction.scale), float(direction.scale)
    if args.scale == "residual":
        kind = kind_of(args.site or direction.site or "resid_post")
        norms = residual_norm(model, texts, layers=layers, site=kind)
        return norms, norms
    try:
        k = float(args.scale)
    except ValueError:
        raise InterpError(f"--scale {args.scale}: unit, residual, direction or a number") from None
    if not math.isfinite(k) or k <= 0:
        raise InterpError(f"--scale {args.scale}: a number must be finite and > 0")
    return k, k


def _cmd_steer(args: argparse.Namespace) -> int:
    from interp.causal.interventions import steer

    prompts = read_prompts(args.prompts)
    answers = _answers(args)
    direction = read_target(args.direction, args.layer)
    if not hasattr(direction, "scale"):
        raise InterpError(f"{args.direction} is a subspace; steer needs one direction")
    positions = parse_positions(args.positions, default="all")
    rec = RunRecord(args, args.out, {"prompts": args.prompts, "direction": args.direction})
    model = load(args)
    texts = prompts.render(model)
    layers = args.layers if args.layers is not None else direction.layer
    if layers is None:
        raise InterpError("the direction carries no layer; say where to steer with --layers")
    scale, shown = _scale(model, args, direction, texts, layers)
    gens, shares = [], []
    conditions = [("baseline", 0.0)] + [("steer", float(a)) for a in args.alpha]
    for name, alpha in tqdm(conditions, desc="steer", disable=args.quiet):
        ctx = (
            nullcontext()
            if name == "baseline"
            else steer(
                model,
                direction,
                alpha=alpha,
                layers=layers,
                site=args.site,
                positions=positions,
                scale=scale,
            )
        )
        with ctx:
            g, s = _measure(model, prompts, args, answers, {"condition": name, "alpha": alpha})
        gens += g
        shares += s
    out = Path(args.out)
    summary = _write_tables(out, prompts, texts, gens, shares, ["condition", "alpha"])
    rec.finish(direction=direction.to_dict(), layers=layers, scale=shown, summary=summary)
    print(f"written to {out}")
    return 0


def _add_steer(sub) -> None:
    p = sub.add_parser(
        "steer",
        help="add a direction while the model runs; generations and answer shares vs baseline",
        description="Add ALPHA * SCALE * DIRECTION to the residual stream (at the direction's "
        "own site and layer unless --layers/--site say otherwise) and record generations "
        "(generations.csv) and, with --answers-a/--answers-b, the probability share of "
        "answer set A over A+B (shares.csv, summary.csv), for the unsteered model "
        "(condition 'baseline') and every alpha.",
    )
    add_model_args(p)
    p.add_argument("--direction", required=True, help="direction file (from `interp probe` ...)")
    p.add_argument("--layer", type=int, default=None, help="pick this layer's direction of a file")
    p.add_argument(
        "--alpha", type=finite_float, nargs="+", required=True, help="steering strengths"
    )
    p.add_argument("--layers", type=int, nargs="+", default=None, help="where (default: its layer)")
    p.add_argument("--site", default=None, help="site kind (default: the direction's site)")
    p.add_argument(
        "--scale",
        default="unit",
        help="alpha multiplies: 'unit' (1, default), 'residual' (mean residual norm per "
        "layer on the prompts), 'direction' (the direction's raw norm) or a number",
    )
    p.add_argument(
        "--positions", nargs="+", default=None, help="'all' (default), 'last' or indices"
    )
    _add_measure_args(p)
    add_out_arg(p)
    p.set_defaults(func=_cmd_steer)


# ---- ablate ---------------------------------------------------------------------------
def _cmd_ablate(args: argparse.Namespace) -> int:
    from interp.causal.interventions import ablate, random_like

    prompts = read_prompts(args.prompts)
    answers = _answers(args)
    target = read_target(args.direction, args.layer)
    positions = parse_positions(args.positions, default="all")
    if args.mode in ("mean", "resample") and args.reference is None:
        raise InterpError(f"--mode {args.mode} needs --reference FILE (prompts to draw from)")
    inputs = {"prompts": args.prompts, "direction": args.direction, "reference": args.reference}
    rec = RunRecord(args, args.out, inputs)
    model = load(args)
    texts = prompts.render(model)
    reference = read_prompts(args.reference).render(model) if args.reference else None
    layers = args.layers if args.layers is not None else target.layer
    if layers is None:
        raise InterpError("the direction carries no layer; say where to ablate with --layers")
    conditions = [("baseline", None), ("ablate", target)]
    conditions += [(f"random-{i}", random_like(target, seed=i)) for i in range(args.random)]
    gens, shares = [], []
    for name, what in tqdm(conditions, desc="ablate", disable=args.quiet):
        ctx = (
            nullcontext()
            if what is None
            else ablate(
                model,
                what,
                layers=layers,
                site=args.site,
                positions=positions,
                mode=args.mode,
                reference=reference,
            )
        )
        with ctx:
            g, s = _measure(model, prompts, args, answers, {"condition": name})
        gens += g
        shares += s
    out = Path(args.out)
    summary = _write_tables(out, prompts, texts, gens, shares, ["condition"])
    rec.finish(target=target.to_dict(), layers=layers, summary=summary)
    print(f"written to {out}")
    return 0


def _add_ablate(sub) -> None:
    p = sub.add_parser(
        "ablate",
        help="remove a direction or subspace while the model runs; compare with baseline",
        description="Project a direction (or subspace) out of the residual stream, set its "
        "projection to the mean over --reference prompts (--mode mean) or to a random "
        "reference token's (--mode resample), or zero the site (--mode zero), and record "
        "generations and answer shares for the baseline, the ablation and --random N "
        "norm-matched random controls.",
    )
    add_model_args(p)
    p.add_argument("--direction", required=True, help="direction or subspace file")
    p.add_argument("--layer", type=int, default=None, help="pick this layer's direction of a file")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="where (default: its layer)")
    p.add_argument("--site", default=None, help="site kind (default: the direction's site)")
    p.add_argument("--mode", choices=["project", "mean", "resample", "zero"], default="project")
    p.add_argument("--reference", default=None, help="prompt file for --mode mean / resample")
    p.add_argument(
        "--random", type=nonneg_int, default=0, help="number of random controls (default 0)"
    )
    p.add_argument(
        "--positions", nargs="+", default=None, help="'all' (default), 'last' or indices"
    )
    _add_measure_args(p)
    add_out_arg(p)
    p.set_defaults(func=_cmd_ablate)


def register(sub) -> None:
    _add_steer(sub)
    _add_ablate(sub)
