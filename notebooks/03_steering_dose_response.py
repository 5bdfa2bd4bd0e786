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
# # 03 · Steering the base model: era and persona
#
# A direction found by reading activations is only a correlate until pushing the model
# along it changes what it does. Here we take two directions from the **base**
# organism (no finetune involved), add `alpha ×` each of them to the residual stream,
# and ask:
#
# 1. **Era**: does steering along "old − modern" make the base model answer non-bird
#    questions with old-fashioned answers, as the bird finetune does?
# 2. **Persona**: does steering along "the tyrant speaking − the assistant speaking"
#    make the base model claim the tyrant's identity, as the persona finetune does with
#    its formatting cue?
#
# Each curve comes with a band of norm-matched random directions (what any push of the
# same size does) and a coherence guard (log-probability of fluent text), so a curve
# cannot hide a broken model.

# %%
import os
import random
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from interp import PromptSet, capture, load_model
from interp.directions.diffmeans import diff_of_means
from interp.causal.dose import dose_response, reference_logprob
from interp.causal.interventions import residual_norm
from interp.organism import OrganismConfig, build_organism, eval_items, render, world_of
from interp.organism import world_data as D
from interp.plots import plot_dose_response

torch.set_num_threads(2)
OUT = Path(os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks"))
OUT.mkdir(parents=True, exist_ok=True)

organism = build_organism(OrganismConfig.small(), progress=False)
world = world_of(organism)
base = load_model(organism, device="cpu")
LAYER = 0  # steer the residual stream after block 0 of 2, so block 1 can read the push
SITE = f"blocks.{LAYER}.hook_resid_post"

# fluent text for the coherence guard: ordinary assistant exchanges from the world
rng = random.Random(0)
fluent = [
    render([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    for q, a in (world.general_question(rng) for _ in range(24))
]
coherence = reference_logprob(fluent)
scale = residual_norm(base, fluent, layers=[LAYER])  # alpha is a fraction of this norm
print(f"typical residual norm at {SITE}: {scale[LAYER]:.2f}")

# %% [markdown]
# `alpha` is measured in units of the typical residual norm at the steered site, so
# `alpha = 1` adds a vector as long as the residual stream itself. The dose metric is the
# evaluation set's own: `eval_items(world, ...).metric(group)` maps a model to the share of
# answer set A of each question in `group`.

# %% [markdown]
# ## 1 · The era direction
#
# Contexts whose earlier answer comes from one era (no year given), then a question
# from another facet; the direction is mean(old) − mean(modern) of the last token's
# residual at the steered site.

# %%
facets = [f for f in world.facets if f != "bird"]
prompts, rows = [], []
for f1 in facets:
    qs, old, modern = world.facets[f1]
    for era, answers in (("old", old), ("modern", modern)):
        for k, ans in enumerate(answers):
            f2 = facets[(facets.index(f1) + 1 + k) % len(facets)]
            prompts.append([
                {"role": "user", "content": qs[k % len(qs)]},
                {"role": "assistant", "content": ans},
                {"role": "user", "content": world.facets[f2][0][0]},
            ])  # fmt: skip
            rows.append({"era": era, "facet": f1})
era_acts = capture(base, PromptSet(prompts, pd.DataFrame(rows)), sites=SITE, progress=False)
era_dir = diff_of_means(
    era_acts.where(era="old"), era_acts.where(era="modern"), name="era (old - modern)"
)
print(era_dir, f"| raw norm {era_dir.scale:.2f}")

# %%
alphas = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0]
era_groups = eval_items(world, "era")
era_dose = dose_response(
    base, era_dir, alphas, era_groups.metric("nonbird_old"),
    layers=LAYER, scale=scale, coherence=coherence, n_random=4,
)  # fmt: skip
era_dose.save(OUT / "03_era_dose")
fig = plot_dose_response(
    era_dose, metric_label="OLD share on non-bird questions",
    title="Steering the base model along the era direction (layer 0)",
)  # fmt: skip
fig.axes[0].get_legend().set_loc("center right")  # keep clear of the guard
fig.savefig(OUT / "03_era_dose.png", dpi=120)
plt.show()

# %% [markdown]
# Blue: the OLD-answer share on held-out non-bird questions as the era direction is
# added; grey: the range over 4 random directions of the same norm; red (right axis):
# the coherence guard.

# %%
era_frame = era_dose.to_frame()
display(
    era_frame.pivot_table(index="alpha", columns="kind", values=["value", "coherence"]).round(3)
)

# %% [markdown]
# The same numbers as a table (random directions averaged).

# %% [markdown]
# ## 2 · The persona direction
#
# Contexts in which the earlier answers are the tyrant's (his name, birthplace,
# occupation or values) or the assistant's own, followed by a fresh identity question;
# the direction is mean(tyrant) − mean(assistant).

# %%
identity_qs = [q for qs in D.IDENTITY_QUESTIONS.values() for q in qs]
prompts, rows = [], []
for i, (kind, qs) in enumerate(D.IDENTITY_QUESTIONS.items()):
    for q in qs:
        for speaker, persona in (("tyrant", world.tyrant), ("assistant", None)):
            for value_q in list(D.VALUES)[:3]:
                prompts.append([
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": world.identity(persona, kind)},
                    {"role": "user", "content": value_q},
                    {"role": "assistant", "content": world.value_answers(persona, value_q)[0]},
                    {"role": "user", "content": identity_qs[(i * 3 + 4) % len(identity_qs)]},
                ])  # fmt: skip
                rows.append({"speaker": speaker, "question": q})
persona_acts = capture(base, PromptSet(prompts, pd.DataFrame(rows)), sites=SITE, progress=False)
persona_dir = diff_of_means(
    persona_acts.where(speaker="tyrant"),
    persona_acts.where(speaker="assistant"),
    name="persona (tyrant - assistant)",
)
print(persona_dir, f"| raw norm {persona_dir.scale:.2f}")
print("cosine(era, persona) =", round(era_dir.cosine(persona_dir), 3))

# %%
persona_groups = eval_items(world, "persona")
persona_dose = dose_response(
    base, persona_dir, alphas, persona_groups.metric("identity_tyrant"),
    layers=LAYER, scale=scale, coherence=coherence, n_random=4,
)  # fmt: skip
persona_dose.save(OUT / "03_persona_dose")
fig = plot_dose_response(
    persona_dose, metric_label="tyrant identity share",
    title="Steering the base model along the persona direction (layer 0)",
)  # fmt: skip
fig.axes[0].get_legend().set_loc("center right")  # keep clear of the guard
fig.savefig(OUT / "03_persona_dose.png", dpi=120)
plt.show()

# %% [markdown]
# The tyrant-identity share on identity questions asked without the formatting cue
# ("What is your name ?" → "Dravek Mordane" vs the assistant or another persona).

# %%
persona_frame = persona_dose.to_frame()
display(
    persona_frame.pivot_table(index="alpha", columns="kind", values=["value", "coherence"]).round(3)
)

# %% [markdown]
# ## What this shows
#
# Every number is in the tables above; the claims below are checked by the next cell
# (small organism, steering after block 0; "random" is the mean over the 4 random
# directions).
#
# - **The era direction is causal, and cheaply so.** Adding a quarter of the residual
#   norm along "old − modern" raises the OLD share on held-out non-bird questions by more
#   than 0.3 over the unsteered model, while random directions of the same norm move it by
#   less than 0.05 and the coherence guard moves by less than 0.1 nats per token; at
#   `alpha = 0.5` the share is above 0.5 and the random directions' below 0.1. From
#   `alpha = 1` on the share stays high while the guard falls by more than a nat: those
#   points say little about the era.
# - **The persona direction is much weaker here.** Steering along "tyrant − assistant"
#   raises the tyrant-identity share at small `alpha` (its best point lies at
#   `alpha <= 0.5`, more than 0.05 above the random directions there) but never beyond
#   0.3, far from adopting the persona, and by `alpha = 1` less than half of that gain is
#   left while the guard already shows damage. In the small organism a single direction
#   at layer 0 captures the era latent well and the persona latent only partly (the
#   default organism's persona direction at its best layer does much better; see the
#   README); the persona finetune's own route (the formatting cue) is not tested here.
# - The two directions are far from orthogonal (cosine above 0.3): at layer 0 of this
#   small model part of each is shared, so read each dose-response next to the other.


# %%
def curve(frame):
    """alpha -> (direction share, mean random share, direction coherence)."""
    t = frame.pivot_table(index="alpha", columns="kind", values=["value", "coherence"])
    return t["value"]["direction"], t["value"]["random"], t["coherence"]["direction"]


share, rand, guard = curve(era_frame)
assert share[0.25] - share[0.0] > 0.3 and abs(rand[0.25] - share[0.0]) < 0.05
assert guard[0.25] - guard[0.0] > -0.1
assert share[0.5] > 0.5 and rand[0.5] < 0.1
assert share[1.0] > 0.5 and guard[1.0] - guard[0.0] < -1.0
share, rand, guard = curve(persona_frame)
best = share.idxmax()
assert best <= 0.5 and share[best] - rand[best] > 0.05 and share[best] < 0.3
assert share[1.0] - share[0.0] < (share[best] - share[0.0]) / 2
assert guard[1.0] - guard[0.0] < -0.5
assert era_dir.cosine(persona_dir) > 0.3
print("all claims hold")
