"""``interp.scan(base, finetuned)``: what changed, what triggers it, where it lives.

The stages, each counted in forward passes against one budget (see :class:`ScanConfig`):

1. *behaviour*: the continuation divergence of every probe question (finetune vs base),
   the most-changed prompts with both answers, and the activation-difference lens;
2. *search* on the search half of the questions: dates over a wide range, persona /
   system / format contexts, every searchable vocabulary token at the user turn's start
   and end and as a system message (the best of a coarse pass in full:
   :func:`~interp.scan.search.coarse_tokens`), greedy multi-token extension, and GCG
   steps, each candidate ranked by its trigger shift
   (:func:`~interp.scan.divergence.trigger_shift`);
3. *verification* on the other half of the best candidates and of the best year of each
   band of raised years, against members of their family (other years, other sentences,
   random token strings: :mod:`interp.scan.verify`);
4. *localization* of the top trigger (or of an unconditional change).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from interp.config import Config
from interp.errors import InterpError
from interp.scan import candidates as C
from interp.scan.divergence import Counter, answer_logprob, divergence, shift_cost
from interp.scan.lens import activation_lens
from interp.scan.localize import localize_trigger, localize_unconditional
from interp.scan.priors import token_priors
from interp.scan.probes import probe_set
from interp.scan.report import ScanResult, assemble
from interp.scan.search import baseline, coarse_tokens, extend_greedy, gcg_step, score_candidates
from interp.scan.verify import VerifyConfig, by_finding, verify, year_bands

__all__ = ["ScanConfig", "scan"]


@dataclass(frozen=True)
class ScanConfig(Config):
    """How far a scan searches. ``budget``: forward passes (sequences x model calls)."""

    budget: int | None = 200_000
    n_per_kind: int = 4  # questions of each kind in the search half and in the verification half
    probe_tokens: int = 8  # answer tokens compared in the behaviour stage
    search_tokens: int = 4  # ... in the sweeps (bench_scan_score.py: 4 finds 1984, 2 less often)
    verify_tokens: int = 4  # ... in verification
    max_probes: int = 240
    token_share: float = 0.6  # share of the search budget left after dates / contexts for tokens
    coarse_questions: int = 3  # coarse token pass (search.coarse_tokens): questions, and
    coarse_share: float = 0.25  # the most of the token stage's budget it spends
    n_extend: int = 3
    extend_pool: int = 24
    max_len: int = 3
    gcg_steps: int = 2
    gcg_swaps: int = 24
    n_verify: int = 10
    n_year_bands: int = 4  # the best year of each of this many bands is verified too
    changed_ratio: float = 10.0  # changed: the base finds the finetune's answer 10x less likely
    unconditional_share: float = 0.05  # unconditional when at least this share changed
    n_examples: int = 6
    localize: bool = True
    lens: bool = True
    seed: int = 0
    verify: VerifyConfig = VerifyConfig()


def _behaviour(pair, probes, cfg, counter) -> tuple[dict, list[str]]:
    """Per probe question: the divergence D, both models' greedy answers and how much less
    likely the base finds the finetune's answer than its own (``log B(a_F) - log B(a_B)``);
    a question *changed* when that is below ``-log(changed_ratio)``."""
    f, b = pair
    m = cfg.probe_tokens
    n = cfg.max_probes
    if cfg.budget is not None:  # at most 15% of the budget (2 (m + 1) + 2 passes a question)
        n = min(n, max(16, int(0.15 * cfg.budget) // (2 * m + 4)))
    idx = probes.interleaved(cfg.seed)[:n]
    qs = [probes.questions[i] for i in idx]
    texts = [C.render(f, q, None) for q in qs]
    sc = divergence(pair, texts, n_tokens=m, counter=counter)
    rev = divergence((b, f), texts, n_tokens=m, counter=counter)  # the base's own answers
    gap = answer_logprob(b, texts, sc.answer, counter=counter) - answer_logprob(
        b, texts, rev.answer, counter=counter
    )  # [n] <= 0 where the base prefers its own answer
    changed = gap <= -math.log(cfg.changed_ratio)
    order = torch.argsort(gap).tolist()  # most changed first
    dec = lambda ids: f.tokenizer.decode(ids, skip_special_tokens=False).strip()  # noqa: E731
    examples = [
        {"prompt": qs[i], "base": dec(rev.answer[i]), "finetuned": dec(sc.answer[i]),
         "divergence": float(sc.d[i]), "base_log_ratio": float(gap[i])}
        for i in order[: cfg.n_examples]
    ]  # fmt: skip
    kinds = [probes.kinds[i] for i in idx]
    by_kind = {
        k: float(changed[[i for i, x in enumerate(kinds) if x == k]].float().mean())
        for k in dict.fromkeys(kinds)
    }
    out = {
        "share_changed": float(changed.float().mean()),
        "mean_divergence": float(sc.d.mean()),
        "n_prompts": len(qs),
        "changed_by_kind": by_kind,
        "examples": examples,
    }
    return out, [texts[i] for i in order[:8]]


def _dates(pair, base, counter, progress) -> tuple[list, dict]:
    """The main date form over every year (a coarser grid refined around the best years
    when the stage's budget is short), the other forms on a 10-year grid plus the best."""
    f = pair[0]
    cands = C.date_candidates(f)
    if not cands:
        return [], {"candidates": 0, "scored": 0, "forms": [], "complete": True}
    main = [c for c in cands if c.form == cands[0].form]
    cost = base.cost
    afford = counter.left // cost
    stride = 1 if afford >= len(main) else max(2, math.ceil(len(main) / max(1, 0.6 * afford)))
    grid = main[::stride]
    scored, done = score_candidates(pair, grid, base, counter, desc="dates", progress=progress)
    top = sorted(scored, key=lambda s: s.score, reverse=True)[:3]
    near = {s.cand.year + d for s in top for d in range(1 - stride, stride)}
    fill = [c for c in main if c.year in near and c not in grid]
    got, _ = score_candidates(pair, fill, base, counter, desc="dates", progress=progress)
    scored += got
    best = {s.cand.year for s in sorted(scored, key=lambda s: s.score, reverse=True)[:5]}
    rest = [c for c in cands if c.form != cands[0].form and (c.year % 10 == 0 or c.year in best)]
    more, done2 = score_candidates(pair, rest, base, counter, desc="dates", progress=progress)
    forms = sorted({c.text.replace(str(c.year), "{year}") + f" @{c.placement}" for c in cands})
    rec = {"candidates": len(cands), "scored": len(scored) + len(more), "forms": forms,
           "years": [C.YEARS[0], C.YEARS[-1]], "main_form_stride": stride,
           "complete": done and done2 and stride == 1}  # fmt: skip
    return scored + more, rec


def _tokens(pair, base, counter, cfg, progress) -> tuple[list, dict, object]:
    f = pair[0]
    ids = C.searchable_tokens(f)
    priors = token_priors(pair, ids, counter=counter)
    ranked = priors.ranked()
    coarse = coarse_tokens(pair, ranked, base, counter, n_questions=cfg.coarse_questions,
                           share=cfg.coarse_share, progress=progress)  # fmt: skip
    cost = base.cost
    k = int(max(0, min(len(ranked), counter.left // (cost * len(C.PLACEMENTS)))))
    scored = []
    for placement in C.PLACEMENTS:
        order = list(dict.fromkeys([*(t for _, t in coarse[placement]), *ranked]))
        cands = C.token_candidates(f, order[:k], placement)
        got, _ = score_candidates(pair, cands, base, counter, desc=f"tokens@{placement}",
                                  progress=progress)  # fmt: skip
        scored += got
    n_c, dec = len(next(iter(coarse.values()), [])), f.tokenizer.decode
    rec = {"vocab": len(f.tokenizer), "searchable": len(ids), "swept_per_placement": k,
           "order": "first-layer prior (||F - B|| at blocks.0.hook_resid_post, token alone)",
           "coarse_per_placement": n_c, "coarse_questions": cfg.coarse_questions * bool(n_c),
           "top_prior": [dec([t]) for t in ranked[:10]],
           "top_coarse": {p: [dec([t]) for _, t in v[:10]] for p, v in coarse.items()}}  # fmt: skip
    return scored, rec, priors


def _extend(pair, tokens, priors, base, counter, cfg, progress) -> tuple[list, dict]:
    ranked = priors.ranked()
    seeds = sorted([s for s in tokens if s.score > 0], key=lambda s: s.score, reverse=True)
    seeds = seeds[: cfg.n_extend]
    pool = list(
        dict.fromkeys([*ranked[: cfg.extend_pool], *(t for s in seeds for t in s.cand.tokens)])
    )
    counter.cap("extend", 0.7)
    ext = extend_greedy(pair, seeds, pool, base, counter, max_len=cfg.max_len, progress=progress)
    counter.cap("gcg", 1.0)
    gcg = []
    start = max([*seeds, *ext], key=lambda s: s.score, default=None)
    if start is not None and priors.embed_f is not None and cfg.gcg_steps:
        embeds = (priors.embed_f, priors.embed_b, priors.ids)
        for step in range(cfg.gcg_steps):
            if not counter.can(6 * len(base.questions) + cfg.gcg_swaps * 3 * len(base.questions)):
                break
            got = gcg_step(pair, start.cand, base, counter, embeds, n_swaps=cfg.gcg_swaps,
                           seed=cfg.seed + step, progress=progress)  # fmt: skip
            gcg += got
            top = max(got, key=lambda s: s.score, default=None)
            if top is None or top.score <= start.score:
                break
            start = top
    rec = {"extended_seeds": [s.cand.text for s in seeds], "extensions_scored": len(ext),
           "gcg_scored": len(gcg), "gcg_best": start.cand.text if start else None}  # fmt: skip
    return ext + gcg, rec


def _choose(scored, n: int, bands) -> list:
    """The candidates to verify: the ``n`` best distinct ones, the best of each family, and
    the best date of each band of years (:func:`~interp.scan.verify.year_bands`), so that
    one band of years that all move the finetune does not crowd out a lone trigger year."""
    best: dict[tuple, object] = {}
    for s in scored:
        if s.score > 0 and (s.cand.key() not in best or s.score > best[s.cand.key()].score):
            best[s.cand.key()] = s
    ranked = sorted(best.values(), key=lambda s: s.score, reverse=True)
    chosen = ranked[:n]
    dates = [s for s in ranked if s.cand.family == "date"]
    for lo, hi in bands:
        top = next((s for s in dates if lo <= s.cand.year <= hi), None)
        if top is not None and top not in chosen:
            chosen.append(top)
    for fam in dict.fromkeys(s.cand.family for s in ranked):
        top = next(s for s in ranked if s.cand.family == fam)
        if top not in chosen:
            chosen.append(top)
    return chosen


def scan(base, finetuned, config: ScanConfig | None = None, *, progress: bool = True) -> ScanResult:
    """Scan ``finetuned`` against ``base`` (two :class:`~interp.models.Model` views or
    models with one tokenizer) with no hint of what changed; see the module docstring."""
    cfg = config or ScanConfig()
    if len(base.tokenizer) != len(finetuned.tokenizer):
        raise InterpError("base and finetuned models must share a tokenizer")
    t0, c0 = time.time(), time.process_time()
    torch.manual_seed(cfg.seed)
    pair = (finetuned, base)
    counter = Counter(cfg.budget)
    probes = probe_set(base, seed=cfg.seed)
    counter.stage = "behaviour"
    behaviour, changed_texts = _behaviour(pair, probes, cfg, counter)
    lens = None
    if cfg.lens and counter.can(3 * len(probes.texts) + 400):
        counter.stage = "lens"
        lens = activation_lens(pair, list(probes.texts), changed_texts[:8], counter)
    s_idx, v_idx = probes.split(cfg.n_per_kind, seed=cfg.seed)
    qs = list(probes.questions)
    s_base = baseline(pair, [qs[i] for i in s_idx], cfg.search_tokens, counter)
    v_base = baseline(pair, [qs[i] for i in v_idx], cfg.verify_tokens, counter)
    n_null_keys = 6
    per_pair = finetuned.n_layers * 64 + 40 * finetuned.n_layers  # patching + ablation
    r_loc = (4 * per_pair + 12 * 8 * finetuned.n_layers + 64) if cfg.localize else 0
    r_verify = (
        (cfg.n_verify + cfg.n_year_bands + 4 + n_null_keys * cfg.verify.n_null)
        * len(v_idx)
        * shift_cost(cfg.verify_tokens)
    )
    if cfg.budget is not None:  # verification and localization keep at most 45% back
        share = min(1.0, 0.45 * max(0, cfg.budget - counter.spent) / max(1, r_verify + r_loc))
        r_verify, r_loc = int(share * r_verify), int(share * r_loc)
        counter.reserved = r_verify + r_loc
    searched, scored = {}, []
    counter.cap("dates", 0.35)
    got, searched["date"] = _dates(pair, s_base, counter, progress)
    scored += got
    counter.cap("contexts", 0.15)
    ctx = C.context_candidates(base)
    got, done = score_candidates(pair, ctx, s_base, counter, desc="contexts", progress=progress)
    searched["contexts"] = {"candidates": len(ctx), "scored": len(got), "complete": done,
                            "families": sorted({c.family for c in ctx})}  # fmt: skip
    scored += got
    counter.cap("tokens", cfg.token_share)
    got, searched["token"], priors = _tokens(pair, s_base, counter, cfg, progress)
    scored += got
    got, searched["token_seq"] = _extend(pair, got, priors, s_base, counter, cfg, progress)
    scored += got
    counter.limit, counter.reserved = None, r_loc if cfg.budget is not None else 0
    counter.cap("verify", 1.0)
    bands = year_bands([s for s in scored if s.cand.family == "date"], cfg.n_year_bands)
    searched["date"]["bands"] = [list(b) for b in bands]
    chosen = _choose(scored, cfg.n_verify, bands)
    verified = verify(pair, chosen, v_base, counter, priors.ranked(), cfg.verify, seed=cfg.seed,
                      progress=progress, contexts=ctx)  # fmt: skip
    texts = [x.cand.text for x in scored if x.cand.family != "token_seq"]
    verified = by_finding(verified, texts, bands=bands)
    unconditional = behaviour["share_changed"] >= cfg.unconditional_share
    location = []
    if cfg.localize:
        counter.stage, counter.limit, counter.reserved = "localize", None, 0
        sig = [v for v in verified if v.significant]
        if sig and counter.can(4 * per_pair):
            location.append({"kind": "trigger", **localize_trigger(pair, sig[0], v_base.questions,
                                                                    counter)})  # fmt: skip
        if unconditional and counter.can(12 * 8 * finetuned.n_layers + 64):
            location.append({"kind": "unconditional",
                             **localize_unconditional(pair, changed_texts, counter)})  # fmt: skip
    result = assemble(
        behaviour=behaviour, unconditional=unconditional, verified=verified, scored=scored,
        location=location, lens=lens, searched=searched, counter=counter, t0=t0, cfg=cfg,
        model=finetuned, questions=(s_base.questions, v_base.questions), pair=pair,
    )  # fmt: skip
    result.cpu_seconds = time.process_time() - c0
    return result
