"""ReLU SAE (sae-lens ``standard``; dictionary_learning ``AutoEncoder``): ``f = relu(pre)``.

Trained with an L1 penalty on ``f * |W_dec row|`` (see :mod:`interp.sae.train`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from interp.sae.base import SAE, SAEConfig

__all__ = ["ReluSAEConfig", "ReluSAE"]


@dataclass(frozen=True)
class ReluSAEConfig(SAEConfig):
    architecture: ClassVar[str] = "standard"


class ReluSAE(SAE):
    architecture: ClassVar[str] = "standard"
    config_cls = ReluSAEConfig

    def activation(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)
