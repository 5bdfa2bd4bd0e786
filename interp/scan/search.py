"""Score candidate contexts on the search prompts: sweeps, greedy extension, GCG steps.

:func:`score_candidates` inserts every candidate into every search question and scores it
by the mean trigger shift ``S(x, c)`` (:func:`~interp.scan.divergence.trigger_shift`: the
finetune's move toward its new answer less the base's), in chunks that stop cleanly when the
forward-pass budget runs out. :func:`coarse_tokens` is the cheap first pass over a
vocabulary (each token's first-token move of the finetune less the base's, in a few
questions) that orders the full token sweep. :func:`extend_greedy` grows the
best free-form tokens into sequences one token at a time (prepended or appended), and
:func:`gcg_step` proposes token swaps from the gradient, with respect to the candidate's
one-hot tokens, of the first-token version of the shift, ``KL(F(x + c) || F(x)) -
KL(B(x + c) || B(x))`` (GCG, Zou et al. 2023, here maximizing how much more the context moves
the finetune than the base rather than a target string's likelihood).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.scan.candidates import PLACEMENTS, Candidate, render, token_candidates
from interp.scan.divergence import Counter, Scores, divergence, kl_rows, shift_cost, trigger_shift

__all__ = [
    "Scored",
    "Baseline",
    "baseline",
    "score_candidates",
    "coarse_tokens",
    "extend_greedy",
    "gcg_step",
]


@dataclass
class Scored:
    """A candidate's scores on a set of questions."""

    cand: Candidate
    per_prompt: Tensor  # [P] trigger shift S(x, c), nats
    move_f: float  # mean KL(F(x + c) || F(x)), first answer token
    move_b: float  # the same for the base
    answers: list[list[int]] = field(default_factory=list)  # finetune's answers with c

    @property
    def score(self) -> float:
        return float(self.per_prompt.mean())


@dataclass
class Baseline:
    """The plain questions' scores (reference for every candidate)."""

    questions: list[str]
    scores: Scores
    n_tokens: int
    texts: list[str] = field(default_factory=list)  # the rendered plain prompts

    @property
    def cost(self) -> int:
        """Forward passes to score one candidate on these questions."""
        return len(self.questions) * shift_cost(self.n_tokens)


def baseline(pair, questions: Sequence[str], n_tokens: int, counter: Counter) -> Baseline:
    texts = [render(pair[0], q, None) for q in questions]
    sc = divergence(pair, texts, n_tokens=n_tokens, counter=counter, keep_first=True)
    return Baseline(list(questions), sc, n_tokens, texts)


