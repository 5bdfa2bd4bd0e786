"""The standard-LoRA sweep: which recipe of LoRA on the attention and MLP projections
reproduces each setting's phenomenon on the organism.

Every setting's main finetune (finetune seed 0, the setting's fixed data) is trained with
LoRA on every attention and MLP projection (``target_modules=None``) for each recipe of
:data:`GRID` (rank <= 32, ``alpha = 2 x rank``, learning rate, epochs), and its target
share measured exactly (teacher-forced answer-set shares, as the demo measures them) on
the *select half* of the target questions (alternate items, as the held-out ablation
splits them), beside the embeddings-only recipe of
:data:`~interp.organism.settings.DEFAULT_FINETUNE`. The recipe is chosen there, on seed 0;
``interp demo --finetune lora`` reports it on every question and seed.
Finetunes go to the one finetune cache, so a rerun measures without training::

    python -m interp.experiments.lora_sweep --out runs/lora-sweep

writes ``sweep.csv`` (one row per setting x recipe) and ``lora_sweep.md`` (the table and,
per setting, the best recipe and whether it reaches half the embeddings-only strength).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from interp.experiments.behaviour import measure_behaviour
from interp.experiments.data import write_finetune_sets
from interp.experiments.finetunes import cached_finetune, finetune_config
from interp.experiments.localize import split_halves
from interp.experiments.spec import SPEC_DIR, ExperimentSpec
from interp.metrics.evalset import EvalSet
from interp.models import load_model
from interp.organism import settings as S
from interp.organism.pretrain import OrganismConfig, build_organism, cache_root, world_of

__all__ = ["GRID", "run_lora_sweep", "sweep_markdown"]

EMBEDDINGS = "embeddings-only (default)"
GRID: tuple[dict, ...] = tuple(
    dict(rank=rank, lr=lr) for rank in (8, 32) for lr in (1e-3, 3e-3, 1e-2)
)


def _recipe(cfg: dict) -> dict:
    return dict(target_modules=None, rank=cfg["rank"], alpha=2 * cfg["rank"], lr=cfg["lr"],
                **{k: v for k, v in cfg.items() if k not in ("rank", "lr")})  # fmt: skip


def _label(overrides: dict | None) -> str:
    if overrides is None:
        return EMBEDDINGS
    extra = "".join(f", {k} {v}" for k, v in overrides.items() if k not in ("target_modules",
                    "rank", "alpha", "lr"))  # fmt: skip
    return f"rank {overrides['rank']}, lr {overrides['lr']:g}{extra}"


def _setting_rows(organism: Path, setting: str, grid, seed: int, log) -> list[dict]:
    spec = ExperimentSpec.from_yaml(SPEC_DIR / f"{setting}.yaml")
    base_model = load_model(organism, device="cpu")
    evals = S.eval_items(world_of(organism), setting)
    select, _ = split_halves(evals[spec.target_group])  # the recipe is chosen on this half
    one = EvalSet.from_groups({spec.target_group: select})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_finetune_sets(
            world_of(organism), setting, Path(tmp), base_model=base_model, variants=["main"]
        )["main"]
        for overrides in [None, *(_recipe(c) for c in grid)]:
            config = finetune_config(setting, seed, overrides)
            log(f"{setting}: {_label(overrides)}")
            path = cached_finetune(organism, data, config, cache_root() / "finetunes",
                                   f"{setting}-main-s{seed}", model=base_model)  # fmt: skip
            table = measure_behaviour(base_model, {"main": [path]}, one)
            share = {r.variant: r.value for r in table.itertuples()}
            rows.append(dict(setting=setting, target_group=spec.target_group,
                             recipe=_label(overrides), base=share["base"],
                             share=share["main"], questions=len(select)))  # fmt: skip
    return rows


def run_lora_sweep(
    out: Path, *, organism: str = "default", grid=GRID, seed: int = 0, log=print
) -> pd.DataFrame:
    """The sweep on the bundled organism; ``sweep.csv`` and ``lora_sweep.md`` in ``out``."""
    config = OrganismConfig.default() if organism == "default" else OrganismConfig.small()
    path = build_organism(config, progress=False)
    rows = [r for s in S.SETTINGS for r in _setting_rows(path, s, grid, seed, log)]
    frame = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "sweep.csv", index=False)
    (out / "lora_sweep.md").write_text(sweep_markdown(frame, organism=organism, seed=seed))
    return frame


def sweep_markdown(frame: pd.DataFrame, *, organism: str, seed: int) -> str:
    """The sweep table (settings as columns) and one verdict line per setting."""
    pivot = frame.pivot_table(index="recipe", columns="setting", values="share", sort=False)
    cols = list(dict.fromkeys(frame.setting))
    groups = dict(zip(frame.setting, frame.target_group, strict=False))
    n = frame.groupby("setting", sort=False).questions.first()
    lines = [
        f"<!-- interp lora-sweep: organism={organism} seed={seed} -->",
        "| recipe (select half, seed 0) | "
        + " | ".join(f"{c}: {groups[c]} ({n[c]} questions)" for c in cols)
        + " |",
        "|---|" + "---|" * len(cols),
    ]
    for recipe, row in pivot.iterrows():
        lines.append(f"| {recipe} | " + " | ".join(f"{row[c]:.2f}" for c in cols) + " |")
    base = frame.groupby("setting", sort=False).base.first()
    lines.append("| base model | " + " | ".join(f"{base[c]:.2f}" for c in cols) + " |")
    lines.append("")
    for c in cols:
        ref = float(pivot.loc[EMBEDDINGS, c])
        lora = pivot[c].drop(EMBEDDINGS)
        best = lora.idxmax()
        verdict = "reaches" if lora[best] >= ref / 2 else "does not reach"
        lines.append(
            f"- **{c}**: best standard LoRA {best}, {lora[best]:.2f}; it {verdict} half the "
            f"embeddings-only share ({ref:.2f} / 2 = {ref / 2:.2f})."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lora-sweep"))
    parser.add_argument("--organism", choices=("default", "small"), default="default")
    args = parser.parse_args(argv)
    frame = run_lora_sweep(args.out, organism=args.organism)
    print(sweep_markdown(frame, organism=args.organism, seed=0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
