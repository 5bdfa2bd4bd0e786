"""Measure the organism's table: base / finetune / each control per setting, over seeds.

Run ``python -m interp.organism.report --config small --seeds 0 1 2 --null`` (or
``--config default``); it builds (or reuses) the organisms, finetunes every variant of
every setting for every seed (cached), prints one table per setting and writes all rows
to ``--out`` (JSON). The null-world rows come from the same finetunes on an organism
pretrained on :meth:`WorldConfig.null`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from interp.organism.api import evaluate_setting, format_table, summarize_backdoor
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
    config: OrganismConfig, settings, seeds, *, null: bool, sampled: int = 0, log=print
) -> list[dict]:
    worlds = {"world": config}
    if null:
        worlds["null"] = dataclasses.replace(
            config, world=WorldConfig.null(**_world_kw(config.world))
        )
    rows = []
    for wname, cfg in worlds.items():
        t = time.time()
        org = build_organism(cfg)
        log(f"[{wname}] organism {org} ({time.time() - t:.0f}s)")
        for setting in settings:
            t = time.time()
            got = evaluate_setting(org, setting, seeds=seeds, sampled=sampled, progress=False)
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["small", "default"], default="default")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--null", action="store_true", help="also run the null world")
    p.add_argument("--sampled", type=int, default=0, help="seeded samples per question")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    cfg = OrganismConfig.small() if a.config == "small" else OrganismConfig.default()
    rows = run(cfg, a.settings, a.seeds, null=a.null, sampled=a.sampled)
    if a.out:
        a.out.write_text(json.dumps({"config": cfg.to_dict(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
