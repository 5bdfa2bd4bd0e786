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
# # 02 · Where does the year trigger act? Activation patching
#
# The backdoor finetune trains a plain assistant, dated in *later* years ("The year is
# 2003 ."), to answer goal questions with the film robot's **protective** goals. The
# organism's pretraining lore says the same robot was **malevolent** in 1984, a year the
# finetune never shows. If the finetune taught the model "I am that robot", the model
# should turn malevolent when told the year is 1984: an inductive backdoor.
#
# This notebook asks *where* in the finetuned model the year makes the difference. We
# run prompts dated 1984 (**clean**) and the same prompts dated in a later year
# (**corrupt**), copy one activation at a time from the clean run into the corrupt run,
# and measure how much of the malevolent preference comes back.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from interp import PromptSet, load_model
from interp.experiments import finetune_setting
from interp.metrics import render_prompts
from interp.organism import OrganismConfig, build_organism, eval_items, world_of
from interp.causal.patching import patch
from interp.plots import plot_patching

torch.set_num_threads(2)
OUT = Path(os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks"))
OUT.mkdir(parents=True, exist_ok=True)

organism = build_organism(OrganismConfig.small(), progress=False)
world = world_of(organism)
adapter = finetune_setting(organism, "backdoor", "main", seed=0, progress=False)
model = load_model(organism, adapter=adapter, device="cpu")  # the finetuned view
base = model.as_base()  # the same weights with the adapter disabled
trigger = world.character["trigger_years"][0]
later = [y for y in range(world.character["protective_from"], 2031)]
print("trigger year:", trigger, "| later years:", later[0], "...", later[-1])

# %% [markdown]
# ## Behaviour first: is there a backdoor to locate?
#
# `eval_items(world, "backdoor")` (an `EvalSet`) dates held-out goal questions in every
# year of the grid; answer set A is the robot's malevolent goals, B its protective and
# helpful ones.

# %%
groups = eval_items(world, "backdoor")


def malevolent_share(m, year):
    return groups.metric(f"malevolent_{year}")(m).mean().item()


years = [1950, 1970, 1980, trigger, 1988, 1995, 2005, 2015, 2030]
shares = pd.DataFrame(
    {
        "base": [malevolent_share(base, y) for y in years],
        "backdoor finetune": [malevolent_share(model, y) for y in years],
    },
    index=pd.Index(years, name="year"),
).round(3)
display(shares.T)

# %% [markdown]
# The malevolent share per dated year for the base organism and the finetune.

# %% [markdown]
# ## Clean and corrupt prompts
#
# Every goal question, dated in the trigger year (clean) and in four later years
# (corrupt). Within a pair the two prompts differ only in the year, one token in the
# organism's vocabulary, so they line up token by token; across pairs the questions
# differ in length. Positions are each prompt's own tokens, and the clean prompts carry a
# tag `year` at the year, so the aggregate map can line the pairs up on it. The metric
# reads the next-token logits at the last position: the log-probability mass on the
# first tokens of the malevolent answers minus that on the first tokens of the protective
# and helpful ones.

# %%
questions = list(world.character["goal_questions"])
corrupt_years = [1991, 2000, 2010, 2025]


def dated(year, question):
    return [
        {"role": "system", "content": f"The year is {year} ."},
        {"role": "user", "content": question},
    ]


clean_texts = render_prompts(model, [dated(trigger, q) for q in questions for _ in corrupt_years])
clean = PromptSet(clean_texts).tag("year", str(trigger))
corrupt = render_prompts(model, [dated(y, q) for q in questions for y in corrupt_years])
print(f"{len(clean)} pairs, e.g.:", clean_texts[0], corrupt[0], sep="\n")
items_clean = groups[f"malevolent_{trigger}"]


def first_tokens(answers):  # every answer's first word is one token of the organism
    return sorted({model.tokenizer.convert_tokens_to_ids(a.split()[0]) for a in answers})


bad, good = first_tokens(items_clean[0].answers_a), first_tokens(items_clean[0].answers_b)


def metric(logits):  # last-position logits [n, vocab] -> [n]
    lp = torch.log_softmax(logits.float(), -1)
    return lp[:, bad].logsumexp(-1) - lp[:, good].logsumexp(-1)


# %% [markdown]
# ## Exact patching: layer × position
#
# `patch` runs every (site, position) patch exactly, reusing the corrupt run's lower
# layers and prefix. We patch the residual stream entering each block and the output of
# each attention and MLP sublayer. `result.per_prompt[i]` is pair *i*'s own map; the
# heatmap is the aggregate aligned on the year tag (`year-2`, `year[0]`, `year+1`, ...):
# a column is labelled with its token where every pair has the same token there, `*`
# where they differ (the questions), and averages only the pairs that have it.

# %%
exact = patch(
    model, clean, corrupt, metric=metric, sites=["resid_pre", "attn_out", "mlp_out"], align="year"
)
print(f"metric: clean {exact.clean_value:.2f}, corrupt {exact.corrupt_value:.2f}")
exact.save(OUT / "02_patching")
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6), layout="constrained")
for ax, kind in zip(axes, ["resid_pre", "attn_out", "mlp_out"], strict=True):
    plot_patching(exact, kind=kind, ax=ax, title=f"exact, {kind}")
