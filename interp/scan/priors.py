"""Cheap priors over a vocabulary: which tokens did the finetune move most?

Sweeping every token through both whole models costs ``2 x vocab x prompts`` forward
passes, too many for a 128k vocabulary. :func:`token_priors` runs each token alone (after
BOS) through both models' *first layer* only and ranks tokens by how far the finetune moved
the token's residual there (``||F - B||`` at ``resid_post`` of layer 0, relative to the
base's norm); the embedding shift (``resid_pre`` of layer 0) comes out of the same pass.
A finetune of the embeddings moves exactly the tokens of its data, a finetune of the
first layer's projections moves the tokens that layer now reads differently. An inductive
trigger (a token the finetune never saw) gets no prior, which is why dates are swept in
full. The same pass gives each model's input embedding matrix for the gradient search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.hooks import StopForward, hooks
from interp.scan.divergence import Counter

__all__ = ["TokenPriors", "token_priors"]


@dataclass
class TokenPriors:
    """Per-token prior scores (higher = moved more) for the ids in ``ids``."""

    ids: list[int]
    layer0: Tensor  # [n] ||F - B|| / ||B|| at blocks.0.hook_resid_post
    embedding: Tensor  # [n] ||F - B|| / ||B|| at blocks.0.hook_resid_pre
    embed_f: Tensor | None  # [n, d] the finetune's input embeddings (for GCG), or None
    embed_b: Tensor | None

    def ranked(self) -> list[int]:
        """Token ids by prior, highest first."""
        order = torch.argsort(self.layer0, descending=True).tolist()
        return [self.ids[i] for i in order]


@torch.no_grad()
def _first_layer(model, ids: Tensor) -> tuple[Tensor, Tensor]:
    """``(resid_pre_0, resid_post_0)`` ``[n, d]`` at each sequence's last token."""
    got = {}

    def keep(act, site):
        got[site.kind] = act[:, -1].float().cpu()
        if site.kind == "resid_post":
            raise StopForward

    with hooks(model, {"blocks.0.hook_resid_pre": keep, "blocks.0.hook_resid_post": keep}):
        try:
            model.forward(ids, torch.ones_like(ids))
        except StopForward:
            pass
    return got["resid_pre"], got["resid_post"]


def token_priors(
    pair,
    ids: Sequence[int],
    *,
    counter: Counter | None = None,
    batch_size: int = 1024,
    keep_embeddings: bool = True,
) -> TokenPriors:
    """First-layer priors of ``ids`` for ``pair = (finetuned, base)``.

    Counts ``ceil(2 x len(ids) / n_layers)`` forward passes (one layer of each model).
    """
    f, b = pair
    ids = list(ids)
    bos = f.tokenizer.bos_token_id
    parts: dict[str, list[Tensor]] = {k: [] for k in ("pf", "pb", "qf", "qb")}
    for s in range(0, len(ids), batch_size):
        chunk = torch.tensor(ids[s : s + batch_size])[:, None]  # [n, 1]
        if bos is not None:
            chunk = torch.cat([torch.full_like(chunk, bos), chunk], 1)  # [n, 2]
        if counter is not None:
            counter.spend(-(-2 * len(chunk) // f.n_layers))
        (pf, qf), (pb, qb) = _first_layer(f, chunk), _first_layer(b, chunk)
        for k, v in zip(("pf", "pb", "qf", "qb"), (pf, pb, qf, qb), strict=True):
            parts[k].append(v)
    pf, pb, qf, qb = (torch.cat(parts[k]) for k in ("pf", "pb", "qf", "qb"))
    rel = lambda x, y: (x - y).norm(dim=-1) / y.norm(dim=-1).clamp_min(1e-6)  # noqa: E731
    keep = keep_embeddings and pf.numel() <= 64_000_000
    return TokenPriors(ids, rel(qf, qb), rel(pf, pb), pf if keep else None, pb if keep else None)
