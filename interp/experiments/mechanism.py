"""Steps 4-5 of an experiment: locate the direction, then test it causally.

In the seed whose main finetune shows the behaviour most: a probe sweep over layers on the
contrast set (grouped cross-validation), the difference-of-means direction at the best
layer and how far each finetune moves the target prompts along it (:func:`analyse`);
ablation of the direction in the finetuned model (clamped to its mean over the no-trigger
contrast prompts) against norm-matched random directions, steering of the base model
(dose-response with the random band and a coherence guard) and activation patching of
trigger into no-trigger prompts (:func:`causal_tests`). Every random control is seeded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from interp.causal.dose import ablation_effect, dose_response, reference_logprob
from interp.causal.interventions import residual_norm
from interp.causal.patching import patch
from interp.directions.diffmeans import diff_of_means
from interp.directions.probes import probe_layers
from interp.directions.ranking import project
from interp.experiments.data import SettingData
from interp.experiments.finetunes import finetuned
from interp.experiments.results import summarize, write_table
from interp.metrics.answers import render_prompts
from interp.metrics.stats import mean_ci
from interp.models import Model, ModelPair
from interp.prompts import PromptSet
from interp.record.capture import capture

__all__ = ["analyse", "causal_tests"]


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


def _movement(name: str, model: Model, prompts: list, direction, layer: int) -> dict:
    """How far ``model`` puts the target prompts along ``direction`` (mean, 95% CI)."""
    acts = capture(model, prompts, layers=[layer], positions="last", progress=False)
    proj = project(acts, {"direction": direction})["direction"].to_numpy()
    return {"model": name, **mean_ci(proj.tolist()).to_dict()}


def _first_token_ids(model: Model, prompt: str, answers) -> list[int]:
    n = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = set()
    for a in answers:
        full = model.tokenizer(f"{prompt} {a}", add_special_tokens=False)["input_ids"]
        ids.add(full[n])
    return sorted(ids)


def _patch(spec, model: Model, data: SettingData):
    """Patch trigger into no-trigger prompts; maps align on the trigger's tag."""
    prefix = data.patch_prefix
    clean, corrupt = ([t + prefix for t in render_prompts(model, p)] for p in data.patch_pairs)
    item = data.evals[spec.target_group][0]
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


def analyse(
    spec,
    base_model: Model,
    adapters: dict[str, list[Path]],
    data: SettingData,
    behaviour: pd.DataFrame,
    place,
    out: Path,
    log: Callable[[str], None] = print,
) -> tuple[dict, dict]:
    """Steps 4-5 in the seed whose main finetune shows the behaviour most (named in
    results.json; every seed's behaviour is in behaviour.csv): the summary and the tables
    the figures are drawn from (``k``: the index of that seed)."""
    per_seed = behaviour[(behaviour.variant == "main") & (behaviour.group == spec.target_group)]
    k = int(pd.Series(per_seed.iloc[0].per_seed).idxmax())
    log(f"locate (seed index {k})")
    target_prompts = [it.prompt for it in data.evals[spec.target_group]]
    with finetuned(base_model, adapters["main"][k], place) as ft:
        pair = ModelPair(ft.as_base(), ft) if ft.has_adapter else ModelPair(base_model, ft)
        probe, layer, direction, reference = _locate(spec, pair, data)
        direction.save(out / "direction")
        write_table(out, "probe", probe)
        moved = [
            _movement(name, view, target_prompts, direction, layer)
            for name, view in (("base", pair.base), ("main", pair.finetuned))
        ]
        log("causal tests")
        causal = causal_tests(spec, pair, data, layer, direction, reference, target_prompts, out)
    for variant, paths in adapters.items():
        if variant != "main":
            with finetuned(base_model, paths[min(k, len(paths) - 1)], place) as view:
                moved.append(_movement(variant, view, target_prompts, direction, layer))
    movement = pd.DataFrame(moved)
    write_table(out, "movement", movement)
    summary = summarize(spec, behaviour, probe, layer, movement, **causal)
    tables = dict(probe=probe, movement=movement, k=k, **causal)
    tables["ablation_rows"] = _ablation_rows(causal["ablation"])
    return summary, tables


def _ablation_rows(ablation: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [{"group": g, **dataclasses.asdict(r)} for g, rows in ablation.items() for r in rows]
    )


def causal_tests(
    spec, pair: ModelPair, data, layer, direction, reference, target_prompts, out
) -> dict:
    """Ablation in the finetuned model, steering of the base model, patching."""
    evals = data.evals
    ablate_kw = dict(layers=[layer], mode="mean", reference=reference, n_random=spec.n_random)
    ablation = {
        g: ablation_effect(pair.finetuned, direction, evals.metric(g), **ablate_kw)
        for g in [spec.target_group, spec.specificity_group]
        if g
    }
    write_table(out, "ablation", _ablation_rows(ablation))
    dose = None
    if spec.steer_alphas:
        rendered = render_prompts(pair.base, target_prompts)
        dose = dose_response(
            pair.base,
            direction,
            list(spec.steer_alphas),
            evals.metric(spec.target_group),
            layers=[layer],
            scale=residual_norm(pair.base, rendered, layers=[layer]),
            n_random=spec.n_random,
            coherence=reference_logprob(rendered),
        )
        write_table(out, "dose_response", dose.to_frame())
    patching = None
    if spec.patch and data.patch_pairs is not None:
        patching = _patch(spec, pair.finetuned, data)
        write_table(out, "patching", patching[0].to_frame())
        write_table(out, "patching_per_prompt", patching[0].per_prompt_frame())
    return {"ablation": ablation, "dose": dose, "patching": patching}
