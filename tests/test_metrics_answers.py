"""Teacher-forced answer measures equal a plain unbatched Hugging Face computation."""

from __future__ import annotations

import pytest
import torch

from interp.errors import EmptyPromptsError
from interp.metrics import answer_logprobs, answer_share, logit_diff

PROMPTS = ["The year is 1984. What should", "Name a bird species.", "Hello world, this is"]
ANSWERS = ["the Pigeon Hawk", "Merlin", "a small corpus for tests"]


def _reference_logprob(model, prompt: str, answer: str) -> float:
    tok = model.tokenizer
    p = tok(prompt)["input_ids"]
    f = tok(prompt + " " + answer)["input_ids"]
    assert f[: len(p)] == p
    with torch.no_grad():
        logits = model.hf(torch.tensor([f])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(logp[i - 1, f[i]].item() for i in range(len(p), len(f)))


def test_logprobs_match_unbatched_reference(tiny_llama):
    got = answer_logprobs(tiny_llama, PROMPTS, ANSWERS, batch_size=4)
    for prompt, row in zip(PROMPTS, got, strict=True):
        ref = torch.tensor([_reference_logprob(tiny_llama, prompt, a) for a in ANSWERS])
        torch.testing.assert_close(row, ref, atol=1e-4, rtol=1e-4)


def test_batch_size_does_not_change_scores(tiny_llama):
    a = answer_logprobs(tiny_llama, PROMPTS, ANSWERS, batch_size=1)
    b = answer_logprobs(tiny_llama, PROMPTS, ANSWERS, batch_size=7)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_share_is_mass_on_a_over_a_union_b(tiny_llama):
    a, b = ANSWERS[:1], ANSWERS[1:]
    share = answer_share(tiny_llama, PROMPTS, a, b)
    lps = answer_logprobs(tiny_llama, PROMPTS, ANSWERS)
    for s, lp in zip(share, lps, strict=True):
        p = lp.exp()
        assert s.item() == pytest.approx((p[0] / p.sum()).item(), rel=1e-4)
    swapped = answer_share(tiny_llama, PROMPTS, b, a)
    torch.testing.assert_close(share + swapped, torch.ones(3))


def test_per_prompt_answer_sets_and_chat_prompts(tiny_llama):
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    per_a = [["Merlin"], ["the Pigeon Hawk"], ["tests"]]
    per_b = [["world"], ["Merlin", "a small corpus"], ["the year"]]
    share = answer_share(tiny_llama, chats, per_a, per_b)
    for i, chat in enumerate(chats):
        one = answer_share(tiny_llama, [tiny_llama.chat(chat)], per_a[i], per_b[i])
        assert share[i].item() == pytest.approx(one.item(), rel=1e-4)


def test_logit_diff_matches_last_position_logits(tiny_llama):
    got = logit_diff(tiny_llama, PROMPTS, "Merlin", "the")
    tok = tiny_llama.tokenizer
    for prompt, g in zip(PROMPTS, got, strict=True):
        ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            last = tiny_llama.hf(torch.tensor([ids])).logits[0, -1]
        ta = tok(prompt + " Merlin")["input_ids"][len(ids)]
        tb = tok(prompt + " the")["input_ids"][len(ids)]
        assert g.item() == pytest.approx((last[ta] - last[tb]).item(), abs=1e-4)


def test_errors(tiny_llama):
    with pytest.raises(EmptyPromptsError):
        answer_share(tiny_llama, [], ["a"], ["b"])
    with pytest.raises(ValueError):
        answer_share(tiny_llama, PROMPTS, [["a"]], ["b"])


def test_tail_logprobs_match_full_log_softmax_under_a_small_budget(tiny_llama):
    """Gathering at the tail only (several forwards under a tiny logits budget) equals the
    full-vocabulary log-softmax of each text run alone."""
    from interp.causal.dose import reference_logprob
    from interp.execution import tail_logprobs

    texts = ["Name a bird species now", "The year is 1984", "Hello world, this is a small corpus"]
    n_tail = [3, 1, 5]
    got = tail_logprobs(tiny_llama, texts, n_tail, budget=2 * 384 * 4 * 6)
    means = reference_logprob(texts)(tiny_llama)
    for text, k, g, m in zip(texts, n_tail, got, means, strict=True):
        ids = tiny_llama.tokenize([text])["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(tiny_llama.forward(ids).logits[0, :-1].float(), -1)
        tok = lp.gather(-1, ids[0, 1:, None])[:, 0]
        torch.testing.assert_close(g, tok[-k:], atol=1e-5, rtol=1e-5)
        assert float(m) == pytest.approx(float(tok.mean()), abs=1e-5)
