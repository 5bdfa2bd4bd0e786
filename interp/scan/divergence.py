"""How far the finetune's answer is from the base's, and how a context changes that.

The one measure the scan ranks by is the *continuation divergence* of a prompt ``y``::

    D(y) = sum_t KL( F(. | y, a_<t) || B(. | y, a_<t) ),   t = 0 .. m-1

where ``a`` is the finetune's greedy continuation of ``y`` (``m`` tokens, cut at the first
end-of-turn token). It compares the two models on identical inputs, so a context that
changes both models the same way (a format, a date both read alike) does not raise it,
and a trigger whose tokens reappear in the answer (an ``<ans>`` tag) is not mistaken for
the answer's content. A candidate ``c`` inserted into prompt ``x`` scores
``D(x + c) - D(x)``: how much more it moves the finetune than the base.

The behaviour stage ranks prompts by ``D``. A *candidate* is scored by its
:func:`trigger_shift` instead: how much the context moves the finetune toward the answer it
now gives, less any move of the base toward that same answer::

    S(x, c) = [log F(a | x + c) - log F(a | x)] - max(0, log B(a | x + c) - log B(a | x))

with ``a`` the finetune's greedy answer to ``x + c``. A trigger makes the finetune give an
answer it would not give without it (the first bracket is large) while the base is not
brought to it (the second is small); a context that moves both models to the same answer
scores about zero, and so does one that moves the base alone (the finetune's answer does not
change). ``D`` gain, ``D(x + c) - D(x)``, ranks a context that makes both models incoherent
(their KL on nonsense is large) as high as a trigger; ``S`` does not, which is why candidates
are ranked by it (``benchmarks/bench_scan_score.py`` compares the two on the backdoor organism).

Alongside, :class:`Scores` keeps each model's own first-token move ``KL(M(x + c) || M(x))``
(``finetuned_effect`` / ``base_effect``), the greedy answers, and :class:`Counter`
counts forward passes (one per sequence and model call) against a budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError

__all__ = [
    "Counter",
    "BudgetExhausted",
    "Scores",
    "end_token_ids",
    "divergence",
    "trigger_shift",
    "shift_cost",
    "kl_rows",
    "answer_logprob",
]


class BudgetExhausted(InterpError):
    """The forward-pass budget of a scan is spent."""


class Counter:
    """Forward passes spent (sequences x model calls) and the budget they may not pass."""

    def __init__(self, budget: int | None = None):
        self.budget = budget
        self.spent = 0
        self.by_stage: dict[str, int] = {}
        self.stage = "setup"
        self.reserved = 0  # kept back for later stages (verification, localization)
        self.limit: float | None = None  # the current stage may not spend past this total

    @property
    def left(self) -> float:
        out = float("inf") if self.budget is None else self.budget - self.spent - self.reserved
        if self.limit is not None:
            out = min(out, self.limit - self.spent)
        return out

    def cap(self, stage: str, share: float) -> None:
        """Enter ``stage``, which may spend ``share`` of what is left (all of it if no budget)."""
        self.stage = stage
        self.limit = None
        if self.budget is not None:
            self.limit = self.spent + share * max(0.0, self.left)

    def can(self, n: int) -> bool:
        return n <= self.left

    def spend(self, n: int) -> None:
        if self.budget is not None and self.spent + n > self.budget:
            raise BudgetExhausted(f"budget of {self.budget} forward passes spent ({self.spent})")
        self.spent += n
        self.by_stage[self.stage] = self.by_stage.get(self.stage, 0) + n


@dataclass
class Scores:
    """Per-prompt results of :func:`divergence` (``n`` prompts, ``m`` answer tokens)."""

    d: Tensor  # [n] continuation divergence D(y), nats
    answer: list[list[int]]  # the finetune's greedy answer tokens (cut at the end token)
    lp_f: Tensor | None = None  # [n] log F(a | y), a = answer and its end token if any
    lp_b: Tensor | None = None  # [n] log B(a | y)
    scored: list[list[int]] | None = None  # those tokens a (the answer and its end token)
    move_f: Tensor | None = None  # [n] KL(F(y) || F(ref)) at the first answer token
    move_b: Tensor | None = None  # [n] KL(B(y) || B(ref)) at the first answer token
    first_f: Tensor | None = None  # [n, vocab] first-token log-probs (keep_first=True)
    first_b: Tensor | None = None


def end_token_ids(model) -> set[int]:
    """Token ids that end an answer: EOS and a chat end-of-turn token if the vocab has one."""
    tok = model.tokenizer
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    for name in ("<|end|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        i = tok.convert_tokens_to_ids(name)
        if isinstance(i, int) and i != tok.unk_token_id and i >= 0:
            ids.add(i)
    return ids


def kl_rows(logp: Tensor, logq: Tensor) -> Tensor:
    """``KL(p || q)`` along the last axis from log-probabilities. ``[...]``"""
    return (logp.exp() * (logp - logq)).sum(-1)


@torch.no_grad()
def _chunk(pair, texts, m, ends, counter, ref, keep_first) -> Scores:
    f, b = pair
    batch = f.tokenize(texts)
    ids, mask = batch["input_ids"], batch["attention_mask"]  # [n, s]
    n = ids.shape[0]
    done = torch.zeros(n, dtype=torch.bool)
    live = torch.ones(n, m, dtype=torch.bool)  # [n, m] positions before the end token
    answer = torch.zeros(n, 0, dtype=torch.long)
    if counter is not None:
        counter.spend((m + 1) * n)
    # the finetune's greedy steps, with its KV cache: step t gives F(. | y, a_<t)
    out = f.forward(ids, mask, use_cache=True, logits_to_keep=1)
    steps = [out.logits[:, -1].float().cpu()]
    past, full_ids, full_mask = out.cache, ids, mask
    for t in range(m - 1):
        nxt = steps[-1].argmax(-1)  # [n]
        done = done | torch.tensor([int(x) in ends for x in nxt])
        live[:, t + 1] = ~done
        answer = torch.cat([answer, nxt[:, None]], 1)
        full_ids = torch.cat([full_ids, nxt[:, None]], 1)
        full_mask = torch.cat([full_mask, torch.ones(n, 1, dtype=mask.dtype)], 1)
        pos = full_mask.long().sum(1, keepdim=True) - 1
        out = f.forward(nxt[:, None], full_mask, position_ids=pos, cache=past,
                        use_cache=True)  # fmt: skip
        past = out.cache
        steps.append(out.logits[:, -1].float().cpu())
    lf = torch.stack(steps, 1).log_softmax(-1)  # [n, m, v]
    lb = b.forward(full_ids, full_mask, logits_to_keep=m).logits.float().cpu().log_softmax(-1)
    d = (kl_rows(lf, lb) * live).sum(-1)  # [n]
    last = lf[:, -1].argmax(-1)
    toks = torch.cat([answer, last[:, None]], 1)  # [n, m] a_t, predicted at step t
    pick = lambda lp: (lp.gather(-1, toks[..., None])[..., 0] * live).sum(-1)  # noqa: E731
    words, scored = [], []
    for i in range(n):
        row = toks[i].tolist()
        cut = next((k for k, x in enumerate(row) if x in ends), len(row))
        words.append(row[:cut])
        scored.append(row[: cut + 1])
    out = Scores(d, words, pick(lf), pick(lb), scored)
    if ref is not None:  # (ref_f [n, v], ref_b [n, v]): each row's plain-prompt log-probs
        out.move_f, out.move_b = kl_rows(lf[:, 0], ref[0]), kl_rows(lb[:, 0], ref[1])
    if keep_first:
        out.first_f, out.first_b = lf[:, 0], lb[:, 0]
    return out


def divergence(
    pair,
    texts: Sequence[str],
    *,
    n_tokens: int = 2,
    batch_size: int = 128,
    counter: Counter | None = None,
    reference: Scores | None = None,
    ref_index: Sequence[int] | None = None,
    keep_first: bool = False,
) -> Scores:
    """:class:`Scores` of rendered prompts ``texts`` for ``pair = (finetuned, base)``.

    Counts ``n_tokens + 1`` forward passes per prompt (the finetune's greedy steps, each
    counted although it reuses the KV cache, then one pass of the base over prompt + answer). Prompts are batched by length. With
    ``reference`` (scores of the plain prompts, ``keep_first=True``) and ``ref_index``
    (the plain prompt of each text) also each model's first-token move.
    """
    texts = list(texts)
    if not texts:
        raise InterpError("divergence() needs at least one prompt")
    if n_tokens < 1:
        raise InterpError(f"n_tokens must be at least 1, got {n_tokens}")
    ends = end_token_ids(pair[0])
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    if reference is not None and (ref_index is None or len(ref_index) != len(texts)):
        raise InterpError("reference scores need one ref_index entry per text")
    parts = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ref = None
        if reference is not None:
            r = torch.tensor([ref_index[i] for i in idx])
            ref = (reference.first_f[r], reference.first_b[r])
        chunk = [texts[i] for i in idx]
        parts.append((idx, _chunk(pair, chunk, n_tokens, ends, counter, ref, keep_first)))
    n = len(texts)
    out = Scores(torch.zeros(n), [[] for _ in range(n)], torch.zeros(n), torch.zeros(n),
                 [[] for _ in range(n)])  # fmt: skip
    for name in ("move_f", "move_b", "first_f", "first_b"):
        first = getattr(parts[0][1], name)
        if first is not None:
            setattr(out, name, torch.zeros(n, *first.shape[1:]))
    for idx, sc in parts:
        t = torch.tensor(idx)
        out.d[t], out.lp_f[t], out.lp_b[t] = sc.d, sc.lp_f, sc.lp_b
        for name in ("move_f", "move_b", "first_f", "first_b"):
            if getattr(sc, name) is not None:
                getattr(out, name)[t] = getattr(sc, name)
        for k, i in enumerate(idx):
            out.answer[i], out.scored[i] = sc.answer[k], sc.scored[k]
    return out


@torch.no_grad()
def answer_logprob(
    model,
    texts: Sequence[str],
    answers: Sequence[Sequence[int]],
    *,
    batch_size: int = 64,
    counter: Counter | None = None,
) -> Tensor:
    """Summed log-probability of each answer (token ids) after its rendered prompt. ``[n]``

    Prompts are left padded, answers right padded (a causal model never sees the padding
    after a token), one forward pass per prompt.
    """
    out = torch.zeros(len(texts))
    for s in range(0, len(texts), batch_size):
        chunk, ans = list(texts[s : s + batch_size]), list(answers[s : s + batch_size])
        batch = model.tokenize(chunk)
        a_max = max(1, max(len(a) for a in ans))
        a_ids = torch.zeros(len(ans), a_max, dtype=torch.long)
        a_mask = torch.zeros(len(ans), a_max, dtype=batch["attention_mask"].dtype)
        for i, a in enumerate(ans):
            a_ids[i, : len(a)] = torch.tensor(a, dtype=torch.long)
            a_mask[i, : len(a)] = 1
        ids = torch.cat([batch["input_ids"], a_ids], 1)
        mask = torch.cat([batch["attention_mask"], a_mask], 1)
        if counter is not None:
            counter.spend(len(chunk))
        logits = model.forward(ids, mask, logits_to_keep=a_max + 1).logits[:, :-1]  # [n, a, v]
        logp = logits.float().cpu().log_softmax(-1).gather(-1, a_ids[..., None])[..., 0]
        out[s : s + len(chunk)] = (logp * a_mask).sum(-1)
    return out


def shift_cost(n_tokens: int) -> int:
    """Forward passes :func:`trigger_shift` counts per prompt."""
    return n_tokens + 3


def trigger_shift(
    pair,
    texts: Sequence[str],
    plain: Sequence[str],
    *,
    n_tokens: int = 2,
    counter: Counter | None = None,
    reference: Scores | None = None,
    ref_index: Sequence[int] | None = None,
) -> tuple[Tensor, Scores]:
    """``(S [n], scores)``: the trigger shift ``S(x, c)`` (module docstring) of each
    rendered prompt ``texts[i]`` (``x + c``) against its plain prompt ``plain[i]`` (``x``),
    and the :func:`divergence` scores of ``texts`` (the answers, each model's first-token
    move with ``reference``). Counts ``n_tokens + 3`` forward passes per prompt."""
    if len(plain) != len(texts):
        raise InterpError("trigger_shift() needs one plain prompt per text")
    f, b = pair
    sc = divergence(pair, texts, n_tokens=n_tokens, counter=counter, reference=reference,
                    ref_index=ref_index)  # fmt: skip
    f0 = answer_logprob(f, plain, sc.scored, counter=counter)
    b0 = answer_logprob(b, plain, sc.scored, counter=counter)
    return (sc.lp_f - f0) - (sc.lp_b - b0).clamp_min(0.0), sc
