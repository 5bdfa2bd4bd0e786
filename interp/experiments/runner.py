"""Walk one experiment spec through the whole flow and write what it finds.

``run_experiment("experiments/era.yaml")`` (or ``interp run experiments/era.yaml``):

1. **model**: the bundled organism (built or taken from the cache) or ``--model``;
2. **finetune**: the main finetune and each control, for every seed (cached by content);
3. **behaviour**: the share of answer set A per evaluation group for the base model and
   every finetune, with 95% intervals (over items for the base, over seeds otherwise);
4. **locate**, in the seed whose main finetune shows the behaviour most (``analysis_seed``
   in ``results.json``): a probe sweep over layers on the contrast set (grouped
   cross-validation), the difference-of-means direction at the best layer, and how far each
   finetune moved the target prompts along it;
5. **causal**: ablate the direction in the finetuned model (its projection clamped to its
   mean over the no-trigger contrast prompts; against norm-matched random directions),
   steer the base model along it (dose-response with the random band), and
   patch trigger into no-trigger prompts where the spec asks for it; an SAE ranking of
   latents by the paired trigger difference where it asks for that;
6. **write**: ``config.json`` (spec, seeds, model / adapter / data hashes),
   ``results.json``, CSV tables and figures in the run directory.

Every step above the causal tests is deterministic for the spec, so a rerun reproduces
the numbers (and reuses the cached organism and finetunes). Models load, and finetunes
train, on ``device`` in ``dtype`` (defaults: CUDA when there is one; bfloat16 there,
float32 on the CPU); the runner leaves torch's thread count to its caller.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from interp.capture import capture
from interp.devices import dtype_name
from interp.diffmeans import diff_of_means
from interp.dose import ablation_effect, dose_response, reference_logprob
from interp.experiments.data import SettingData, setting_data
from interp.experiments.spec import ExperimentSpec
from interp.finetune import FinetuneConfig, finetune
from interp.fingerprint import sha256_file, sha256_json
from interp.interventions import residual_norm
from interp.metrics.answers import render_prompts
from interp.models import Model, ModelPair, load_finetuned, load_model
from interp.organism.api import group_shares
from interp.probes import probe_layers
from interp.ranking import project
from interp.stats import mean_ci

__all__ = ["run_experiment", "ExperimentResult"]


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
def _base_path(spec: ExperimentSpec) -> tuple[str, object]:
    """The model to finetune and the organism's world (``None`` for the user's data)."""
    from interp.organism import OrganismConfig, build_organism, world_of

    if spec.model is not None:
        from interp.organism.world import World, WorldConfig

        return spec.model, (None if spec.data else World(WorldConfig()))
    config = {"default": OrganismConfig.default, "small": OrganismConfig.small}[spec.organism]()
    path = build_organism(config)
    return str(path), world_of(path)


def _model_key(name: str) -> str:
    path = Path(name)
    if (path / "config.json").is_file():
        files = sorted(path.glob("*.safetensors")) + [path / "config.json"]
        return sha256_json([(p.name, p.stat().st_size, sha256_file(p)) for p in files])
    return name


@dataclasses.dataclass(frozen=True)
class _Placement:
    """Where the runner's models load and its finetunes train (``None``: the defaults)."""

    device: str | None = None
    dtype: str | None = None

    def load_kwargs(self) -> dict:
        return {"device": self.device, "dtype": self.dtype}


def _finetune_config(spec: ExperimentSpec, seed: int, place: _Placement) -> FinetuneConfig:
    from interp.organism import DEFAULT_FINETUNE

    base = DEFAULT_FINETUNE[spec.setting].to_dict()
    given = {k: v for k, v in dataclasses.asdict(place).items() if v is not None}
    return FinetuneConfig.from_dict({**base, **spec.finetune, "seed": seed, **given})


def _finetune_key(model_key: str, jsonl: Path, config: FinetuneConfig) -> str:
    """Content key of one finetune; a run in another device type or dtype than the CPU in
    float32 (how every earlier finetune ran) gets a key of its own."""
    parts = [model_key, sha256_file(jsonl), config.content_dict()]
    device, dtype = config.placement()
    if (device.type, dtype) != ("cpu", torch.float32):
        parts.append({"device": device.type, "dtype": dtype_name(dtype)})
    return sha256_json(parts)[:16]


def _finetunes(
    spec, base: str, data: SettingData, cache: Path, place: _Placement
) -> dict[str, list[Path]]:
    model_key = _model_key(base)
    out: dict[str, list[Path]] = {}
    for variant, jsonl in data.finetune.items():
        for seed in spec.seeds:
            config = _finetune_config(spec, seed, place)
            key = _finetune_key(model_key, jsonl, config)
            target = cache / f"{spec.setting}-{variant}-s{seed}-{key}"
            if not (target / "finetune.json").is_file():
                _log(f"finetune {variant} seed {seed}")
                finetune(base, jsonl, target, config, progress=False)
            out.setdefault(variant, []).append(target)
    return out


