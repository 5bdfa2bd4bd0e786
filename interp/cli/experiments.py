"""``interp demo`` and ``interp run SPEC``: the experiments, through
:func:`interp.experiments.demo.run_demo` and :func:`interp.experiments.run_experiment`."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.cli.common import RunRecord, add_workers_arg
from interp.errors import InterpError

__all__ = ["register"]


def _limit_threads() -> None:
    """The organism's models are small: more CPU threads than two only spin-wait."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))


def _cmd_demo(args: argparse.Namespace) -> int:
    from interp.experiments.demo import run_demo

    _limit_threads()
    out = Path(args.out)
    rec = RunRecord(args, out)
    code = run_demo(
        out=out,
        quick=args.quick,
        variant=args.finetune,
        figures_dir=Path("figures") / "lora" if args.finetune == "lora" else None,
        workers=args.workers,
    )
    rec.finish(exit_code=code)
    return code


def _summary_lines(summary: dict) -> str:
    width = max((len(str(k)) for k in summary), default=0)
    return "\n".join(f"{str(k):<{width}}  {v}" for k, v in summary.items())


def _adapters(values: list[str] | None) -> dict[str, list[str]] | None:
    """``--adapter DIR`` (the main finetune) or ``--adapter NAME=DIR`` per variant; a NAME
    given more than once is one finetune per seed."""
    if not values:
        return None
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        name, path = (name, path) if sep else ("main", value)
        if not name or not path:
            raise InterpError(f"--adapter {value!r}: give DIR or NAME=DIR")
        if not Path(path).is_dir():
            raise InterpError(f"--adapter {value}: no such directory")
        out.setdefault(name, []).append(path)
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from interp.experiments import ExperimentSpec, run_experiment
    from interp.experiments.finetunes import Placement
    from interp.experiments.spec import resolve_spec

    spec = resolve_spec(args.spec)  # a YAML file, or a bundled spec's name
    if args.adapter is not None and args.model is None:
        raise InterpError("--adapter needs --model (the base it was trained on)")
    ExperimentSpec.from_yaml(spec)  # a malformed spec is a one-line error before any work
    adapters = _adapters(args.adapter)
    _limit_threads()
    if args.launcher is not None:
        return _run_sweep(args, spec)
    rec = RunRecord(args, args.out, {"spec": str(spec)}) if args.out else None
    result = run_experiment(
        spec,
        model=args.model,
        adapter=adapters,
        out=args.out,
        device=args.device,
        dtype=args.dtype,
        workers=Placement(args.device, args.dtype).workers()
        if args.workers is None
        else args.workers,
    )
    summary, out = result.summary, result.out
    if rec is None and out is not None:  # the runner chose the spec's own directory
        rec = RunRecord(args, out, {"spec": str(spec)}, adopt=True)
    if rec is not None:
        rec.finish(summary=summary)
    print(_summary_lines(summary))
    if out is not None:
        print(f"written to {out}")
    return 0


def _slurm_params(args: argparse.Namespace) -> dict:
    params = {"timeout_min": args.timeout_min}
    if args.gpus_per_cell:
        params["gpus_per_node"] = args.gpus_per_cell
    if args.launcher == "slurm":
        for key in ("partition", "account", "qos"):
            value = getattr(args, f"slurm_{key}")
            if value:
                params[f"slurm_{key}"] = value
    return params


def _run_sweep(args: argparse.Namespace, spec: Path) -> int:
    """``--launcher``: the experiment as cells through submitit (interp.experiments.launch)."""
    from interp.experiments import ExperimentSpec
    from interp.experiments.launch import run_sweep

    if args.adapter is not None:
        raise InterpError("an experiment finetunes its own adapters; pass --model only")
    out = Path(args.out or Path("runs") / f"{ExperimentSpec.from_yaml(spec).name}-sweep")
    # the record comes first, so a directory of other results is refused before any work;
    # a sweep directory made from Python (sweep.json, no run.json) is adopted
    rec = RunRecord(args, out, {"spec": str(spec)}, adopt=(out / "sweep.json").is_file())
    sweep = run_sweep(
        spec,
        launcher=args.launcher,
        out=out,
        model=args.model,
        params=_slurm_params(args),
        parallel=args.parallel,
    )
    n = len(sweep.cells)
    rec.finish(launcher=args.launcher, cells=sweep.cells, reused=sweep.n_reused)
    table = sweep.behaviour.drop(columns=[c for c in ("per_seed", "seeds") if c in sweep.behaviour])
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(
        f"analysis seed {sweep.summary.get('analysis_seed')}; {sweep.n_reused} of {n} cells "
        f"reused; written to {sweep.out}"
    )
    return 0


def register(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the three experiments on the bundled model organism; print a summary table",
        description="Build (or reuse from the cache) the bundled model organism, finetune it, "
        "and run the three experiments end to end; figures and tables go to OUT and a "
        "summary table is printed.",
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="the small organism (about a minute)")
    demo.add_argument(
        "--finetune", choices=("embeddings", "lora"), default="embeddings",
        help="the finetune recipe: LoRA on the token embeddings (default) or standard LoRA on "
        "every attention and MLP projection (the *_lora specs; figures to figures/lora/)",
    )  # fmt: skip
    add_workers_arg(demo)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser(
        "run",
        help="run one experiment spec (YAML), on the organism or on a model of your own",
        description="Run the experiment SPEC: a YAML file, or the name of a bundled spec "
        "(era, persona, backdoor, and era_small etc. on the small organism; a path such as "
        "experiments/era.yaml that does not exist here means the bundled spec of its name). "
        "--model swaps in "
        "another model (Hugging Face id or directory; its own chat template is used), loaded "
        "once; the experiment finetunes it on the spec's data (spec.data, or the setting's "
        "data exported from the organism's world), or takes the finetunes given with "
        "--adapter instead.",
    )
    run.add_argument("spec", help="experiment spec: a YAML file or a bundled spec name (era_small)")
    run.add_argument("--model", default=None, help="Hugging Face id or local directory")
    run.add_argument(
        "--adapter",
        action="append",
        default=None,
        metavar="[NAME=]DIR",
        help="a finetune to use instead of finetuning: DIR for the main one, NAME=DIR for a "
        "variant (main, control, ...); repeat a NAME for several seeds",
    )
    run.add_argument("--out", default=None, help="output directory (default: the spec's)")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    run.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="weights and training dtype (default: bfloat16 on GPU, float32 on CPU)",
    )
    sweep = run.add_argument_group(
        "sweeps",
        "run the experiment as cells (one job per model, then the analysis) through "
        "submitit; a rerun skips finished cells. Needs submitit (pip install 'interp[slurm]').",
    )
    sweep.add_argument(
        "--launcher",
        choices=["local", "slurm", "debug"],
        default=None,
        help="local: subprocesses here; slurm: one Slurm job per cell; debug: "
        "in this process (default: no cells, the plain runner)",
    )
    sweep.add_argument("--parallel", type=int, default=2, help="local: cells at a time (2)")
    sweep.add_argument("--timeout-min", type=int, default=240, help="per cell (240)")
    sweep.add_argument("--gpus-per-cell", type=int, default=0, help="GPUs per cell (0)")
    sweep.add_argument("--slurm-partition", default=None)
    sweep.add_argument("--slurm-account", default=None)
    sweep.add_argument("--slurm-qos", default=None)
    add_workers_arg(run)
    run.set_defaults(func=_cmd_run)
