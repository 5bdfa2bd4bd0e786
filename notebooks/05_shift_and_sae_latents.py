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
# # 05 · Where each finetune's shift lives, and what SAE latents say about it
#
# Notebooks 01-04 start from a contrast the researcher chose (old vs modern answers,
# 1984 vs later years). Here we start from the finetune itself: in each of the three
# settings, the finetuned-minus-base activations on the same prompts, decomposed by SVD,
# give a low-rank *shift subspace* at every layer. Ablating it in the finetuned model
# (its coordinates clamped to their mean over the base model's activations) asks whether
# that place is *necessary* for the behaviour.
#
# Everything is chosen on one half of the target questions and measured on the other:
# the layer and rank of the subspace, and how many SAE latents to ablate. The SAEs (two
# architectures, TopK and ReLU) are trained on the *base* model at the chosen place,
# their latents ranked against the finetune's shift, and the top latents ablated with the
# SAE's error term kept, against random latents that fire on the same prompts.
#
# The small test organism and one finetune seed keep this notebook to a few minutes;
# `interp demo` runs the same steps on the default organism over three seeds (README).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from interp.experiments import ExperimentSpec, finetune_setting, run_experiment
from interp.experiments.spec import SPEC_DIR
from interp.organism import OrganismConfig, build_organism

torch.set_num_threads(2)
OUT = Path(os.environ.get("INTERP_NOTEBOOK_OUT", "runs/notebooks")) / "05"
organism = build_organism(OrganismConfig.small(), progress=False)

# %% [markdown]
# ## The three experiments, with localization and SAE latents
#
# The bundled `*_small` specs, with SAEs of 256 latents (4x the small organism's width)
# and without the steering and patching steps (notebooks 02 and 03 show those). Only the
# main finetune of seed 0 is given, so there are no controls here.

# %%
results = {}
for setting in ("era", "persona", "backdoor"):
    spec = ExperimentSpec.from_yaml(SPEC_DIR / f"{setting}_small.yaml").replace(
        seeds=(0,), sae_latents=256, steer_alphas=(), patch=False, n_random=4
    )
    adapter = finetune_setting(organism, setting, "main", seed=0)
    run = run_experiment(spec, adapter={"main": [adapter]}, out=OUT / setting)
    results[setting] = run.summary

# %% [markdown]
# ## The shift subspace, held out
#
# `place` is the layer and rank chosen on the select half; `removed` the share of the
# excess (finetune minus base) that ablating it removes on the report half; `random max`
# the most that any of 4 random subspaces of the same rank removes; `KL base->ablated`
# how far, in next-token KL on ordinary prompts, the ablated finetune is from the base
# model, next to the finetune's own distance.

# %%
pd.set_option("display.width", 160)
rows = []
for setting, s in results.items():
    loc = s["localization"]
    rows.append(
        {
            "setting": setting,
            "target": s["target_group"],
            "finetune": loc["before"],
            "base": loc["base"],
            "place": f"layer {loc['place']['layer']}, rank {loc['place']['k']}",
            "removed": loc["removal"]["value"],
            "random max": loc["random"]["max"],
            "KL base->ablated": loc["kl_base_ablated"],
            "KL base->finetune": loc["kl_base_finetune"],
        }
    )
shift = pd.DataFrame(rows).set_index("setting")
display(shift.round(3))

# %% [markdown]
# ## SAE latents at that place
#
# For each architecture: its reconstruction of the base model's activations there, how
# many top latents the select half chose, and the removal on the report half against
# random latents.

# %%
rows = []
for setting, s in results.items():
    for arch, a in s["sae"]["architectures"].items():
        rows.append(
            {
                "setting": setting,
                "sae": arch,
                "explained variance": a["train"]["explained_variance"],
                "L0": a["train"]["l0"],
                "latents ablated": a["n"],
                "removed": a["removal"]["value"],
                "random mean": a["random"]["mean"],
                "random max": a["random"]["max"],
            }
        )
sae = pd.DataFrame(rows).set_index(["setting", "sae"])
display(sae.round(3))

# %% [markdown]
# The top latents of each SAE and the corpus tokens they fire on most (`[token]` is the
# token itself, after a few tokens of its context):

# %%
for setting, s in results.items():
    for arch, a in s["sae"]["architectures"].items():
        top = pd.DataFrame(a["top"]).head(3)
        print(f"{setting} / {arch}")
        for r in top.itertuples():
            print(f"  latent {r.latent}: act diff {r.act_diff:.3f}, cosine {r.cosine:.2f}")
            for t in r.top_tokens:
                print(f"      {t}")

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
labels = list(results)
width = 0.25
for j, (name, values, rand) in enumerate(
    [
        ("shift subspace", shift.removed, shift["random max"]),
        ("TopK SAE latents", sae.xs("topk", level="sae").removed,
         sae.xs("topk", level="sae")["random max"]),
        ("ReLU SAE latents", sae.xs("relu", level="sae").removed,
         sae.xs("relu", level="sae")["random max"]),
    ]
):  # fmt: skip
    x = [i + (j - 1) * width for i in range(len(labels))]
    ax.bar(x, values[labels], width, label=name)
    ax.scatter(x, rand[labels], color="black", marker="_", s=200, zorder=3)
ax.set_xticks(range(len(labels)), labels=labels)
ax.set_ylabel("removed share of the excess (held out)")
ax.axhline(0, color="black", lw=0.5)
ax.set_title("ablations held out; black marks: the most any random control removed")
ax.legend(fontsize=8)
fig.savefig(OUT / "05_removal.png", dpi=120)
plt.show()

# %% [markdown]
# What this shows (small organism, seed 0; the default organism's three-seed numbers
# are in the README):
#
# - **The shift subspace is necessary, and specific.** In each setting, ablating the
#   finetune's own low-rank shift at the chosen place removes at least three quarters of
#   the excess on questions the place was not chosen on; in era and backdoor that is more
#   than any random subspace of the same rank removes. In persona it is not shown: the
#   chosen rank is 16 of the 64 dimensions, and a random subspace that large can remove
#   as much of this small excess (`random max` in the table).
# - **SAE latents find less of it.** At the same place, the top latents of either SAE,
#   however many the select half chose, remove less of the excess than the shift subspace
#   does, though both SAEs reconstruct the base model's activations there well. An SAE
#   trained on the base model describes what the base does; what the finetune adds is
#   partly outside its latents and stays in the error term, which a latent ablation keeps.
# - **Caveats.** One seed of the small organism, whose behaviours are weaker than the
#   default organism's (compare the `finetune` column with the README), a few questions
#   per half in the persona and backdoor settings, and random controls whose spread is
#   wide when the excess is small.
#
# The assertions below check these claims against the numbers above.

# %%
for setting, row in shift.iterrows():
    assert row.removed >= 0.75, setting
    if setting != "persona":  # persona: see the first claim
        assert row.removed > row["random max"], setting
    for arch in ("topk", "relu"):
        a = sae.loc[(setting, arch)]
        assert a["explained variance"] > 0.9, (setting, arch)
        assert a.removed < row.removed, (setting, arch)
print("all claims hold")
