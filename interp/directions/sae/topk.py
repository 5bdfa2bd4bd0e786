"""TopK SAE (sae-lens ``topk``; dictionary_learning ``AutoEncoderTopK``).

Each row keeps its ``k`` largest pre-activations, passed through ReLU; everything else is
zero. With ``rescale_acts_by_decoder_norm`` the pre-activations are multiplied by the
decoder row norms before selection (sae-lens' option of the same name). Trained on
``|x - xhat|^2`` alone (the top-k is the sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from interp.directions.sae.base import SAE, SAEConfig, register

if TYPE_CHECKING:
    from interp.directions.sae.train import SAETrainConfig

__all__ = ["TopKSAEConfig", "TopKSAE", "topk_activation"]


@dataclass(frozen=True)
class TopKSAEConfig(SAEConfig):
    k: int = 32
    rescale_acts_by_decoder_norm: bool = False

    architecture: ClassVar[str] = "topk"


def topk_activation(pre: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest entries of the last axis (ReLU'd), zero the rest."""
    values, idx = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, idx, values.relu())


@register()
class TopKSAE(SAE):
    architecture: ClassVar[str] = "topk"
    config_cls = TopKSAEConfig
    cfg: TopKSAEConfig

    def activation(self, pre: Tensor) -> Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        return topk_activation(pre, self.cfg.k)

    def training_loss(self, x: Tensor, cfg: SAETrainConfig) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        return self.reconstruction_loss(x, f), f

    def decode(self, f: Tensor) -> Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            f = f / self.W_dec.norm(dim=-1)
        return f @ self.W_dec + self.b_dec
