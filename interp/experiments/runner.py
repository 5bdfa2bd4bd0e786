"""Walk one experiment spec through the whole flow and write what it finds.

``run_experiment("era")`` (or ``interp run era``; a bundled spec or a YAML file):

1. **model**: the bundled organism (built or taken from the cache) or ``--model``, loaded
   once: every finetune is opened on that load (:func:`~interp.experiments.finetunes.finetuned`);
2. **finetune**: the main finetune and each control, for every seed (the one content-keyed
   cache of :mod:`interp.experiments.finetunes`), on the setting's data or the user's
   (``spec.data``); or the adapters given (``adapter=``: no finetuning);
3. **behaviour**: the share of answer set A per evaluation group for the base model and
   every finetune, with 95% intervals (over items for the base, over seeds otherwise);
4. **locate**, in the seed whose main finetune shows the behaviour most (``analysis_seed``
   in ``results.json``): a probe sweep over layers on the contrast set (grouped
   cross-validation), the difference-of-means direction at the best layer, and how far each
   finetune moved the target prompts along it;
5. **causal**: ablate the direction in the finetuned model (its projection clamped to its
   mean over the no-trigger contrast prompts; against norm-matched random directions),
   steer the base model along it (dose-response with the random band), and
   patch trigger into no-trigger prompts where the spec asks for it;
6. **localize** (``spec.localize``): the finetune's own activation difference as a
   low-rank subspace, its layer and rank chosen on one half of the target questions and
   its ablation measured on the other half in every seed, against random subspaces, with
   the KL it costs on ordinary prompts and its effect on the controls
   (:mod:`interp.experiments.localize`);
7. **SAE latents** (``spec.sae_latents`` > 0: their number): SAEs of two architectures
   trained on the base model at that place, latents ranked against the finetune's shift,
   the top ones ablated (error term kept) against random latents, chosen and measured on
   the same halves (:mod:`interp.experiments.sae_latents`);
8. **write**: ``config.json`` (spec, seeds, model / adapter / data hashes),
   ``results.json``, CSV tables and figures in the run directory, and ``timing.json``
   (wall time: the one file a rerun changes).

Every step is deterministic for the spec (the random controls are seeded), so a rerun
reproduces the numbers byte for byte (and reuses the cached organism and finetunes); no
file but ``timing.json`` holds a time or a path of this machine. Models load, and finetunes
train, on ``device`` in ``dtype`` (defaults: CUDA when there is one; bfloat16 there,
float32 on the CPU); the runner leaves torch's thread count to its caller.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import pandas as pd
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from interp.errors import InterpError
from interp.experiments.behaviour import measure_behaviour
from interp.experiments.data import setting_data
from interp.experiments.finetunes import Placement, finetune_variants, model_key
from interp.experiments.localize import localize
from interp.experiments.mechanism import analyse
from interp.experiments.results import save_figures, write_table
from interp.experiments.sae_latents import sae_latents
from interp.experiments.spec import ExperimentSpec
from interp.finetune import FinetuneConfig
from interp.fingerprint import sha256_dir, sha256_file
from interp.models import load_model
from interp.organism.pretrain import OrganismConfig, build_organism, cache_root, world_of
from interp.organism.world import World, WorldConfig

__all__ = ["run_experiment", "ExperimentResult"]

Adapters = str | Path | Mapping[str, str | Path | list]


@dataclasses.dataclass
class ExperimentResult:
    spec: ExperimentSpec
    out: Path
    behaviour: pd.DataFrame
    probe: pd.DataFrame
    summary: dict


def _log(msg: str) -> None:
    tqdm.write(f"[interp] {msg}")


# ---- step 1-2: models and finetunes ---------------------------------------------------
def _base_path(spec: ExperimentSpec) -> tuple[str, World | None]:
    """The model to finetune and the organism's world (``None`` for the user's data)."""
    if spec.model is not None:
        return spec.model, (None if spec.data else World(WorldConfig()))
    config = {"default": OrganismConfig.default, "small": OrganismConfig.small}[spec.organism]()
    path = build_organism(config)
    return str(path), world_of(path)


def _label(spec: ExperimentSpec) -> str:
    return spec.model if spec.model else f"organism:{spec.organism}"


def _given_adapters(adapter: Adapters | None) -> dict[str, list[Path]]:
    """``{variant: [adapter dir, ...]}`` from one directory (the main finetune) or a mapping
    of variant -> directory (or list of directories: one per seed)."""
    if adapter is None:
        return {}
    given = adapter if isinstance(adapter, Mapping) else {"main": adapter}
    out = {}
    for variant, dirs in given.items():
        dirs = dirs if isinstance(dirs, list | tuple) else [dirs]
        out[str(variant)] = [Path(d) for d in dirs]
        for d in out[variant]:
            if not (d / "adapter_config.json").is_file() and not (d / "config.json").is_file():
                raise InterpError(f"adapter {d}: not a PEFT adapter or model directory")
    if "main" not in out:
        raise InterpError(f"the adapters given need a 'main' one (got {sorted(out)})")
    return {"main": out.pop("main"), **out}


def _config(spec, base: str, adapters: dict[str, list[Path]], data, given: bool) -> dict:
    """What decides the results: nothing in it depends on where the cache or run live."""
    config = {
        "spec": spec.to_dict(),
        "model": _label(spec),
        "model_key": model_key(base),
        "data": {k: sha256_file(p) for k, p in data.finetune.items()},
        "seeds": _seeds(spec, adapters, given),
        "version": _VERSION,
    }
    if given:
        config["adapters"] = {v: [str(p) for p in ps] for v, ps in adapters.items()}
        config["adapter_hashes"] = {v: [sha256_dir(p) for p in ps] for v, ps in adapters.items()}
    else:  # cache entries named by content: setting-variant-seed-key
        config["adapters"] = {v: [p.name for p in ps] for v, ps in adapters.items()}
    return config


def _seeds(spec, adapters: dict[str, list[Path]], given: bool) -> list[int]:
    """The finetune seeds; for given adapters, their index."""
    return list(range(len(adapters["main"]))) if given else list(spec.seeds)


def run_experiment(
    spec: ExperimentSpec | str | Path,
    *,
    model: str | None = None,
    adapter: Adapters | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    force: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    workers: int = 1,
) -> ExperimentResult:
    """Run ``spec`` (a spec or a YAML path) and write everything under ``out``.

    ``model`` replaces the spec's model (a Hugging Face id or directory), loaded once.
    ``adapter``: finetunes already made, instead of finetuning: one directory (the main
    finetune) or ``{variant: dir or [dir per seed]}`` with a ``"main"`` entry. A run whose
    directory already holds the results of the same config (spec, model, adapters, data)
    is not repeated unless ``force``; its results are read back. Models load and finetunes
    train on ``device`` in ``dtype`` (default: CUDA when there is one; bfloat16 there,
    float32 on the CPU). ``workers`` > 1: the finetunes not yet cached train that many at once, each
    in its own process (:meth:`Placement.workers` is a good number).
    """
    place = Placement(device, dtype)
    FinetuneConfig(device=device, dtype=dtype).placement()  # a bad device: one error, now
    hf_logging.disable_progress_bar()  # one line per loaded model drowns the run's own log
    spec = spec if isinstance(spec, ExperimentSpec) else ExperimentSpec.from_yaml(spec)
    if model is not None:
        spec = spec.replace(model=model)
    given = _given_adapters(adapter)
    out = Path(out or Path("runs") / spec.name)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    base, world = _base_path(spec)
    _log(f"{spec.name}: model {base}")
    # the one load of the base, named as the spec names it (no cache path in any result)
    base_model = dataclasses.replace(load_model(base, **place.load_kwargs()), name=_label(spec))
    data = setting_data(spec, world, out / "data", base_model=base_model, finetune=not given)
    cache = out.parent / "finetunes" if spec.model else cache_root() / "finetunes"
    adapters = given or finetune_variants(
        base, data.finetune, setting=spec.setting, seeds=spec.seeds, overrides=spec.finetune,
        cache=cache, place=place, model=base_model, log=_log,
        workers=workers,
    )  # fmt: skip
    config = _config(spec, base, adapters, data, bool(given))
    cached = _cached_result(spec, out, config)
    if cached is not None and not force:
        _log(f"{spec.name}: unchanged since the last run, results reused from {out}")
        return cached

    _log("behaviour")
    behaviour = measure_behaviour(base_model, adapters, data.evals, place=place)
    write_table(out, "behaviour", behaviour)
    summary, tables = analyse(spec, base_model, adapters, data, behaviour, place, out, _log)
    if spec.localize:
        summary["localization"] = localize(
            spec, base_model, adapters, data, place, out, world, _log
        )
    if spec.sae_latents:
        summary["sae"] = sae_latents(
            spec, base_model, adapters, data, place, summary.get("localization"), out, world, _log
        )
    summary["seeds"] = config["seeds"]
    summary["n_random"] = spec.n_random
    summary["analysis_seed"] = config["seeds"][tables.pop("k")]
    if figures:
        matplotlib.use("Agg")  # files only; chosen here, not on import (notebooks plot inline)
        extra = {k: summary.get(k) for k in ("localization", "sae")}
        save_figures(spec, out / "figures", **extra, **tables)
    # results.json last: its presence (with an unchanged config) marks a finished run
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    wall = round(time.time() - t0, 1)
    (out / "timing.json").write_text(json.dumps({"wall_s": wall}, indent=2))
    _log(f"{spec.name}: done in {wall}s -> {out}")
    return ExperimentResult(spec, out, behaviour, tables["probe"], summary)


_VERSION = 9  # bump when the runner's steps change what a config produces


def _cached_result(spec, out: Path, config: dict) -> ExperimentResult | None:
    try:
        same = json.loads((out / "config.json").read_text()) == json.loads(json.dumps(config))
        summary = json.loads((out / "results.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not same:
        return None
    behaviour = pd.read_csv(out / "behaviour.csv")
    return ExperimentResult(spec, out, behaviour, pd.read_csv(out / "probe.csv"), summary)
