"""BatchTopK SAE (dictionary_learning ``BatchTopKSAE``).

Training keeps the ``k * batch`` largest ReLU'd pre-activations across the whole batch
(:meth:`BatchTopKSAE.batch_topk`). At inference it is *not* a ReLU SAE and not per-row
TopK: a latent fires when its ReLU'd pre-activation exceeds one global ``threshold``
(estimated during training), so one row may use more or fewer than ``k`` latents. An
SAE whose threshold was never set (``threshold < 0``) falls back to batch top-k.

Trained on ``|x - xhat|^2`` with batch top-k; the inference threshold is the mean, over
the last half of training, of the smallest non-zero activation of each batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from interp.directions.sae.base import SAE, SAEConfig, register

if TYPE_CHECKING:
    from interp.directions.sae.train import SAETrainConfig

__all__ = ["BatchTopKSAEConfig", "BatchTopKSAE"]


@dataclass(frozen=True)
class BatchTopKSAEConfig(SAEConfig):
    k: int = 32

    architecture: ClassVar[str] = "batchtopk"


@register()
class BatchTopKSAE(SAE):
    architecture: ClassVar[str] = "batchtopk"
    config_cls = BatchTopKSAEConfig
    cfg: BatchTopKSAEConfig

    def __init__(self, cfg: BatchTopKSAEConfig, *, seed: int | None = None) -> None:
        super().__init__(cfg, seed=seed)
        self.register_buffer("threshold", torch.tensor(-1.0))

    def batch_topk(self, pre: Tensor) -> Tensor:
        """The training activation: top ``k * rows`` of ``relu(pre)`` over the batch."""
        acts = pre.relu()
        flat = acts.reshape(-1)  # [rows * d_sae]
        n_keep = min(self.cfg.k * (flat.numel() // self.d_sae), flat.numel())
        values, idx = flat.topk(n_keep, sorted=False)
        return torch.zeros_like(flat).scatter(0, idx, values).reshape(acts.shape)

    def activation(self, pre: Tensor) -> Tensor:
        if float(self.threshold) < 0:
            return self.batch_topk(pre)
        acts = pre.relu()
        return acts * (acts > self.threshold)

    def training_loss(self, x: Tensor, cfg: SAETrainConfig) -> tuple[Tensor, Tensor]:
        f = self.batch_topk(self.pre_acts(x))
        return self.reconstruction_loss(x, f), f

    def training_statistic(self, f: Tensor) -> float | None:
        active = f.detach()[f.detach() > 0]
        return float(active.min()) if active.numel() else None

    def finish_training(self, statistics: list[float]) -> None:
        if statistics:
            self.threshold.fill_(sum(statistics) / len(statistics))

    def extra_state(self) -> dict[str, Tensor]:
        return {"threshold": self.threshold.reshape(1).float()}

    def load_tensors(self, tensors: dict[str, Tensor]) -> BatchTopKSAE:
        super().load_tensors(tensors)
        if "threshold" in tensors:
            self.threshold.fill_(float(tensors["threshold"].reshape(-1)[0]))
        return self
