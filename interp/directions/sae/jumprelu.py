"""JumpReLU SAE (sae-lens ``jumprelu``, Gemma Scope; dictionary_learning ``JumpReluAutoEncoder``).

``f = relu(pre) * (pre > threshold)`` with one learned threshold per latent. interp
loads these; it does not train them (:meth:`~interp.directions.sae.base.SAE.training_loss` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from interp.directions.sae.base import SAE, SAEConfig, register
from interp.errors import InterpError

__all__ = ["JumpReLUSAEConfig", "JumpReLUSAE"]


@dataclass(frozen=True)
class JumpReLUSAEConfig(SAEConfig):
    architecture: ClassVar[str] = "jumprelu"


@register()
class JumpReLUSAE(SAE):
    architecture: ClassVar[str] = "jumprelu"
    config_cls = JumpReLUSAEConfig

    def __init__(self, cfg: JumpReLUSAEConfig, *, seed: int | None = None) -> None:
        super().__init__(cfg, seed=seed)
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae))

    def activation(self, pre: Tensor) -> Tensor:
        return pre.relu() * (pre > self.threshold)

    def extra_state(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold}

    def load_tensors(self, tensors: dict[str, Tensor]) -> JumpReLUSAE:
        super().load_tensors(tensors)
        if tuple(tensors["threshold"].shape) != (self.cfg.d_sae,):
            raise InterpError(
                f"threshold has shape {tuple(tensors['threshold'].shape)}, "
                f"expected ({self.cfg.d_sae},)"
            )
        with torch.no_grad():
            self.threshold.data = tensors["threshold"].detach().clone().to(self.W_enc.dtype)
        return self