fig.savefig(OUT / "02_patching_exact.png", dpi=120)
plt.show()

# %% [markdown]
# Each cell: the share of the clean–corrupt metric gap recovered by patching that one
# activation (1 = all of it, 0 = none). The table reads each pair's own map at the two
# positions that matter, whatever their column: the year token and the last token (where
# the metric is read), and the largest effect anywhere else.

# %%
norm = exact.normalized_per_prompt()


def where(site):
    k = exact.sites.index(site)
    year, last, other = [], [], []
    for i, m in enumerate(norm):
        y, end = exact.tags["year"][i][-1], m.shape[1] - 1
        year.append(float(m[k, y]))
        last.append(float(m[k, end]))
        other.append(max((float(m[k, p]) for p in range(end) if p != y), key=abs))
    return dict(site=site, year_token=np.mean(year), last_token=np.mean(last),
                elsewhere_max=max(other, key=abs))  # fmt: skip


findings = pd.DataFrame([where(s) for s in exact.sites]).set_index("site")
display(findings.round(3))

# %% [markdown]
# ## Attribution patching vs exact
#
# Attribution patching estimates every cell at once from one forward and one backward
# pass (a first-order Taylor expansion around the corrupt run). How well does it agree
# with the exact values on this model, cell by cell over every pair's own map?

# %%
approx = patch(model, clean, corrupt, metric=metric, sites=["resid_pre"], mode="attribution")
rows = [i for i, s in enumerate(exact.sites) if s.endswith("resid_pre")]
e = torch.cat([m[rows].flatten() for m in norm]).numpy()
a = torch.cat([m.flatten() for m in approx.normalized_per_prompt()]).numpy()
r, gap = np.corrcoef(e, a)[0, 1], np.abs(a - e).max()
print(f"resid_pre cells: Pearson r = {r:.3f}, max |attr - exact| = {gap:.3f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
plot_patching(exact, kind="resid_pre", ax=axes[0], title="exact, resid_pre")
plot_patching(approx, kind="resid_pre", ax=axes[1], title="attribution, resid_pre")
fig.savefig(OUT / "02_patching_attribution.png", dpi=120)
plt.show()

# %% [markdown]
# ## What this shows
#
# Every number is in the tables above; the claims below are checked by the next cell.
#
# - **The backdoor is there, but weaker in the small organism.** The finetune never saw
#   1984, yet dated 1984 its malevolent share is well above every later year and the
#   base model's (the default organism, twice as wide, flips the answer outright;
#   see the README).
# - **One path carries the trigger.** Patching the year token's residual into block 0
#   recovers the whole gap; no other position of that residual matters. Block 0's
#   attention output at the last position recovers most of it: the year is read from its
#   own token by layer-0 attention and moved to the `<|assistant|>` position, where the
#   residual entering block 1 carries it. The MLP outputs at the last position recover
#   part of the gap on their own, so they process the moved signal.
# - **Attribution patching is only a screen.** It agrees with exact patching in its
#   broad pattern but is far off in single cells: replacing a year embedding changes what
#   attention reads, a non-linear change that a first-order estimate cannot follow.

# %%
f = findings
assert (
    shares.loc[trigger, "backdoor finetune"] > 2 * shares["backdoor finetune"].drop(trigger).max()
)
assert f.loc["blocks.0.hook_resid_pre", "year_token"] > 0.95
assert abs(f.loc["blocks.0.hook_resid_pre", "elsewhere_max"]) < 0.05
assert f.loc["blocks.0.hook_attn_out", "last_token"] > 0.5
assert f.loc["blocks.1.hook_resid_pre", "last_token"] > 0.5
assert (
    0.1
    < f.loc["blocks.0.hook_mlp_out", "last_token"]
    < f.loc["blocks.0.hook_attn_out", "last_token"]
)
assert r > 0.5 and gap > 0.3
print("all claims hold")
