"""Pretrain the default organism afresh: check the shipped one against it, or replace it.

``python -m interp.organism.rebuild`` (``make organism-check``) pretrains the default
config from scratch into a temporary directory (about 11 minutes on two cores) and
compares every tensor with the bundled organism (:mod:`interp.organism.bundle`); it
exits with status 0 only when they are identical. ``--write`` ships the fresh
pretraining instead (after a change to the corpus, the training code or the default
config, whose hash names the bundle).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from interp.errors import IntegrityError
from interp.integrity import read_safetensors
from interp.organism.bundle import bundled_dir, write_bundle
from interp.organism.pretrain import OrganismConfig, pretrain

__all__ = ["check_rebuild", "main"]


def check_rebuild(config: OrganismConfig | None = None) -> dict:
    """Pretrain ``config`` (default: the default organism) from scratch and compare each
    tensor with the bundled organism: the largest absolute difference per tensor and
    overall (``max_abs_diff`` 0.0: the bundle is what the code produces)."""
    config = config or OrganismConfig.default()
    shipped = bundled_dir(config.hash())
    if shipped is None:
        raise IntegrityError(f"no bundled organism for config hash {config.hash()}")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pretrain(config, Path(tmp) / "organism")
        a = read_safetensors(shipped / "model.safetensors")
        b = read_safetensors(fresh / "model.safetensors")
    if a.keys() != b.keys():
        raise IntegrityError(f"the rebuild has tensors {sorted(b)}, the bundle {sorted(a)}")
    diffs = {k: float((a[k].double() - b[k].double()).abs().max()) for k in sorted(a)}
    return {"hash": config.hash(), "max_abs_diff": max(diffs.values()), "tensors": diffs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interp.organism.rebuild", description=__doc__)
    parser.add_argument("--write", action="store_true", help="ship a fresh pretraining instead")
    args = parser.parse_args(argv)
    if args.write:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = pretrain(OrganismConfig.default(), Path(tmp) / "organism")
            print(f"bundled: {write_bundle(fresh)}")
        return 0
    result = check_rebuild()
    print(f"organism {result['hash']}: rebuild vs bundle, largest |difference| "
          f"{result['max_abs_diff']:.3g} over {len(result['tensors'])} tensors")  # fmt: skip
    return 0 if result["max_abs_diff"] == 0.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
