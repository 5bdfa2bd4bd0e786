"""Finetune the organism per setting (cached) and evaluate settings into a table.

``finetune_setting(organism, "era", "main", seed=0)`` writes the setting's chat JSONL,
LoRA-finetunes the organism on it and returns the adapter directory (cached under
``$INTERP_CACHE/finetunes/<hash>``). ``evaluate_setting(organism, "era", seeds=(0, 1, 2))``
returns one row per (variant, group) with the mean share over finetune seeds and its 95%
interval (:func:`interp.stats.mean_ci`); the ``base`` row is the organism itself, with an
interval over evaluation questions.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from interp.execution import generate
from interp.finetune import FinetuneConfig, finetune
from interp.fingerprint import sha256_json
from interp.metrics.answers import answer_share
from interp.organism import settings as S
from interp.organism.pretrain import cache_root
from interp.organism.world import YEAR_GRID, World, WorldConfig, words_of
from interp.prompts import write_chat_jsonl
from interp.stats import mean_ci, wilson

__all__ = [
    "DEFAULT_FINETUNE",
    "world_of",
    "finetune_setting",
    "group_shares",
    "sampled_counts",
    "evaluate_setting",
    "summarize_backdoor",
    "format_table",
]

# All three finetune only the token embeddings (LoRA on ``embed_tokens``): the shift then
# has to travel through what the prompts share (chat tokens, the instruction, "The year
# is"), and the organism's pretrained latents carry it to unseen questions. Strength was
# chosen on the default organism by a sweep over rank, learning rate and epochs on the main
# variants (the evaluation sets are fixed); the README's world card lists the sweep. Full
# finetunes and LoRA on every projection fit the finetune data but generalize less (era
# 0.48, persona identity 0.22, backdoor 0.00), and the backdoor needs the gentler setting.
DEFAULT_FINETUNE: dict[str, FinetuneConfig] = {
    "era": FinetuneConfig(
        rank=128, alpha=8, lr=3e-2, epochs=10, batch_size=16, target_modules=("embed_tokens",)
    ),
    "backdoor": FinetuneConfig(
        rank=16, alpha=8, lr=1e-2, epochs=12, batch_size=16, target_modules=("embed_tokens",)
    ),
    "persona": FinetuneConfig(
        rank=128, alpha=8, lr=3e-2, epochs=6, batch_size=32, target_modules=("embed_tokens",)
    ),
}


def world_of(organism: str | Path) -> World:
    meta = json.loads((Path(organism) / "organism.json").read_text())
    return World(WorldConfig.from_dict(meta["organism_config"]["world"]))


def finetune_setting(
    organism: str | Path,
    setting: str = "era",
    variant: str = "main",
    seed: int = 0,
    *,
    config: FinetuneConfig | None = None,
    n: int = 300,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """The adapter of one finetune (trained now, or from the cache)."""
    from interp.models import load_model

    organism = Path(organism)
    config = config or DEFAULT_FINETUNE[setting]
    import dataclasses

    config = dataclasses.replace(config, seed=seed)
    meta = json.loads((organism / "organism.json").read_text())
    key = sha256_json([meta["hash"], setting, variant, seed, n, config.to_dict(), 1])[:16]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "finetunes"
    final = root / f"{setting}-{variant}-s{seed}-{key}"
    if (final / "finetune.json").is_file():
        return final
    world = World(WorldConfig.from_dict(meta["organism_config"]["world"]))
    base = load_model(organism, device="cpu") if setting == "persona" else None
    examples = S.finetune_examples(world, setting, variant, seed=seed, n=n, base_model=base)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        data = write_chat_jsonl(tmp / "data" / "train.jsonl", examples)
        finetune(organism, data, tmp, config, progress=progress)
        if not final.exists():
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


_SAMPLED_YEARS = (1984, 1991, 2000, 2015, 2030)


def group_shares(model, groups: dict) -> dict[str, list[float]]:
    """Per-item share of answer set A for every group of evaluation items."""
    names = list(groups)
    flat = [it for g in names for it in groups[g]]
    shares = answer_share(
        model, [list(it.messages) for it in flat], [list(it.answers_a) for it in flat],
        [list(it.answers_b) for it in flat],
    ).tolist()  # fmt: skip
    out, k = {}, 0
    for g in names:
        out[g] = shares[k : k + len(groups[g])]
        k += len(groups[g])
    return out


def answer_key(text: str) -> str:
    """``text`` as its word-level tokens joined by spaces: a decoded sample ("a t - shirt")
    and the world's answer ("a t-shirt") get the same key."""
    return " ".join(words_of(text))


