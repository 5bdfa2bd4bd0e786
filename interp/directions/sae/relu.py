"""ReLU SAE (sae-lens ``standard``; dictionary_learning ``AutoEncoder``): ``f = relu(pre)``.

Trained on ``|x - xhat|^2 + l1_coefficient * sum_i f_i |W_dec_i|`` (an L1 penalty on the
latents weighted by their decoder norms). Registered as ``standard`` and ``relu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from interp.directions.sae.base import SAE, SAEConfig, register

if TYPE_CHECKING:
    from interp.directions.sae.train import SAETrainConfig

__all__ = ["ReluSAEConfig", "ReluSAE"]


@dataclass(frozen=True)
class ReluSAEConfig(SAEConfig):
    architecture: ClassVar[str] = "standard"


@register("relu")
class ReluSAE(SAE):
    architecture: ClassVar[str] = "standard"
    config_cls = ReluSAEConfig

    def activation(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)

    def training_loss(self, x: Tensor, cfg: SAETrainConfig) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        l1 = (f * self.W_dec.norm(dim=1)).sum(-1).mean()
        return self.reconstruction_loss(x, f) + cfg.l1_coefficient * l1, f
