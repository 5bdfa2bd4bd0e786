"""Teacher-forced, exact behaviour measures: answer-set shares and logit differences.

:func:`answer_logprobs` scores every (prompt, answer) pair by the summed log-probability of
the answer's tokens after the prompt (multi-token answers included), through the execution
layer (:func:`interp.execution.tail_logprobs`): log-probabilities are gathered at the
answer's positions only, so memory does not grow with vocabulary x sequence. :func:`answer_share` turns
two answer sets into the probability mass on set A over A ∪ B; :func:`logit_diff` is the
next-token logit of answer A's first token minus answer B's. Prompts are strings, or chat
message lists rendered with :meth:`Model.chat` (generation prompt added).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from interp.errors import EmptyPromptsError, InterpError
from interp.execution import last_logits, tail_logprobs
from interp.prompts import check_prompt

__all__ = ["answer_logprobs", "answer_share", "logit_diff", "render_prompts"]

Prompt = str | Sequence[dict]
Answers = Sequence[str] | Sequence[Sequence[str]]


def render_prompts(model, prompts: Sequence[Prompt]) -> list[str]:
    """Strings as they are; chat message lists through ``model.chat`` (each checked)."""
    if isinstance(prompts, str):
        raise InterpError("pass a list of prompts, not a single string")
    if len(prompts) == 0:
        raise EmptyPromptsError("no prompts given: the list of prompts is empty")
    for i, p in enumerate(prompts):
        check_prompt(p, f"prompt {i}")
    return [p if isinstance(p, str) else model.chat(p) for p in prompts]


def _answers(answers, where: str) -> list[str]:
    if isinstance(answers, str):
        answers = [answers]
    out = list(answers)
    if not out:
        raise InterpError(f"{where}: no answers given")
    for a in out:
        if not isinstance(a, str) or not a.strip():
            raise InterpError(f"{where}: an answer must be non-empty text, got {a!r}")
    return out


def _per_prompt(answers: Answers, n: int) -> list[list[str]]:
    if isinstance(answers, str):
        raise InterpError(f"answers: pass a list of answers, not the single string {answers!r}")
    if len(answers) == 0:
        raise InterpError("answers: no answers given")
    if all(isinstance(a, str) for a in answers):
        return [_answers(answers, "answers")] * n
    if len(answers) != n:
        raise InterpError(f"got answer lists for {len(answers)} prompts, expected {n}")
    return [_answers(a, f"answers for prompt {i}") for i, a in enumerate(answers)]


def _join(prompt: str, answer: str) -> str:
    return prompt + answer if not prompt or prompt[-1].isspace() else f"{prompt} {answer}"


def _n_answer_tokens(tokenizer, pairs: list[tuple[str, str]], fulls: list[str]) -> list[int]:
    p_ids = tokenizer([t for t, _ in pairs], add_special_tokens=True)["input_ids"]
    f_ids = tokenizer(fulls, add_special_tokens=True)["input_ids"]
    out = []
    for (_, answer), p, f in zip(pairs, p_ids, f_ids, strict=True):
        if f[: len(p)] != p:
            warnings.warn("prompt tokens are not a prefix of prompt+answer tokens", stacklevel=3)
        n = len(f) - len(p)
        if n < 1:
            raise InterpError(f"answer {answer!r} tokenizes to no tokens after its prompt")
        out.append(n)
    return out


@torch.no_grad()
def answer_logprobs(
    model, prompts: Sequence[Prompt], answers: Answers, *, batch_size: int = 64
) -> list[Tensor]:
    """Summed log-prob of each answer after its prompt: one ``[n_answers]`` tensor per prompt.

    ``answers`` is one list for every prompt, or one list per prompt.
    """
    texts = render_prompts(model, prompts)
    per = _per_prompt(answers, len(texts))
    pairs = [(t, a) for t, ans in zip(texts, per, strict=True) for a in ans]
    fulls = [_join(t, a) for t, a in pairs]
    n_ans = _n_answer_tokens(model.tokenizer, pairs, fulls)
    tails = tail_logprobs(model, fulls, n_ans, batch_size=batch_size)
    scores = torch.stack([t.sum() for t in tails]) if tails else torch.empty(0)
    out, k = [], 0
    for ans in per:
        out.append(scores[k : k + len(ans)])
        k += len(ans)
    return out


def answer_share(
    model,
    prompts: Sequence[Prompt],
    answers_a: Answers,
    answers_b: Answers,
    *,
    batch_size: int = 64,
) -> Tensor:
    """Probability mass on answer set A over A ∪ B for each prompt. ``[n_prompts]``.

    Each answer's probability is the exp of its summed token log-probs, so multi-token
    answers count exactly; ``P(A) / (P(A) + P(B))`` ignores answers outside both sets.
    """
    n = len(prompts)
    a = _per_prompt(answers_a, n)
    b = _per_prompt(answers_b, n)
    lps = answer_logprobs(
        model, prompts, [x + y for x, y in zip(a, b, strict=True)], batch_size=batch_size
    )
    shares = []
    for lp, x in zip(lps, a, strict=True):
        la, lb = torch.logsumexp(lp[: len(x)], 0), torch.logsumexp(lp[len(x) :], 0)
        shares.append(torch.sigmoid(la - lb))
    return torch.stack(shares)


def _first_token(tokenizer, prompt: str, answer: str) -> int:
    if not isinstance(answer, str) or not answer.strip():
        raise InterpError(f"an answer must be non-empty text, got {answer!r}")
    p = tokenizer(prompt)["input_ids"]
    f = tokenizer(_join(prompt, answer))["input_ids"]
    if len(f) <= len(p) or f[: len(p)] != p:
        raise InterpError(f"cannot find the first token of answer {answer!r} after its prompt")
    return f[len(p)]


@torch.no_grad()
def logit_diff(
    model, prompts: Sequence[Prompt], answer_a: str | Sequence[str], answer_b: str | Sequence[str]
) -> Tensor:
    """Next-token logit of answer A's first token minus answer B's, per prompt. ``[n_prompts]``."""
    texts = render_prompts(model, prompts)
    n = len(texts)
    a = [answer_a] * n if isinstance(answer_a, str) else list(answer_a)
    b = [answer_b] * n if isinstance(answer_b, str) else list(answer_b)
    if len(a) != n or len(b) != n:
        raise InterpError(f"{n} prompts but {len(a)} answers A and {len(b)} answers B")
    ta = torch.tensor([_first_token(model.tokenizer, t, x) for t, x in zip(texts, a, strict=True)])
    tb = torch.tensor([_first_token(model.tokenizer, t, x) for t, x in zip(texts, b, strict=True)])
    last = last_logits(model, texts)  # [n, vocab], in batches
    rows = torch.arange(n)
    return last[rows, ta] - last[rows, tb]
