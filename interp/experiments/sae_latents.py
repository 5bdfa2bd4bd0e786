"""Step 7 of an experiment: SAE latents of the finetune's shift, where step 6 found it.

At the place :mod:`interp.experiments.localize` chose (a site of one layer), for each
architecture of :data:`ARCHITECTURES`:

1. an SAE of ``spec.sae_latents`` latents is trained on the *base* model's activations at
   that site, on every token of :data:`N_DOCS` documents of the organism's corpus (or of
   the contrast prompts for a model without a world), and its reconstruction is reported;
2. in every seed, its latents are ranked against the finetune's own activation
   difference on the select half of the target questions: decoder cosine with the mean
   difference, and the difference of mean encoder activations (finetuned minus base);
   the top latents' most activating tokens in the corpus are listed;
3. the top ``n`` latents by activation difference are ablated in the finetuned model
   (their activations clamped to their mean over the base model's activations on the
   select prompts, as the shift subspace is; the SAE's error term kept:
   ``x + decode(z') - decode(z)``), ``n`` of :data:`COUNTS` (fewer than the SAE's
   latents) chosen on the select half (the smallest within 0.05 of the best removal,
   pooled over the seeds) and the removal of the excess measured on the report half
   (seeds with no excess there left out, as in step 6), against ``n_random`` sets of
   ``n`` random latents that fire on the same prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import torch

from interp.causal.interventions import SAELatents, ablate
from interp.causal.shift import pooled_removal, removal
from interp.directions.ranking import rank_latents
from interp.directions.sae import SAETrainConfig, evaluate_sae, make_sae, train_sae
from interp.experiments.finetunes import Placement
from interp.experiments.localize import MIN_EXCESS, TOLERANCE, opened, split_halves
from interp.experiments.results import write_table
from interp.metrics.evalset import EvalSet
from interp.metrics.stats import mean_ci
from interp.models import Model, ModelPair
from interp.organism.documents import sample_document
from interp.organism.world import World
from interp.record.capture import capture

__all__ = ["ARCHITECTURES", "sae_latents"]

ARCHITECTURES = {"topk": dict(k=16), "relu": {}}  # name -> config fields beyond the sizes
TRAIN = SAETrainConfig(steps=1500, batch_size=256, lr=2e-3, l1_coefficient=3e-3, log_every=500)
N_DOCS = 400
COUNTS = (1, 2, 4, 8, 16, 32)  # how many top latents an ablation removes (more: slower)
TOP = 10  # latents listed (with their most activating tokens) per architecture and seed


def _corpus(world: World | None, data) -> list:
    if world is None:
        return list(data.contrast.prompts)
    rng = random.Random("sae corpus")
    return [sample_document(world, rng) for _ in range(N_DOCS)]


def _contexts(model: Model, acts, width: int = 6) -> list[str]:
    """Each captured token with the tokens before it in its prompt: ``... context [token]``
    (the rows of a ``positions="all"`` capture run through each prompt's tokens in order)."""
    ids: dict[int, list[int]] = {}
    where = []
    for p, tok in zip(acts.meta.prompt.tolist(), acts.meta.token_id.tolist(), strict=True):
        row = ids.setdefault(p, [])
        where.append((p, len(row)))
        row.append(tok)
    decode = model.tokenizer.decode
    return [f"{decode(ids[p][max(0, i - width) : i])} [{decode(ids[p][i : i + 1])}]"
            for p, i in where]  # fmt: skip


def _train(base: Model, corpus, site: str, width: int, log) -> tuple[dict, torch.Tensor, list]:
    acts = capture(base, corpus, sites=site, positions="all", progress=False)
    x = acts.tensor[:, 0].float()
    saes = {}
    for arch, extra in ARCHITECTURES.items():
        sae = make_sae(arch, d_in=base.d_model, d_sae=width, site=site, seed=0, **extra)
        train_sae(sae, x, TRAIN, progress=False)
        saes[arch] = sae.eval()
        m = evaluate_sae(sae, x)
        log(f"sae {arch}: explained variance {m['explained_variance']:.3f}, L0 {m['l0']:.1f}")
    return saes, x, _contexts(base, acts)


def _acts(pair: ModelPair, prompts, site: str) -> tuple[torch.Tensor, torch.Tensor]:
    kw = dict(sites=site, positions="all", progress=False)
    tuned = capture(pair.finetuned, prompts, **kw).tensor[:, 0].float()
    return tuned, capture(pair.base, prompts, **kw).tensor[:, 0].float()


@torch.no_grad()
def _ranking(sae, tuned, base, corpus_x, contexts) -> pd.DataFrame:
    table = rank_latents((tuned - base).mean(0), sae, acts_target=tuned, acts_reference=base,
                         by="act_diff", top=None, n_examples=0)  # fmt: skip
    top = table.head(TOP).latent.tolist()
    f = sae.encode(corpus_x)[:, top]
    best = f.topk(3, dim=0).indices.T.tolist()
    table["top_tokens"] = None
    table.loc[: TOP - 1, "top_tokens"] = pd.Series([[contexts[i] for i in r] for r in best])
    return table


def _ablated(pair: ModelPair, sae, latents, metric, reference) -> float:
    target = SAELatents(sae, latents)
    with ablate(pair.finetuned, target, site=sae.cfg.site, mode="mean", reference=reference):
        return float(metric(pair.finetuned).mean())


def _random_sets(alive: list[int], n: int, count: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [rng.sample(alive, min(n, len(alive))) for _ in range(count)]


def _one_seed(pair, sae, tuned, base, table, metric, n_random, seed, counts) -> list[dict]:
    """Removal of the top ``n`` latents for each ``n`` of ``counts`` (and random sets)."""
    before, floor = float(metric(pair.finetuned).mean()), float(metric(pair.base).mean())
    alive = sorted(set(torch.nonzero((sae.encode(torch.cat([tuned, base])) > 0).any(0))
                       .flatten().tolist()))  # fmt: skip
    rows = []
    for n in counts:
        after = _ablated(pair, sae, table.latent.head(n).tolist(), metric, base)
        rand = [
            removal(before, _ablated(pair, sae, s, metric, base), floor)
            for s in _random_sets(alive, n, n_random, seed * 1000 + n)
        ]
        rows.append(dict(n=n, before=before, after=after, base=floor,
                         removal=removal(before, after, floor), random=rand))  # fmt: skip
    return rows


def _architecture(sae, pairs_of, paths, halves, n_random, corpus) -> dict:
    (sel_prompts, sel), rep = halves
    corpus_x, contexts = corpus
    select, report, tables, seen = [], [], [], []
    for i, path in enumerate(paths):
        with pairs_of(path) as pair:
            tuned, base = _acts(pair, sel_prompts, str(sae.cfg.site))
            table = _ranking(sae, tuned, base, corpus_x, contexts)
            seen.append((tuned, base, table))
            tables.append(table.head(TOP).assign(seed=i))
            counts = [n for n in COUNTS if n < sae.d_sae]  # never every latent
            select += [dict(seed=i, **r) for r in
                       _one_seed(pair, sae, tuned, base, table, sel, 0, i, counts)]  # fmt: skip
    pooled = [
        dict(n=n, removal=pooled_removal(g.before, g.after, g.base))
        for n, g in pd.DataFrame(select).groupby("n")
    ]
    mean = pd.DataFrame(pooled).dropna()
    n = int(mean[mean.removal >= mean.removal.max() - TOLERANCE].n.min())
    for i, path in enumerate(paths):
        with pairs_of(path) as pair:
            report += [dict(seed=i, **r) for r in
                       _one_seed(pair, sae, *seen[i], rep, n_random, i, (n,))]  # fmt: skip
    kept = [r for r in report if r["before"] - r["base"] >= MIN_EXCESS] or report
    randoms = [r for row in kept for r in row["random"]]
    per_seed = [row["removal"] for row in kept]
    return dict(
        n=n, select=mean.to_dict("records"),
        removal={**mean_ci(per_seed).to_dict(), "per_seed": per_seed},
        random={"mean": sum(randoms) / len(randoms) if randoms else None,
                "max": max(randoms) if randoms else None, "n": len(randoms)},
        seeds=[r["seed"] for r in kept],
        before=sum(r["before"] for r in kept) / len(kept),
        after=sum(r["after"] for r in kept) / len(kept),
        top=pd.concat(tables).to_dict("records"),
    )  # fmt: skip


def sae_latents(
    spec,
    base_model: Model,
    adapters: Mapping[str, list[Path]],
    data,
    place: Placement,
    localization: dict | None,
    out: Path,
    world: World | None = None,
    log: Callable[[str], None] = print,
) -> dict | None:
    """Steps 1-3 above, per architecture; what goes into results.json under ``sae``
    (``None`` when step 6 chose no place)."""
    if not localization or not localization.get("place"):
        return None
    site = localization["place"]["site"]
    log(f"sae: training {', '.join(ARCHITECTURES)} ({spec.sae_latents} latents) at {site}")
    saes, corpus_x, contexts = _train(base_model, _corpus(world, data), site, spec.sae_latents, log)
    select, report = split_halves(data.evals[spec.target_group])
    halves = (
        ([it.prompt for it in select], EvalSet.from_groups({"s": select}).metric("s")),
        EvalSet.from_groups({"r": report}).metric("r"),
    )

    def pairs_of(path):
        return opened(base_model, path, place)

    result = {"site": site, "latents": spec.sae_latents, "architectures": {}}
    for arch, sae in saes.items():
        res = _architecture(sae, pairs_of, adapters["main"], halves, spec.n_random,
                            (corpus_x, contexts))  # fmt: skip
        res["train"] = evaluate_sae(sae, corpus_x)
        write_table(out, f"sae_{arch}_top", pd.DataFrame(res["top"]))
        result["architectures"][arch] = res
        log(f"sae {arch}: top {res['n']} latents remove {res['removal']['value']:.2f}")
    return result
