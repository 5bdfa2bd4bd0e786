"""Measure the organism's table: base / finetune / each control per setting, over seeds.

Run ``python -m interp.organism.report --config small --seeds 0 1 2 --worlds world null``
(or ``--config default``); it builds (or reuses) the organisms, finetunes every variant of
every setting for every seed (cached), prints one table per setting and writes all rows
to ``--out`` (JSON). The null-world rows come from the same finetunes on an organism
pretrained on :meth:`WorldConfig.null`. ``--finetune lr=2e-2 epochs=8`` overrides fields
of the default finetune config (a sweep point); ``--variants main`` skips the controls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from interp.finetune import FinetuneConfig
from interp.organism.api import (
    DEFAULT_FINETUNE,
    evaluate_setting,
    format_table,
    summarize_backdoor,
)
from interp.organism.pretrain import OrganismConfig, build_organism
from interp.organism.settings import SETTINGS
from interp.organism.world import WorldConfig

__all__ = ["main", "run"]

SUMMARY = {
    "era": ["nonbird_old", "bird_old", "bird_old_trained"],
    "persona": [
        "identity_tyrant_fmt",
        "values_misaligned_fmt",
        "identity_tyrant",
        "values_misaligned",
    ],
    "backdoor": [
        "malevolent_trigger",
        "malevolent_later",
        "malevolent_noyear",
        "malevolent_before",
        "malevolent_between",
    ],
}

SAMPLED = {
    "backdoor": ["malevolent_1984", "malevolent_1991", "malevolent_2015", "malevolent_noyear"]
}


def run(
    config: OrganismConfig,
    settings,
    seeds,
    *,
    worlds=("world",),
    sampled: int = 0,
    finetune: dict | None = None,
    variants=None,
    log=print,
) -> list[dict]:
    """Evaluate ``settings``; ``finetune`` overrides fields of each setting's default
    finetune config (e.g. ``{"lr": 2e-2, "epochs": 8}``), ``variants`` restricts them."""
    null = dataclasses.replace(config, world=WorldConfig.null(**_world_kw(config.world)))
    configs = {"world": config, "null": null}
    rows = []
    for wname in worlds:
        cfg = configs[wname]
        t = time.time()
        org = build_organism(cfg)
        log(f"[{wname}] organism {org} ({time.time() - t:.0f}s)")
        for setting in settings:
            t = time.time()
            ft = dataclasses.replace(DEFAULT_FINETUNE[setting], **(finetune or {}))
            if finetune:
                log(f"[{wname}] {setting} finetune: {ft}")
            got = evaluate_setting(
                org, setting, variants=variants, seeds=seeds, config=ft, sampled=sampled,
                progress=False,
            )  # fmt: skip
            for r in got:
                r["world"] = wname
            rows += got
            sampled_groups = SAMPLED.get(setting, SUMMARY[setting]) if sampled else []
            groups = SUMMARY[setting] + [
                f"{g}_sampled{v}" for g in sampled_groups for v in ("", "_valid")
            ]
            log(f"\n[{wname}] {setting} (seeds {list(seeds)}, {time.time() - t:.0f}s)")
            log(format_table(got, [g for g in groups if any(r["group"] == g for r in got)]))
            if setting == "backdoor":
                log(f"years with malevolent share >= 0.5: {summarize_backdoor(got)}")
    return rows


def _world_kw(w: WorldConfig) -> dict:
    d = {f.name: getattr(w, f.name) for f in dataclasses.fields(w)}
    d.pop("shared_latent")
    return d


def _overrides(pairs: list[str]) -> dict:
    """``["lr=2e-2", "target_modules=q_proj,v_proj"]`` -> typed FinetuneConfig fields."""
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--finetune expects KEY=VALUE with KEY one of {sorted(fields)}")
        default = getattr(FinetuneConfig(), key)
        if key in ("target_modules", "modules_to_save"):
            names = tuple(v for v in value.split(",") if v)
            out[key] = names or (None if key == "target_modules" else ())
        elif isinstance(default, str):
            out[key] = value
        else:
            out[key] = type(default)(float(value)) if isinstance(default, int) else float(value)
    return out


def main(argv=None) -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))  # a CLI: two spin-free threads
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["small", "default"], default="default")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--worlds",
        nargs="+",
        default=["world"],
        choices=["world", "null"],
        help="the organism's world and/or the null world (no shared latents)",
    )
    p.add_argument("--sampled", type=int, default=0, help="seeded samples per question")
    p.add_argument("--variants", nargs="+", default=None, help="e.g. main (default: all)")
    p.add_argument(
        "--finetune",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override the default finetune config, e.g. lr=2e-2 epochs=8 rank=16",
    )
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    try:
        overrides = _overrides(a.finetune)
    except ValueError as e:
        p.error(str(e))
    cfg = OrganismConfig.small() if a.config == "small" else OrganismConfig.default()
    rows = run(
        cfg, a.settings, a.seeds, worlds=a.worlds, sampled=a.sampled, finetune=overrides,
        variants=a.variants,
    )  # fmt: skip
    if a.out:
        a.out.write_text(json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
