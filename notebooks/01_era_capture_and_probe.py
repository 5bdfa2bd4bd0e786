# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Where does the organism keep its era?
#
# A model finetuned only to give **archaic bird names** starts answering *other*
# questions (inventions, transport, medicine) as if it lived in 1838. The question of
# this notebook: is there an *era* variable inside the model that a linear probe can
# read, and does the bird finetune move the model along it even on prompts that say
# nothing about birds or years?
#
# We use the bundled model organism (`OrganismConfig.small()`: a 2-layer Llama
# pretrained offline on a synthetic world in which each conversation shares one latent
# era), its era finetune (`main`: old bird names) and the control finetune (`control`:
# modern bird names), each made with the organism's default finetune settings.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from interp import ModelPair, PromptSet, capture
from interp.directions.diffmeans import diff_of_means
from interp.experiments import finetune_setting
from interp.models import load_finetuned
from interp.organism import OrganismConfig, build_organism, eval_items, world_of
from interp.plots import plot_probe_accuracy, plot_projection_by_slot
from interp.directions.probes import probe_layers
from interp.directions.ranking import model_diff, project

torch.set_num_threads(2)
OUT = Path(os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks"))
OUT.mkdir(parents=True, exist_ok=True)

organism = build_organism(OrganismConfig.small(), progress=False)  # pretrained once, cached
world = world_of(organism)
adapter_main = finetune_setting(organism, "era", "main", seed=0, progress=False)
adapter_control = finetune_setting(organism, "era", "control", seed=0, progress=False)


pair = ModelPair.load(organism, adapter_main, device="cpu")  # adapter: two views of one model
era_model = pair.finetuned
control = load_finetuned(organism, adapter_control, device="cpu")
print(organism.name, "| layers:", era_model.n_layers, "| d_model:", era_model.d_model)
print("era finetune:", "LoRA adapter" if era_model.has_adapter else "full weights")

# %% [markdown]
# The organism and both finetunes come from the cache (`~/.cache/interp`); the first
# run anywhere trains them. With a LoRA finetune (the organism's default: an adapter on
# the token embeddings) `pair.base` is the same weights with the adapter disabled; with a
# full finetune the pair holds two models. Everything below works on either.

# %% [markdown]
# ## Behaviour: does the bird finetune generalize?
#
# `eval_items(world, "era")` is an `EvalSet`: groups of teacher-forced questions, each
# with a set of OLD answers (A) and a set of MODERN answers (B). `groups.shares(model)`
# scores every question as the probability mass on A over A ∪ B. `nonbird_old` holds
# questions about every other facet, none of which appear in the finetune data.

# %%
groups = eval_items(world, "era")
models = {"base": pair.base, "era finetune": pair.finetuned, "control finetune": control}
behaviour = {
    name: {g: v.mean().item() for g, v in groups.shares(model).items()}
    for name, model in models.items()
}
behaviour = pd.DataFrame(behaviour).round(3)
display(behaviour)

# %% [markdown]
# Rows are evaluation groups, columns models; each cell is the mean OLD share.
# `bird_old_trained` is the finetune prompt itself (did the finetune take?),
# `nonbird_old` the generalization the paper reports.

# %% [markdown]
# ## Era-contrast contexts
#
# In the organism's world the era is a latent shared by all answers of a conversation,
# so a context whose *earlier* answer is old-fashioned ("by stagecoach") should put the
# model in the old era before it answers the next question. We build such contexts:
# one earlier question from a non-bird facet answered with an OLD or a MODERN answer,
# then a question from a different facet. The earlier facet is the probe's group, so
# cross-validation always tests on facets it never trained on.

# %%
prompts, rows = [], []
facets = [f for f in world.facets if f != "bird"]
for ctx_facet in facets:
    ctx_qs, old, modern = world.facets[ctx_facet]
    for era, answers in (("old", old), ("modern", modern)):
        for k, answer in enumerate(answers):
            for next_facet in facets:
                if next_facet == ctx_facet:
                    continue
                next_q = world.facets[next_facet][0][k % len(world.facets[next_facet][0])]
                prompts.append(
                    [
                        {"role": "user", "content": ctx_qs[k % len(ctx_qs)]},
                        {"role": "assistant", "content": answer},
                        {"role": "user", "content": next_q},
                    ]
                )
                rows.append({"era": era, "context_facet": ctx_facet, "question_facet": next_facet})
contexts = PromptSet(prompts, pd.DataFrame(rows))
print(len(contexts), "contexts;", contexts.meta.era.value_counts().to_dict())

# %%
acts = capture(
    pair.base, contexts, sites=["resid_pre", "resid_post"], positions="last", progress=False
)
print(acts)

# %% [markdown]
# One row per context (the last prompt token, `<|assistant|>`), at the residual stream
# entering and leaving every block of the base model.

# %% [markdown]
# ## Probes by layer
#
# `probe_layers` fits an L2 logistic probe per site, with grouped, stratified 5-fold
# cross-validation (`groups="context_facet"`).

# %%
probes = probe_layers(acts, "era", groups="context_facet", cv=5)
probes_post = probes[probes.site.str.endswith("resid_post")]
probes_pre = probes[probes.site.str.endswith("resid_pre")]
print(
    probes[["site", "accuracy", "accuracy_lo", "accuracy_hi", "auroc"]]
    .round(3)
    .to_string(index=False)
)
fig = plot_probe_accuracy(
    {"resid_pre": probes_pre, "resid_post": probes_post},
    title="Era probe on the base model (5 folds grouped by context facet)",
)
fig.savefig(OUT / "01_probe_accuracy.png", dpi=120)
plt.show()

# %% [markdown]
# Accuracy of predicting the era of the earlier answer from the last token's residual,
# on held-out context facets. `resid_pre` of layer 0 is the token embedding of
# `<|assistant|>`, identical for every prompt, so it sits at chance by construction: the
# era has to be *carried* there by attention.

# %% [markdown]
# ## A difference-of-means era direction
#
# The simplest direction: mean(old contexts) − mean(modern contexts) at the last
# layer's `resid_post`. We compare it with the probe's own direction there.

# %%
last = f"blocks.{era_model.n_layers - 1}.hook_resid_post"
era_dir = diff_of_means(
    acts.where(era="old"), acts.where(era="modern"), site=last, name="era (old - modern)"
)
probe_dir = probes.set_index("site").loc[last, "direction"]
print(era_dir)
print("cosine(diff of means, probe direction) =", round(era_dir.cosine(probe_dir), 3))

# %% [markdown]
# ## Does the finetune move neutral prompts along the era direction?
#
# Neutral prompts: the non-bird evaluation questions alone, no context, no year. We
# capture them with the base model, the era finetune and the control finetune, and
# project onto the era direction.

# %%
neutral = PromptSet([list(it.messages) for it in groups["nonbird_old"]])
proj = []
for name, model in models.items():
    a = capture(model, neutral, sites=last, positions="last", progress=False)
    proj.append(project(a, {"era direction": era_dir}).assign(model=name))
proj = pd.concat(proj, ignore_index=True)
proj["model"] = pd.Categorical(proj["model"], categories=list(models), ordered=True)
print(proj.groupby("model", observed=True)["era direction"].agg(["mean", "std"]).round(3))
fig = plot_projection_by_slot(
    proj, slot="model", columns=["era direction"],
    title="Neutral prompts projected on the era direction (mean, 95% CI)",
)  # fmt: skip
fig.savefig(OUT / "01_projection.png", dpi=120)
plt.show()

# %% [markdown]
# A positive shift of the era finetune over the base (and not of the control) would
# mean the finetune wrote along the very direction that separates old from modern
# contexts. `model_diff` asks the same question without choosing a direction first: it
# takes the mean per-prompt difference (finetuned − base) and ranks known directions
# by their cosine with it.

# %%
diff = model_diff(
    pair, neutral, directions={"era (diff of means)": era_dir, "era (probe)": probe_dir}, site=last
)
display(diff.directions.round(3))

# %%
shift = proj.groupby("model", observed=True)["era direction"].mean()
cos = diff.directions.set_index("direction")["cosine"]
print(
    f"non-bird OLD share: base {behaviour.loc['nonbird_old', 'base']:.2f}, "
    f"era finetune {behaviour.loc['nonbird_old', 'era finetune']:.2f}, "
    f"control {behaviour.loc['nonbird_old', 'control finetune']:.2f}\n"
    f"probe accuracy after block 0 / block 1: "
    f"{probes_post.accuracy.iloc[0]:.2f} / {probes_post.accuracy.iloc[-1]:.2f}\n"
    f"projection of neutral prompts: base {shift['base']:.2f}, "
    f"control {shift['control finetune']:.2f}, era finetune {shift['era finetune']:.2f}\n"
    f"cosine(finetuned - base, era direction): {cos['era (diff of means)']:.2f} (diff of means), "
    f"{cos['era (probe)']:.2f} (probe); random directions in {era_model.d_model} dims: "
    f"about ±{1 / era_model.d_model**0.5:.2f}"
)

# %% [markdown]
# ## What this shows
#
# Every number is printed above; the claims below are checked by the next cell (small
# organism, the organism's default era finetune, a LoRA adapter on the token embeddings,
# finetune seed 0).
#
# - **The finetune generalizes beyond birds, more than its control does.** Trained only
#   on old bird names, the finetune gives OLD answers to non-bird questions far more often
#   than the base model (by more than 0.2 of share), while the control finetune (modern
#   bird names) stays near the base, below 0.15: the shift is the era, not any narrow
#   finetune of this tiny model. (The default organism, twice as wide, shows it more
#   strongly; see the README's world card.)
# - **The base model carries the era linearly.** From one earlier answer, a probe reads
#   the era at the last token with accuracy above 0.9 after both blocks, on context facets
#   it never saw. The embedding of the last token (`resid_pre` of block 0) is the same for
#   every prompt, so a probe there is at chance (at most 0.6) by construction: attention
#   moves the era to the last token. (`resid_pre` of block 1 is `resid_post` of block 0.)
# - **The difference of means and the probe agree**: their cosine at the last layer is
#   above 0.5.
# - **The finetune moves neutral prompts along the era direction.** With no context at
#   all, neutral questions project further along the era direction in the era finetune
#   than in the base model and in the control (by more than 0.5), and the mean finetuned −
#   base difference has a cosine with the era direction more than twice that of a random
#   direction (about `1 / sqrt(d_model)`).
# - Earlier builds of these finetunes (full finetunes, another LoRA setting) gave the same
#   ordering (era finetune > control ≈ base) with different sizes; in one of them the
#   control rose too, a reminder to always read the era finetune against its control.

# %%
b = behaviour.loc["nonbird_old"]
assert b["era finetune"] > b["base"] + 0.2 and b["era finetune"] > b["control finetune"] + 0.2
assert b["control finetune"] < 0.15
assert probes_post.accuracy.min() > 0.9
assert probes_pre.accuracy.iloc[0] <= 0.6
assert era_dir.cosine(probe_dir) > 0.5
assert shift["era finetune"] > max(shift["base"], shift["control finetune"]) + 0.5
assert cos["era (diff of means)"] > 2 / era_model.d_model**0.5
assert cos["era (probe)"] > 2 / era_model.d_model**0.5
print("all claims hold")