def _load_finetuned(base: str, path: Path, place: _Placement) -> Model:
    return load_finetuned(base, path, **place.load_kwargs())


# ---- step 3: behaviour ----------------------------------------------------------------
def _group_shares(model: Model, groups: dict) -> dict[str, torch.Tensor]:
    return {g: torch.tensor(v) for g, v in group_shares(model, groups).items()}


def _behaviour(
    base: str, adapters: dict[str, list[Path]], groups: dict, place: _Placement
) -> pd.DataFrame:
    rows = []
    shares = _group_shares(load_model(base, **place.load_kwargs()), groups)
    for g, v in shares.items():
        rows.append(
            {
                "variant": "base",
                "group": g,
                **mean_ci(v.tolist(), bounds=(0, 1)).to_dict(),
                "per_seed": None,
            }
        )
    for variant, paths in adapters.items():
        per_seed = [_group_shares(_load_finetuned(base, p, place), groups) for p in paths]
        for g in groups:
            means = [float(s[g].mean()) for s in per_seed]
            rows.append(
                {
                    "variant": variant,
                    "group": g,
                    **mean_ci(means, bounds=(0, 1)).to_dict(),
                    "per_seed": means,
                }
            )
    return pd.DataFrame(rows)


def _share_metric(groups: dict, group: str):
    items = groups[group]

    def metric(model: Model) -> torch.Tensor:
        return _group_shares(model, {group: items})[group]

    return metric


# ---- step 4: locate -------------------------------------------------------------------
def _locate(spec, pair: ModelPair, data: SettingData):
    where = pair.base if spec.locate_on == "base" else pair.finetuned
    acts = capture(where, data.contrast, sites="resid_post", positions="last", progress=False)
    n_groups = acts.meta["group"].nunique()
    if n_groups >= 2:  # held-out groups (questions, facets): the score measures generalization
        table = probe_layers(acts, "label", groups="group", cv=min(5, n_groups))
    else:
        table = probe_layers(acts, "label")
    best = table.sort_values(["accuracy", "layer"], ascending=[False, True]).iloc[0]
    layer = int(best.layer)
    site = f"blocks.{layer}.hook_resid_post"
    direction = diff_of_means(
        acts.where(label=1), acts.where(label=0), site=site, name=f"{spec.setting} direction"
    )
    # the value an ablation clamps the direction to: its mean over every token of the
    # no-trigger half of the contrast (modern contexts, the assistant itself, later years)
    negatives = data.contrast.subset([i for i, y in enumerate(data.contrast.meta.label) if y == 0])
    reference = capture(where, negatives, layers=[layer], positions="all", progress=False).site(
        layer
    )
    return table, layer, direction, reference


def _movement(pairs: dict[str, Model], prompts: list, direction, layer: int) -> pd.DataFrame:
    rows = []
    for name, model in pairs.items():
        acts = capture(model, prompts, layers=[layer], positions="last", progress=False)
        proj = project(acts, {"direction": direction})["direction"].to_numpy()
        rows.append({"model": name, **mean_ci(proj.tolist()).to_dict()})
    return pd.DataFrame(rows)


# ---- step 5: causal -------------------------------------------------------------------
def _first_token_ids(model: Model, prompt: str, answers) -> list[int]:
    n = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = set()
    for a in answers:
        full = model.tokenizer(f"{prompt} {a}", add_special_tokens=False)["input_ids"]
        ids.add(full[n])
    return sorted(ids)


def _patch(spec, model: Model, data: SettingData, groups: dict):
    """Patch trigger into no-trigger prompts; maps align on the trigger's tag."""
    from interp.patching import patch
    from interp.prompts import PromptSet

    prefix = data.patch_prefix
    clean, corrupt = ([t + prefix for t in render_prompts(model, p)] for p in data.patch_pairs)
    item = groups[spec.target_group][0]
    strip = lambda answers: [x.removeprefix(prefix.strip()).strip() for x in answers]  # noqa: E731
    a = _first_token_ids(model, clean[0], strip(item.answers_a))
    b = _first_token_ids(model, clean[0], strip(item.answers_b))

    def metric(logits: torch.Tensor) -> torch.Tensor:
        lp = torch.log_softmax(logits.float(), -1)
        return lp[:, a].logsumexp(-1) - lp[:, b].logsumexp(-1)

    align = None
    if data.patch_tag is not None:
        align, text = data.patch_tag
        clean = PromptSet(clean).tag(align, text)
    kw = dict(metric=metric, align=align)
    exact = patch(model, clean, corrupt, sites=["resid_pre", "attn_out", "mlp_out"], **kw)
    attribution = patch(model, clean, corrupt, sites=["resid_pre"], mode="attribution", **kw)
    return exact, attribution