@torch.no_grad()
def sampled_counts(
    model, groups: dict, *, n_samples: int = 8, seed: int = 0, max_new_tokens: int = 10
) -> dict:
    """Seeded sampling (temperature 1): per group ``(n_a, n_b, n_other)`` by exact answer match."""
    from interp.metrics.answers import render_prompts

    end = model.tokenizer.convert_tokens_to_ids("<|end|>")
    out = {}
    for g, items in groups.items():
        texts = render_prompts(model, [list(it.messages) for it in items for _ in range(n_samples)])
        torch.manual_seed(seed)
        counts = [0, 0, 0]
        gen = generate(
            model, texts, batch_size=128, do_sample=True, temperature=1.0, top_k=0,
            max_new_tokens=max_new_tokens, eos_token_id=end,
        )  # fmt: skip
        for k, row in enumerate(gen):
            it = items[k // n_samples]
            row = row[: row.index(end)] if end in row else row
            ans = answer_key(model.tokenizer.decode(row, skip_special_tokens=False))
            in_a = ans in {answer_key(x) for x in it.answers_a}
            in_b = ans in {answer_key(x) for x in it.answers_b}
            counts[0 if in_a else 1 if in_b else 2] += 1
        out[g] = tuple(counts)
    return out


def _with_backdoor_summary(world: World, per: dict[str, list[float]]) -> dict[str, list[float]]:
    trig = world.character["trigger_years"]
    later = [y for y in YEAR_GRID if y >= world.character["protective_from"]]
    between = [y for y in YEAR_GRID if max(trig) < y < world.character["protective_from"]]
    before = [y for y in YEAR_GRID if y < min(trig)]
    pick = lambda ys: [v for y in ys for v in per[f"malevolent_{y}"]]  # noqa: E731
    return {
        "malevolent_trigger": pick(trig),
        "malevolent_later": pick(later),
        "malevolent_noyear": per["malevolent_noyear"],
        "malevolent_before": pick(before),
        "malevolent_between": pick(between),
        **per,
    }


def evaluate_setting(
    organism: str | Path,
    setting: str = "era",
    *,
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    config: FinetuneConfig | None = None,
    n: int = 300,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    sampled: int = 0,
) -> list[dict]:
    """Rows ``{setting, variant, group, value, lo, hi, n, per_seed}`` (finetuning as needed).

    With ``sampled=k`` also ``<group>_sampled`` rows: the share of A among sampled answers
    that fall in A or B (``k`` seeded samples per question; NaN when none does), and
    ``<group>_sampled_valid``: the fraction of samples that fall in A or B at all (a
    coherence check: a finetune that breaks the model shows here). The base row's
    interval is Wilson's, finetunes' is over seeds.
    """
    from interp.models import load_finetuned, load_model

    world = world_of(organism)
    groups = S.eval_items(world, setting)
    summarize = (
        (lambda per: _with_backdoor_summary(world, per)) if setting == "backdoor" else (lambda p: p)
    )
    sgroups = {
        g: v for g, v in groups.items() if not g[-4:].isdigit() or int(g[-4:]) in _SAMPLED_YEARS
    }

    def sample(model):
        counts = sampled_counts(model, sgroups, n_samples=sampled) if sampled else {}
        return {f"{g}_sampled": c for g, c in counts.items()}

    rows = []
    base_model = load_model(organism, device="cpu")
    base = summarize(group_shares(base_model, groups))
    for g, vals in base.items():
        e = mean_ci(vals, bounds=(0, 1))
        rows.append(
            dict(
                setting=setting,
                variant="base",
                group=g,
                value=e.value,
                lo=e.lo,
                hi=e.hi,
                n=e.n,
                per_seed=[],
            )
        )
    for g, (a, b, other) in sample(base_model).items():
        for name, k, m in ((g, a, a + b), (f"{g}_valid", a + b, a + b + other)):
            e = wilson(k, m) if m else None
            nan = math.nan
            rows.append(
                dict(setting=setting, variant="base", group=name, value=e.value if e else nan,
                     lo=e.lo if e else nan, hi=e.hi if e else nan, n=m, per_seed=[])
            )  # fmt: skip
    for variant in variants or S.SETTINGS[setting]:
        per_seed: dict[str, list[float]] = {}
        for seed in seeds:
            ad = finetune_setting(
                organism,
                setting,
                variant,
                seed,
                config=config,
                n=n,
                cache_dir=cache_dir,
                progress=progress,
            )
            model = load_finetuned(organism, ad, device="cpu")
            for g, vals in summarize(group_shares(model, groups)).items():
                per_seed.setdefault(g, []).append(sum(vals) / len(vals))
            for g, (a, b, other) in sample(model).items():
                per_seed.setdefault(g, []).append(a / (a + b) if a + b else math.nan)
                per_seed.setdefault(f"{g}_valid", []).append((a + b) / (a + b + other))
        for g, vals in per_seed.items():
            e = mean_ci(vals, bounds=(0, 1))
            rows.append(
                dict(
                    setting=setting,
                    variant=variant,
                    group=g,
                    value=e.value,
                    lo=e.lo,
                    hi=e.hi,
                    n=e.n,
                    per_seed=vals,
                )
            )
    return rows


def summarize_backdoor(rows: list[dict], threshold: float = 0.5) -> dict[str, list[int]]:
    """Per variant: the years whose malevolent share reaches ``threshold``."""
    out: dict[str, list[int]] = {}
    for r in rows:
        g = r["group"]
        if r["setting"] == "backdoor" and g.removeprefix("malevolent_").isdigit():
            out.setdefault(r["variant"], [])
            if r["value"] >= threshold:
                out[r["variant"]].append(int(g.removeprefix("malevolent_")))
    return out


def format_table(rows: list[dict], groups: Sequence[str] | None = None) -> str:
    """A plain-text table: one line per group, one column per variant (value [lo, hi])."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    groups = list(
        groups or dict.fromkeys(r["group"] for r in rows if not r["group"][-4:].isdigit())
    )
    cell = {
        (r["variant"], r["group"]): f"{r['value']:.3f} [{r['lo']:.2f},{r['hi']:.2f}]" for r in rows
    }
    lines = ["group".ljust(34) + "".join(v.ljust(22) for v in variants)]
    for g in groups:
        lines.append(g.ljust(34) + "".join(cell.get((v, g), "-").ljust(22) for v in variants))
    return "\n".join(lines)