def score_candidates(
    pair,
    cands: Sequence[Candidate],
    base: Baseline,
    counter: Counter,
    *,
    desc: str = "score",
    chunk: int = 64,
    progress: bool = True,
) -> tuple[list[Scored], bool]:
    """Scores of ``cands`` on ``base.questions``; ``(scored, complete)`` where ``complete``
    is False when the budget stopped the sweep (the scored prefix is returned)."""
    f = pair[0]
    qs, m, cost = base.questions, base.n_tokens, base.cost
    out: list[Scored] = []
    cands = list(cands)
    bar = tqdm(total=len(cands), desc=desc, disable=not progress, leave=False)
    try:
        for s in range(0, len(cands), chunk):
            part = cands[s : s + chunk]
            n_fit = (
                len(part)
                if counter.budget is None
                else max(0, min(len(part), int(counter.left // cost)))
            )
            if n_fit == 0:
                return out, False
            part = part[:n_fit]
            texts = [render(f, q, c) for c in part for q in qs]
            ref = [i for _ in part for i in range(len(qs))]
            shift, sc = trigger_shift(pair, texts, [base.texts[i] for i in ref], n_tokens=m,
                                      counter=counter, reference=base.scores, ref_index=ref)  # fmt: skip
            d = shift.view(len(part), len(qs))  # [C, P]
            mf, mb = sc.move_f.view(len(part), -1), sc.move_b.view(len(part), -1)
            for k, c in enumerate(part):
                ans = sc.answer[k * len(qs) : (k + 1) * len(qs)]
                out.append(Scored(c, d[k], float(mf[k].mean()), float(mb[k].mean()), ans))
            bar.update(len(part))
            if n_fit < len(cands[s : s + chunk]):
                return out, False
    finally:
        bar.close()
    return out, True


def coarse_tokens(
    pair,
    ids: Sequence[int],
    base: Baseline,
    counter: Counter,
    *,
    n_questions: int = 3,
    share: float = 0.25,
    progress: bool = True,
) -> dict[str, list[tuple[float, int]]]:
    """A cheap first pass of tokens ``ids`` (in prior order) at every placement: each token
    in ``n_questions`` of ``base``'s questions, scored by the first-token version of the
    shift, ``KL(F(x + c) || F(x)) - KL(B(x + c) || B(x))`` (two passes a prompt), as far as
    ``share`` of what the budget has left goes. ``{placement: [(score, id), ...]}``
    best first."""
    f = pair[0]
    n_q = max(1, min(n_questions, len(base.questions)))
    q_idx = [round(i * (len(base.questions) - 1) / max(1, n_q - 1)) for i in range(n_q)]
    per_token = 2 * n_q * len(PLACEMENTS)
    left = counter.left
    n = len(ids) if math.isinf(left) else int(min(len(ids), share * left // per_token))
    n = n if share > 0 else 0
    out: dict[str, list[tuple[float, int]]] = {p: [] for p in PLACEMENTS}
    bar = tqdm(total=n * len(PLACEMENTS), desc="tokens (coarse)", disable=not progress,
               leave=False)  # fmt: skip
    try:
        for placement in PLACEMENTS:
            for s in range(0, n, 256):
                cands = token_candidates(f, ids[s : min(n, s + 256)], placement)
                if cands:
                    texts = [render(f, base.questions[i], c) for c in cands for i in q_idx]
                    sc = divergence(pair, texts, n_tokens=1, counter=counter,
                                    reference=base.scores, ref_index=q_idx * len(cands))  # fmt: skip
                    gain = (sc.move_f - sc.move_b).view(len(cands), n_q).mean(1)
                    out[placement] += zip(gain.tolist(), (c.tokens[0] for c in cands), strict=True)
                bar.update(min(n, s + 256) - s)
            out[placement].sort(reverse=True)
    finally:
        bar.close()
    return out


def extend_greedy(
    pair,
    seeds: Sequence[Scored],
    pool: Sequence[int],
    base: Baseline,
    counter: Counter,
    *,
    max_len: int = 3,
    progress: bool = True,
) -> list[Scored]:
    """Grow each seed token sequence by one token (before or after) from ``pool`` while
    the best extension scores higher; every scored extension is returned."""
    out: list[Scored] = []
    for seed in seeds:
        best = seed
        while len(best.cand.tokens) < max_len:
            seqs = [(t, *best.cand.tokens) for t in pool] + [(*best.cand.tokens, t) for t in pool]
            cands = token_candidates(pair[0], seqs, best.cand.placement, "token_seq")
            scored, _ = score_candidates(pair, cands, base, counter, desc="extend",
                                         progress=progress)  # fmt: skip
            out += scored
            top = max(scored, key=lambda s: s.score, default=None)
            if top is None or top.score <= best.score:
                break
            best = top
    return out


def _span(model, text: str, cand: Candidate) -> tuple[dict, list[int]] | None:
    """The tokenized prompt and the token indices of ``cand.tokens`` in it (None if the
    tokens do not survive tokenization in context)."""
    enc = model.tokenize([text], offsets=True)
    ids = enc["input_ids"][0].tolist()
    k = len(cand.tokens)
    for start in range(len(ids) - k, -1, -1):
        if tuple(ids[start : start + k]) == cand.tokens:
            return enc, list(range(start, start + k))
    return None


def _grad_embeds(model, enc: dict, where: list[int]) -> tuple[Tensor, Tensor]:
    """Last-position log-probs ``[v]`` (with graph) and a leaf ``[k, d]`` added at ``where``."""
    embed = model.base_hf.get_submodule(model.family.embed)
    delta = torch.zeros(len(where), model.d_model, requires_grad=True)

    def add(module, args, output):
        out = output.clone()
        out[0, where] = out[0, where] + delta.to(out.dtype)
        return out

    handle = embed.register_forward_hook(add)
    try:
        with torch.enable_grad():
            logits = model.forward(enc["input_ids"], enc["attention_mask"], logits_to_keep=1)
            logp = logits.logits[0, -1].float().log_softmax(-1)
    finally:
        handle.remove()
    return logp, delta


def gcg_step(
    pair,
    cand: Candidate,
    base: Baseline,
    counter: Counter,
    embeds: tuple[Tensor, Tensor, Sequence[int]],
    *,
    top_k: int = 16,
    n_swaps: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> list[Scored]:
    """One GCG step from ``cand``: the gradient of ``sum_x KL(F(x + c) || F(x)) -
    KL(B(x + c) || B(x))`` at the first answer token w.r.t. each candidate token's one-hot
    vector (``E_F g_F + E_B g_B``, ``embeds``
    = (E_F ``[n, d]``, E_B ``[n, d]``, their token ids)), its ``top_k`` tokens per
    position, ``n_swaps`` random single swaps among them, each scored. Costs three forward
    passes per question and model for the gradient."""
    f, b = pair
    e_f, e_b, ids = embeds
    grad = torch.zeros(len(cand.tokens), len(ids))
    for i, q in enumerate(base.questions):
        text = render(f, q, cand)
        found = _span(f, text, cand)
        if found is None:
            continue
        enc, where = found
        counter.spend(6)
        lf, df = _grad_embeds(f, enc, where)
        lb, db = _grad_embeds(b, enc, where)
        gain = kl_rows(lf, base.scores.first_f[i]) - kl_rows(lb, base.scores.first_b[i])
        gf, gb = torch.autograd.grad(gain, [df, db])
        grad += gf @ e_f.T + gb @ e_b.T  # [k, n]
    if not grad.any():
        return []
    top = grad.topk(min(top_k, len(ids)), dim=-1).indices  # [k, top_k]
    rng = random.Random(seed)
    swaps = set()
    for _ in range(4 * n_swaps):
        pos = rng.randrange(len(cand.tokens))
        tok = ids[int(top[pos, rng.randrange(top.shape[1])])]
        seq = list(cand.tokens)
        seq[pos] = tok
        if tuple(seq) != cand.tokens:
            swaps.add(tuple(seq))
        if len(swaps) == n_swaps:
            break
    cands = token_candidates(f, sorted(swaps), cand.placement, "token_seq")
    scored, _ = score_candidates(pair, cands, base, counter, desc="gcg", progress=progress)
    return scored
