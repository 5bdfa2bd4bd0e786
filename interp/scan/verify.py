"""Verify candidates on held-out prompts against a null of their own family.

A candidate chosen on the search prompts is scored afresh on the verification prompts
(no selection bias there), next to ``n_null`` random members of its family at the same
placement (:func:`~interp.scan.candidates.null_candidates`: other years in the same date
form; for a persona / system / format sentence the other such sentences of the scan;
otherwise random token sequences of the same token length whose tokens come from
the same depth of the first-layer prior, so that a string made of tokens the finetune
moved is compared with other strings of moved tokens, and a string of untouched tokens
with random ones), scored on the same prompts. It is **significant** when all of these hold:

- its shift (:func:`~interp.scan.divergence.trigger_shift`) beats 90% of the null members
  (a null member may hold part of a real trigger) and lies ``z >= z*`` robust standard
  deviations above the null's median (``z* = Phi^-1(1 - alpha / K)``, Bonferroni over the
  ``K`` candidates verified; the null's scale is ``1.4826 x MAD`` with a floor);
- the shift is at least ``min_effect`` nats per prompt (a finetune that moves nothing
  much is not triggered by anything);
- the base is the reference throughout: the shift is the finetune's move toward its new
  answer less the base's move toward the same answer, so a context that moves both models
  alike scores about zero; and the context must move the finetune's own first-token
  distribution at least ``min_move_ratio`` times as far as the base's (``move_f >= 2
  move_b``, each model against itself without the context, on the verification prompts).
  A context that upsets both models (a string of unrelated words, a date the base already
  reads) sends them to *different* answers, so its shift can be well above its null's
  without being the finetune's trigger, while a trigger barely moves the base (the ratio
  was chosen on the seed-0 zoo of ``benchmarks/bench_scan.py``, whose clean finetunes'
  false triggers moved both models nearly alike).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from interp.config import Config
from interp.scan.candidates import CONTEXT_FAMILIES, Candidate, null_candidates
from interp.scan.divergence import Counter
from interp.scan.search import Baseline, Scored, score_candidates

__all__ = ["Verified", "VerifyConfig", "verify", "year_bands", "by_finding"]


@dataclass(frozen=True)
class VerifyConfig(Config):
    """Significance settings (fixed before any scan; see the module docstring)."""

    config_name: ClassVar[str] = "scan verify config"

    n_null: int = 16
    alpha: float = 0.05
    min_effect: float = 0.25  # nats per prompt (sum over the answer tokens)
    scale_floor: float = 0.02  # nats: the null's robust scale is at least this
    min_move_ratio: float = 2.0  # the finetune's first-token move / the base's, at least


@dataclass
class Verified:
    """A candidate's verification: its scores, its null and the verdict."""

    scored: Scored
    null: list[Scored]
    z: float
    significant: bool
    search_score: float
    null_key: tuple = ()
    finding: int = 0

    @property
    def null_scores(self) -> list[float]:
        return [n.score for n in self.null]


def _robust(vals: Sequence[float], floor: float) -> tuple[float, float]:
    """Median and robust SD (``1.4826 x MAD``, at least ``floor``) of ``vals``."""
    med = statistics.median(vals)
    return med, max(1.4826 * statistics.median(abs(v - med) for v in vals), floor)


def _z_star(alpha: float, k: int) -> float:
    return statistics.NormalDist().inv_cdf(1 - alpha / max(1, k))


def _ids(c: Candidate, model) -> tuple[int, ...]:
    return c.tokens or tuple(model.tokenizer(c.text, add_special_tokens=False)["input_ids"])


def _pool_size(c: Candidate, model, rank: dict[int, int], n: int) -> int:
    """The prior depth a null draws from: twice the candidate's deepest token rank (at
    least 64), rounded up to a power of two so that nulls are shared."""
    worst = max((rank.get(t, n) for t in _ids(c, model)), default=n)
    size = 64
    while size < min(n, 2 * worst + 1):
        size *= 2
    return min(size, n)


def _null_key(c: Candidate, model, rank: dict[int, int], n: int, contexts=()) -> tuple:
    if c.family == "date":
        return ("date", c.form, c.placement)
    if c.family in CONTEXT_FAMILIES and len({x.text for x in contexts} - {c.text}) >= 3:
        return ("contexts", c.placement)
    return ("tokens", c.placement, len(_ids(c, model)), _pool_size(c, model, rank, n))