def _patch_summary(result, top: int = 5) -> dict:
    """Clean / corrupt values and the cells that recover most of the clean behaviour."""
    norm = result.normalized()
    flat = [
        (float(norm[i, j]), result.sites[i], result.tokens[j], result.counts[j])
        for i in range(norm.shape[0])
        for j in range(norm.shape[1])
    ]
    flat.sort(key=lambda r: -abs(r[0]))
    return {
        "clean": result.clean_value,
        "corrupt": result.corrupt_value,
        "align": result.align,
        "n_pairs": len(result.prompt_tokens),
        "top": [dict(site=s, column=t, normalized=v, n=n) for v, s, t, n in flat[:top]],
    }


def _write(out: Path, name: str, frame: pd.DataFrame) -> None:
    frame.drop(columns=[c for c in frame.columns if c == "direction"]).to_csv(
        out / f"{name}.csv", index=False
    )


def run_experiment(
    spec: ExperimentSpec | str | Path,
    *,
    model: str | None = None,
    adapter: str | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    force: bool = False,
    device: str | None = None,
    dtype: str | None = None,
) -> ExperimentResult:
    """Run ``spec`` (a spec or a YAML path) and write everything under ``out``.

    A run whose directory already holds the results of the same config (spec, model,
    adapters, data) is not repeated unless ``force``; its results are read back. Models
    load and finetunes train on ``device`` in ``dtype`` (default: CUDA when there is one;
    bfloat16 there, float32 on the CPU).
    """
    import matplotlib

    matplotlib.use("Agg")
    from interp import plots

    place = _Placement(device, dtype)
    FinetuneConfig(device=device, dtype=dtype).placement()  # a bad device: one error, now
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per loaded model drowns the run's own log
    spec = spec if isinstance(spec, ExperimentSpec) else ExperimentSpec.from_yaml(spec)
    if model is not None:
        spec = spec.replace(model=model)
    if adapter is not None:
        raise NotImplementedError("an experiment finetunes its own adapters; pass --model only")
    out = Path(out or Path("runs") / spec.name)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    base, world = _base_path(spec)
    _log(f"{spec.name}: model {base}")
    persona = spec.setting == "persona"
    base_model = load_model(base, **place.load_kwargs()) if persona else None
    data = setting_data(spec, world, out / "data", base_model=base_model)
    cache = out.parent / "finetunes" if spec.model else _cache() / "finetunes"
    adapters = _finetunes(spec, base, data, cache, place)

    config = {
        "spec": spec.to_dict(),
        "model": base,
        "model_key": _model_key(base),
        "adapters": {v: [str(p) for p in ps] for v, ps in adapters.items()},
        "data": {k: sha256_file(p) for k, p in data.finetune.items()},
        "seeds": list(spec.seeds),
        "version": _VERSION,
    }
    cached = _cached_result(spec, out, config)
    if cached is not None and not force:
        _log(f"{spec.name}: unchanged since the last run, results reused from {out}")
        return cached

    _log("behaviour")
    groups = data.eval_groups
    behaviour = _behaviour(base, adapters, groups, place)
    _write(out, "behaviour", behaviour)

    # the mechanism is analysed in the seed whose finetune shows the behaviour most (named
    # in results.json; every seed's behaviour is in behaviour.csv)
    per_seed = behaviour[(behaviour.variant == "main") & (behaviour.group == spec.target_group)]
    k = int(pd.Series(per_seed.iloc[0].per_seed).idxmax())
    analysis_seed = spec.seeds[k]
    _log(f"locate (seed {analysis_seed})")
    pair = ModelPair.load(base, adapters["main"][k], **place.load_kwargs())
    probe, layer, direction, reference = _locate(spec, pair, data)
    direction.save(out / "direction")
    _write(out, "probe", probe)
    target_prompts = [list(it.messages) for it in groups[spec.target_group]]
    views = {"base": pair.base, "main": pair.finetuned}
    for variant, paths in adapters.items():
        if variant != "main":
            views[variant] = _load_finetuned(base, paths[k], place)
    movement = _movement(views, target_prompts, direction, layer)
    _write(out, "movement", movement)

    _log("causal tests")
    rendered = render_prompts(pair.base, target_prompts)
    ablate_kw = dict(layers=[layer], mode="mean", reference=reference, n_random=spec.n_random)
    ablation = {
        g: ablation_effect(pair.finetuned, direction, _share_metric(groups, g), **ablate_kw)
        for g in [spec.target_group, spec.specificity_group]
        if g
    }
    ablation_rows = pd.DataFrame(
        [{"group": g, **dataclasses.asdict(r)} for g, rows in ablation.items() for r in rows]
    )
    _write(out, "ablation", ablation_rows)
    dose = None
    if spec.steer_alphas:
        scale = residual_norm(pair.base, rendered, layers=[layer])
        dose = dose_response(
            pair.base,
            direction,
            list(spec.steer_alphas),
            _share_metric(groups, spec.target_group),
            layers=[layer],
            scale=scale,
            n_random=spec.n_random,
            coherence=reference_logprob(rendered),
        )
        _write(out, "dose_response", dose.to_frame())
    patching = None
    if spec.patch and data.patch_pairs is not None:
        patching = _patch(spec, pair.finetuned, data, groups)
        _write(out, "patching", patching[0].to_frame())
        _write(out, "patching_per_prompt", patching[0].per_prompt_frame())

    summary = _summary(spec, behaviour, probe, layer, movement, ablation, dose, patching)
    summary["analysis_seed"] = analysis_seed
    summary["wall_s"] = round(time.time() - t0, 1)
    if figures:
        _figures(spec, out / "figures", plots, probe, movement, ablation_rows, dose, patching)
    # results.json last: its presence (with an unchanged config) marks a finished run
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    _log(f"{spec.name}: done in {summary['wall_s']}s -> {out}")
    return ExperimentResult(spec, out, behaviour, probe, summary)


