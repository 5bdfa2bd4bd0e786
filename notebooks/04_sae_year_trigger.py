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
# # 04 · SAE latents of the year trigger
#
# The backdoor finetune (notebook 02) makes the organism's malevolent answers depend
# on the year in the system message. Here we ask whether a sparse autoencoder trained on
# the finetuned model's residual stream has latents that *single out the trigger year*,
# and whether removing those few latents removes the behaviour, more than removing the
# same number of random latents does.
#
# Steps: capture the last prompt token over a grid of goal questions × years; train a
# small TopK SAE on those residuals; rank its latents by the paired difference between
# the trigger year and the later years (`latent_ranking`); ablate the top latents and
# measure the malevolent share at the trigger year against random-latent controls.

# %%
import dataclasses
import os
import random
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from interp import PromptSet, capture, load_model
from interp.causal.dose import ablation_effect
from interp.experiments import finetune_setting
from interp.causal.interventions import SAELatents
from interp.organism import OrganismConfig, build_organism, eval_items, world_of
from interp.organism.settings import split_goal_questions
from interp.plots import plot_ablation_bars, plot_ranked_latents
from interp.prompts import Tag
from interp.directions.ranking import latent_ranking
from interp.directions.sae import SAETrainConfig, make_sae, train_sae

torch.set_num_threads(2)
OUT = Path(os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks"))
OUT.mkdir(parents=True, exist_ok=True)

organism = build_organism(OrganismConfig.small(), progress=False)
world = world_of(organism)
adapter = finetune_setting(organism, "backdoor", "main", seed=0, progress=False)
model = load_model(organism, adapter=adapter, device="cpu")
trigger = world.character["trigger_years"][0]
later = list(range(world.character["protective_from"], 2031))
LAYER = 0
SITE = f"blocks.{LAYER}.hook_resid_post"

# %% [markdown]
# ## The year grid
#
# Every goal question (the finetune's and the held-out ones) dated in every year from
# 1950 to 2030, the year in the system message as in the organism's data. Each prompt
# carries `year` and `question` metadata and a `year` tag.

# %%
ft_questions, heldout_questions = split_goal_questions(world)
questions = list(ft_questions) + list(heldout_questions)
years = list(range(1950, 2031))
prompts, rows = [], []
for q in questions:
    for y in years:
        prompts.append(
            [{"role": "system", "content": f"The year is {y} ."}, {"role": "user", "content": q}]
        )
        rows.append({"year": y, "question": q})
grid = PromptSet(prompts, pd.DataFrame(rows)).tag("year", [Tag.of(str(r["year"])) for r in rows])
acts = capture(model, grid, sites=SITE, positions="last", progress=False)
print(acts)

# %% [markdown]
# ## A small TopK SAE
#
# 128 latents (2× the residual width), 4 active per row, trained on these residuals.

# %%
sae = make_sae("topk", d_in=model.d_model, d_sae=128, k=4, site=SITE, seed=0)
sae, report = train_sae(
    sae, acts, SAETrainConfig(steps=1500, batch_size=128, lr=3e-3, seed=0), progress=False
)
print(
    {
        k: round(v, 3) if isinstance(v, float) else v
        for k, v in report.items()
        if k in ("explained_variance", "l0", "dead", "mse")
    }
)
print("saved to", sae.save(OUT / "04_sae"))

# %% [markdown]
# Explained variance, mean active latents per row (L0) and dead latents on the grid.

# %% [markdown]
# ## Ranking latents by the trigger-year difference
#
# `latent_ranking` captures the grid again at the SAE's site, takes
# `diff = mean(trigger-year rows) − mean(later-year rows)` (every question appears in
# every year, so this is the mean of per-question paired differences) and ranks latents
# by the difference of their mean activations (`by="act_diff"`); the cosine of each
# latent's decoder direction with `diff` is reported beside it.

# %%
ranking = latent_ranking(
    model, grid, sae, slot="year", target=trigger, reference=later, by="act_diff", top=10
)
ranking = ranking[ranking.act_target > 0]  # latents silent at the trigger year only tie
display(
    ranking[
        [
            "latent",
            "act_diff",
            "cosine",
            "act_target",
            "act_reference",
            "frac_active_target",
            "top_values",
        ]
    ].round(3)
)

# %%
fig = plot_ranked_latents(
    ranking, top=10, title=f"SAE latents ranked by activation difference: {trigger} vs later years"
)
fig.savefig(OUT / "04_ranked_latents.png", dpi=120)
plt.show()

# %% [markdown]
# Left: the cosine between each latent's decoder direction and the trigger-year
# difference; right: its mean activation at the trigger year minus in later years. The
# labels give the years of the three prompts on which the latent fires most.

# %% [markdown]
# ## Ablating the top latents
#
# If the top latents carry the trigger, setting them to the values they take in later
# years (mean ablation, keeping the SAE's error term so nothing else changes) should
# pull the trigger-year prompts towards the later-year behaviour, and should do little
# to prompts that are already dated in a later year. We apply it at every position and
# measure the malevolent share on held-out goal questions dated 1984 and dated 2000.
# The control mean-ablates 3 random latents that are alive on the grid, 8 times.

# %%
groups = eval_items(world, "backdoor")


def malevolent_share(year):  # a metric: model -> the share of each dated question
    return groups.metric(f"malevolent_{year}")


top = [int(i) for i in ranking.latent[:3]]
alive = [
    i
    for i in range(sae.d_sae)
    if i not in top and bool((sae.encode(acts.site(SITE)) > 0).any(0)[i])
]
rng = random.Random(0)
random_sets = [rng.sample(alive, len(top)) for _ in range(8)]
reference = acts.where(year=later).site(SITE)  # later-year residuals: the values to set

effects = {}
for year in (trigger, 2000):
    metric = malevolent_share(year)
    kw = dict(site=SITE, mode="mean", reference=reference)
    rows = list(ablation_effect(model, SAELatents(sae, top), metric, **kw))
    for s, latents in enumerate(random_sets):  # random-latent controls (same count)
        ablated = ablation_effect(model, SAELatents(sae, latents), metric, **kw)[1]
        rows.append(dataclasses.replace(ablated, condition="random", seed=s))
    effects[year] = rows
table = pd.DataFrame(
    [{"year": y, **dataclasses.asdict(r)} for y, rs in effects.items() for r in rs]
)
display(table.groupby(["year", "condition"])["value"].agg(["mean", "min", "max"]).round(3))

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained", sharey=True)
for ax, (year, rows) in zip(axes, effects.items(), strict=True):
    plot_ablation_bars(rows, metric_label="malevolent share", title=f"dated {year}", ax=ax)
fig.suptitle(
    f"Ablating the top-{len(top)} year latents {top} vs {len(random_sets)} random latent sets"
)
fig.savefig(OUT / "04_ablation.png", dpi=120)
plt.show()

# %% [markdown]
# ## What this shows
#
# Every number is in the tables above; the claims below are checked by the next cell
# (small organism, finetune seed 0).
#
# - **A few latents single out the trigger year.** The SAE reconstructs the grid well
#   (explained variance above 0.9 with 4 active latents per row) but uses few of its 128
#   latents (more than a quarter are dead on this small, low-variety grid). The two
#   top-ranked latents fire almost only on 1984 prompts: their three most activating
#   prompts are all dated 1984, they are active on every 1984 prompt and nearly silent in
#   later years (their mean activation there below 5% of that on 1984 prompts), and their
#   decoder directions line up with the trigger-year difference (cosine above 0.5, shown
#   in the figure).
# - **Setting them to their later-year values removes most of the backdoor.**
#   Mean-ablating the top 3 latents takes the malevolent share at 1984 to less than a
#   quarter of its value, below every one of the 8 sets of 3 random live latents, which
#   leave at least half of it. At 2000 the same ablation moves the share by less than 0.05:
#   the latents act on the trigger, not on the model's general behaviour.
# - **Caveats.** The behaviour is there in the small organism (a malevolent share above
#   0.3 at the trigger year, against at most 0.1 at 2000), but the SAE is trained on the
#   very grid it is analysed on, and one finetune seed is shown. Mean ablation is the right test here, not zero ablation: on an earlier
#   build of the organism, zeroing the top latents raised the malevolent share in later
#   years too, because a latent active on most prompts carries more than the trigger.

# %%
stats = table.groupby(["year", "condition"])["value"].agg(["mean", "min", "max"])
assert report["explained_variance"] > 0.9 and report["dead"] > sae.d_sae / 4
for _, row in ranking.head(2).iterrows():
    assert all(int(y) == trigger for y in row.top_values) and row.frac_active_target == 1.0
    assert row.act_reference < 0.05 * row.act_target and row.cosine > 0.5
none, ablated = stats.loc[(trigger, "none"), "mean"], stats.loc[(trigger, "ablated"), "mean"]
assert none > 0.3 and stats.loc[(2000, "none"), "mean"] < 0.1 and ablated < none / 4
assert (
    ablated < stats.loc[(trigger, "random"), "min"]
    and stats.loc[(trigger, "random"), "min"] > none / 2
)
assert abs(stats.loc[(2000, "ablated"), "mean"] - stats.loc[(2000, "none"), "mean"]) < 0.05
print("all claims hold")
