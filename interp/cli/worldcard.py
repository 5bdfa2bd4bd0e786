"""``interp world-card``: the organism's measured table, every setting and control over seeds.

Builds (or reuses) the organisms, finetunes every variant of every setting for every seed
(the experiments' finetune cache), prints one table per setting and writes ``rows.json``
(every row) and ``world_card.md`` (the README's measured table) to ``--out``. The
null-world rows come from the same finetunes on an organism pretrained on the null world.
``--finetune lr=2e-2 epochs=8`` overrides fields of each setting's finetune recipe (a
sweep point); ``--variants main`` skips the controls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from interp.cli.common import RunRecord, add_out_arg, add_workers_arg, at_least
from interp.errors import InterpError
from interp.integrity import read_json

__all__ = ["register", "finetune_overrides"]


def finetune_overrides(pairs: list[str]) -> dict:
    """``["lr=2e-2", "target_modules=q_proj,v_proj"]`` -> typed FinetuneConfig fields."""
    from interp.finetune import FinetuneConfig

    fields = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"seed", "device", "dtype"}
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise InterpError(f"--finetune expects KEY=VALUE with KEY one of {sorted(fields)}")
        default = getattr(FinetuneConfig(), key)
        try:
            if key in ("target_modules", "modules_to_save"):
                names = tuple(v for v in value.split(",") if v)
                out[key] = names or (None if key == "target_modules" else ())
            elif isinstance(default, bool):
                out[key] = {"true": True, "false": False}[value.lower()]
            elif isinstance(default, str):
                out[key] = value
            else:
                number = float(value)
                out[key] = int(number) if isinstance(default, int) else number
        except (ValueError, KeyError):
            raise InterpError(f"--finetune {pair}: not a valid {key}") from None
    return out


def _cmd(args: argparse.Namespace) -> int:
    import torch

    from interp.experiments.finetunes import Placement
    from interp.experiments.worldcard import world_card
    from interp.organism import OrganismConfig

    out = Path(args.out)
    if args.render:  # the section again from the rows a finished run wrote, nothing measured
        doc = read_json(out / "rows.json", "world-card rows")
        known = {"default": OrganismConfig.default(), "small": OrganismConfig.small()}
        name = next((k for k, c in known.items() if c.to_dict() == doc["config"]), "custom")
        _write_markdown(out, name, doc["seeds"], doc["worlds"], doc["rows"])
        print(f"written {out / 'world_card.md'} from {out / 'rows.json'}")
        return 0
    torch.set_num_threads(min(2, torch.get_num_threads()))  # small models: more threads spin
    overrides = finetune_overrides(args.finetune)
    rec = RunRecord(args, out)
    config = OrganismConfig.small() if args.config == "small" else OrganismConfig.default()
    place = Placement(args.device, args.dtype)
    rows = world_card(
        config, args.settings, args.seeds, worlds=args.worlds, sampled=args.sampled,
        overrides=overrides, variants=args.variants,
        place=place, data_dir=out / "data",
        workers=place.workers() if args.workers is None else args.workers,
    )  # fmt: skip
    doc = {"config": config.to_dict(), "settings": args.settings, "seeds": args.seeds,
           "worlds": args.worlds, "finetune": overrides, "rows": rows}  # fmt: skip
    (out / "rows.json").write_text(json.dumps(doc, indent=1) + "\n")
    _write_markdown(out, args.config, args.seeds, args.worlds, rows)
    rec.finish()
    print(f"\nwritten to {out} (rows.json, world_card.md)")
    return 0


def _write_markdown(out: Path, config: str, seeds, worlds, rows) -> None:
    from interp.experiments.worldcard_markdown import world_card_markdown

    head = (
        f"<!-- interp world-card: config={config} seeds={','.join(map(str, seeds))} "
        f"worlds={','.join(worlds)} -->\n"
    )
    (out / "world_card.md").write_text(head + world_card_markdown(rows) + "\n")


def register(sub) -> None:
    from interp.organism.settings import SETTINGS

    p = sub.add_parser(
        "world-card",
        help="measure the organism's table: every setting and control over finetune seeds",
        description="Measure the organism's table: every setting's main finetune and "
        "controls over finetune seeds (the experiments' finetune cache), on the organism's "
        "world and/or the null world; prints one table per setting and writes rows.json and "
        "world_card.md (the README's measured table) to OUT.",
    )
    p.add_argument("--config", choices=["small", "default"], default="default",
                   help="the organism (default: default; small: the test organism)")  # fmt: skip
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="finetune seeds")
    p.add_argument("--worlds", nargs="+", default=["world"], choices=["world", "null"],
                   help="the organism's world and/or the null world (no shared latents)")  # fmt: skip
    p.add_argument("--sampled", type=at_least(0), default=0,
                   help="seeded samples per question beside the exact shares (default 0)")  # fmt: skip
    p.add_argument("--variants", nargs="+", default=None, help="e.g. main (default: all)")
    p.add_argument("--finetune", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override the finetune recipe, e.g. lr=2e-2 epochs=8 rank=16")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="weights and training dtype (default: bfloat16 on GPU, float32 on CPU)")  # fmt: skip
    add_workers_arg(p)
    p.add_argument("--render", action="store_true",
                   help="only rewrite OUT/world_card.md from the OUT/rows.json a run wrote")  # fmt: skip
    add_out_arg(p, "runs/world-card")
    p.set_defaults(func=_cmd)