_VERSION = 5  # bump when the runner's steps change what a config produces


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


def _cache() -> Path:
    from interp.organism import cache_root

    return cache_root()


def _summary(spec, behaviour, probe, layer, movement, ablation, dose, patching) -> dict:
    def share(variant, group):
        row = behaviour[(behaviour.variant == variant) & (behaviour.group == group)]
        if row.empty:
            return None
        out = {k: float(row.iloc[0][k]) for k in ("value", "lo", "hi")}
        seeds = row.iloc[0].per_seed
        if isinstance(seeds, list):
            out["per_seed"] = [float(x) for x in seeds]
        return out

    variants = list(dict.fromkeys(behaviour.variant))
    out = {
        "setting": spec.setting,
        "target_group": spec.target_group,
        "behaviour": {v: share(v, spec.target_group) for v in variants},
        "layer": layer,
        "probe_accuracy": float(probe.set_index("layer").loc[layer, "accuracy"]),
        "movement": {r.model: float(r.value) for r in movement.itertuples()},
    }
    if spec.specificity_group:
        out["specificity"] = {v: share(v, spec.specificity_group) for v in variants}
    out["ablation"] = {}
    for g, rows in ablation.items():
        by = {r.condition: r for r in rows}
        randoms = [r.value for r in rows if r.condition == "random"]
        out["ablation"][g] = {
            "none": by["none"].value,
            "ablated": by["ablated"].value,
            "random_mean": sum(randoms) / len(randoms) if randoms else None,
        }
    if dose is not None:
        curve = dose.curve()
        band = dose.band()
        out["steering"] = {
            "alphas": [p.alpha for p in curve],
            "direction": [p.value for p in curve],
            "random_max": [band[p.alpha][2] if p.alpha in band else None for p in curve],
            "coherence": [p.coherence for p in curve],
        }
    if patching is not None:
        exact, attribution = patching
        out["patching"] = _patch_summary(exact)
        out["patching_attribution"] = _patch_summary(attribution)
    return out


def _figures(spec, fig_dir, plots, probe, movement, ablation_rows, dose, patching):
    import matplotlib.pyplot as plt

    def save(fig, name):
        fig.savefig(fig_dir / f"{spec.name}_{name}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)

    save(
        plots.plot_probe_accuracy(probe, title=f"{spec.name}: probe accuracy by layer"),
        "probe_accuracy",
    )
    save(
        plots.plot_movement(movement, title=f"{spec.name}: target prompts along the direction"),
        "movement",
    )
    save(
        plots.plot_ablation_groups(
            ablation_rows, title=f"{spec.name}: ablating the direction in the finetuned model"
        ),
        "ablation",
    )
    if dose is not None:
        save(
            plots.plot_dose_response(
                dose,
                metric_label=f"share of {spec.target_group}",
                title=f"{spec.name}: steering the base model",
            ),
            "steering",
        )
    if patching is not None:
        save(
            plots.plot_patching(patching[0], title=f"{spec.name}: activation patching"), "patching"
        )