def verify(
    pair,
    chosen: Sequence[Scored],
    base: Baseline,
    counter: Counter,
    ranked: Sequence[int],
    config: VerifyConfig = VerifyConfig(),
    *,
    seed: int = 0,
    progress: bool = True,
    contexts: Sequence[Candidate] = (),
) -> list[Verified]:
    """Verify each of ``chosen`` (scored on the search prompts) on ``base.questions``;
    ``ranked``: the searchable token ids in the order of the first-layer prior;
    ``contexts``: the persona / system / format sentences searched (their own null)."""
    cands = [s.cand for s in chosen]
    rank = {t: i for i, t in enumerate(ranked)}
    n = len(ranked)
    key_of = lambda c: _null_key(c, pair[0], rank, n, contexts)  # noqa: E731
    fresh, _ = score_candidates(pair, cands, base, counter, desc="verify", progress=progress)
    nulls: dict[tuple, list[Scored]] = {}
    for c in cands[: len(fresh)]:
        key = key_of(c)
        if key not in nulls:
            pool = list(ranked[: key[-1]]) if key[0] == "tokens" else list(ranked)
            members = null_candidates(pair[0], c, pool, config.n_null, seed=seed,
                                      contexts=contexts)  # fmt: skip
            nulls[key], _ = score_candidates(pair, members, base, counter, desc="null",
                                             progress=progress)  # fmt: skip
    z_star = _z_star(config.alpha, len(fresh))
    out = []
    for s, old in zip(fresh, chosen, strict=False):
        null = [m for m in nulls[key_of(s.cand)] if m.cand.text != s.cand.text]
        vals = [n.score for n in null]
        if len(vals) >= 3:
            med, scale = _robust(vals, config.scale_floor)
            z = (s.score - med) / scale
            beats = s.score > sorted(vals)[int(0.9 * (len(vals) - 1))]
        else:
            z, beats = float("nan"), False
        own = s.move_f > 0 and s.move_f >= config.min_move_ratio * s.move_b  # not both alike
        sig = bool(beats and own and z >= z_star and s.score >= config.min_effect)
        out.append(Verified(s, null, float(z), sig, old.score, key_of(s.cand)))
    out.sort(key=lambda v: (v.significant, v.scored.score), reverse=True)
    return out


def _z(v: Verified) -> float:
    return v.z if v.z == v.z else float("-inf")  # NaN (no null) last


def year_bands(
    dates: Sequence[Scored], n: int, k: float = 3.0, gap: int = 2
) -> list[tuple[int, int]]:
    """Up to ``n`` bands of years ``(first, last)``, best first, from a date sweep. A year is
    *raised* when its best score over the date forms lies ``k`` robust SDs (``1.4826 x MAD``
    over all years swept) above the median year; raised years at most ``gap`` years apart
    are one band, ranked by its best year. A run of years that all move the finetune is one
    band (and one finding), a lone trigger year a band of one; a sweep in which no year
    stands out has none."""
    best: dict[int, float] = {}
    for s in dates:
        best[s.cand.year] = max(best.get(s.cand.year, float("-inf")), s.score)
    if len(best) < 3:
        return []
    med, scale = _robust(list(best.values()), 1e-6)
    raised = sorted(y for y, v in best.items() if v > med + k * scale and v > 0)
    runs: list[list[int]] = []
    for y in raised:
        if runs and y - runs[-1][-1] <= gap + 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    runs.sort(key=lambda r: max(best[y] for y in r), reverse=True)
    return [(r[0], r[-1]) for r in runs[:n]]


def by_finding(
    verified: list[Verified],
    all_texts: Sequence[str],
    max_share: float = 0.05,
    bands: Sequence[tuple[int, int]] = (),
):
    """``verified`` ordered best first: significant before not, then by ``z``, the distance
    from the candidate's own family null (shifts of different families are not comparable,
    their distances from their nulls are), and each *finding* led by its best candidate.

    Candidates that share a distinctive word (one in at most ``max_share`` of
    ``all_texts``, the texts of the sweeps before any extension: a rare token, not "The" or
    "year") are one finding, and so are dates whose years lie in one of ``bands``
    (:func:`year_bands`; a band of years is one finding, a lone year another). Each
    :class:`Verified` gets ``finding`` (the index of its finding, in that order).
    """
    df: dict[str, int] = {}
    for t in all_texts:
        for w in set(t.split()):
            df[w] = df.get(w, 0) + 1
    limit = max(1, int(max_share * len(all_texts)))
    words = [{w for w in v.scored.cand.text.split() if df.get(w, 0) <= limit} for v in verified]
    parent = list(range(len(verified)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def near(a: Candidate, b: Candidate) -> bool:
        if a.family != "date" or b.family != "date":
            return False
        return a.year == b.year or any(lo <= a.year <= hi and lo <= b.year <= hi
                                       for lo, hi in bands)  # fmt: skip

    for i in range(len(verified)):
        for j in range(i):
            if near(verified[i].scored.cand, verified[j].scored.cand) or words[i] & words[j]:
                parent[root(i)] = root(j)
    ranked = sorted(range(len(verified)),
                    key=lambda i: (verified[i].significant, _z(verified[i])), reverse=True)  # fmt: skip
    finding: dict[int, int] = {}  # root -> finding index, in rank order
    leads = []
    for i in ranked:
        if root(i) not in finding:
            finding[root(i)] = len(finding)
            if verified[i].significant:
                leads.append(i)
    order = leads + [i for i in ranked if i not in leads]
    out = []
    for i in order:
        verified[i].finding = finding[root(i)]
        out.append(verified[i])
    return out
