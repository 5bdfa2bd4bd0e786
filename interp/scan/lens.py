"""The activation-difference lens: what the finetune adds to the residual on plain text.

After Minder et al. (2025, "Narrow finetuning leaves clearly readable traces in
activation differences"): the mean finetune-minus-base residual over the first tokens of
generic text, at every layer, read out through the final norm and unembedding as top
tokens, and added to the base model as a steering vector to see what it does (greedy
answers at a few strengths, and how much closer the steered base comes to the finetune's
next-token distribution on the probe questions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.causal.interventions import residual_norm, steer
from interp.directions import Direction
from interp.record.capture import capture
from interp.scan.divergence import Counter, end_token_ids, kl_rows

__all__ = ["Lens", "activation_lens", "greedy_answers"]


@dataclass
class Lens:
    """Per-layer mean differences, their top tokens, and the steering read-out."""

    layers: list[int]
    norm: list[float]  # ||mean F - mean B|| per layer
    relative: list[float]  # the same over the base's mean residual norm
    top_tokens: list[list[str]]
    steer_layer: int
    steered: list[dict] = field(default_factory=list)  # {"alpha", "prompt", "base", "steered"}
    kl_reduction: dict[float, float] = field(default_factory=dict)  # alpha -> share of KL gone


def _unembed(model, h: Tensor) -> Tensor:
    hf = model.base_hf
    return hf.get_output_embeddings()(hf.get_submodule(model.family.final_norm)(h))


@torch.no_grad()
def greedy_answers(model, texts: Sequence[str], n_tokens: int = 8) -> list[str]:
    """Greedy continuations of rendered prompts, cut at the end token."""
    ends = end_token_ids(model)
    batch = model.tokenize(list(texts))
    gen = model.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=n_tokens,
                         do_sample=False)[:, batch["input_ids"].shape[1] :]  # fmt: skip
    out = []
    for row in gen.tolist():
        cut = next((k for k, x in enumerate(row) if x in ends), len(row))
        out.append(model.tokenizer.decode(row[:cut], skip_special_tokens=False).strip())
    return out


@torch.no_grad()
def _first_logp(model, texts: Sequence[str]) -> Tensor:
    batch = model.tokenize(list(texts))
    out = model.forward(batch["input_ids"], batch["attention_mask"], logits_to_keep=1)
    return out.logits[:, -1].float().cpu().log_softmax(-1)  # [n, v]


def activation_lens(
    pair,
    texts: Sequence[str],
    questions: Sequence[str],
    counter: Counter,
    *,
    n_positions: int = 5,
    top_k: int = 8,
    alphas: Sequence[float] = (0.25, 0.5, 1.0),
    n_show: int = 4,
) -> Lens:
    """The lens of ``pair = (finetuned, base)`` on plain ``texts``; steering is shown on
    rendered chat ``questions``."""
    f, b = pair
    lengths = [len(f.tokenize([t])["input_ids"][0]) for t in texts]
    texts = [t for t, n in zip(texts, lengths, strict=True) if n > n_positions]
    positions = list(range(1, n_positions + 1))  # the first tokens after BOS
    counter.spend(2 * len(texts))
    acts_f = capture(f, texts, sites="resid_post", positions=positions, progress=False)
    acts_b = capture(b, texts, sites="resid_post", positions=positions, progress=False)
    layers = acts_f.layers
    diffs = [
        acts_f.site(i).float().mean(0) - acts_b.site(i).float().mean(0) for i in range(len(layers))
    ]
    base_norm = [float(acts_b.site(i).float().norm(dim=-1).mean()) for i in range(len(layers))]
    top = []
    for d in diffs:
        logits = _unembed(b, d[None].to(b.device, b.dtype))[0].float()
        top.append([b.tokenizer.decode([int(t)]).strip() for t in logits.topk(top_k).indices])
    rel = [float(d.norm()) / max(n, 1e-6) for d, n in zip(diffs, base_norm, strict=True)]
    layer = layers[int(torch.tensor(rel).argmax())]
    lens = Lens(layers, [float(d.norm()) for d in diffs], rel, top, layer)
    if float(diffs[layers.index(layer)].norm()) < 1e-8:  # nothing moved on plain text
        return lens
    _steer_readout(pair, lens, diffs[layers.index(layer)], questions, counter, alphas, n_show)
    return lens


def _steer_readout(pair, lens, diff, questions, counter, alphas, n_show) -> None:
    f, b = pair
    questions = list(questions)
    target = _first_logp(f, questions)  # before any hook is registered
    plain = _first_logp(b, questions)
    kl0 = float(kl_rows(target, plain).mean())
    norm = residual_norm(b, questions, layers=lens.steer_layer)
    site = f"blocks.{lens.steer_layer}.hook_resid_post"
    direction = Direction(diff, layer=lens.steer_layer, site=site, name="lens")
    counter.spend(2 * len(questions) + len(alphas) * (len(questions) + 8 * n_show))
    show = questions[:n_show]
    plain_answers = greedy_answers(b, show)
    for alpha in alphas:
        with steer(b, direction, alpha=alpha, layers=lens.steer_layer, scale=norm):
            kl = float(kl_rows(target, _first_logp(b, questions)).mean())
            answers = greedy_answers(b, show)
        lens.kl_reduction[alpha] = 1 - kl / kl0 if kl0 > 0 else 0.0
        for q, a0, a in zip(show, plain_answers, answers, strict=True):
            lens.steered.append({"alpha": alpha, "prompt": q, "base": a0, "steered": a})
