"""Sparse autoencoders: one file per architecture, training, and loaders.

========================  =================================================
``relu.ReluSAE``          ``f = relu(pre)``; trained with an L1 penalty
``topk.TopKSAE``          keep each row's ``k`` largest pre-activations
``batchtopk.BatchTopKSAE``  batch top-k in training; one global threshold after
``jumprelu.JumpReLUSAE``  per-latent thresholds (loaded, not trained here)
``train``                 :func:`train_sae`, :func:`evaluate_sae`
``loaders``               :func:`load_sae` (either layout), :func:`load_sae_lens`
``dictionary_learning``   :func:`load_dictionary_learning` (``ae.pt`` + ``config.json``)
========================  =================================================

:data:`ARCHITECTURES` is the registry: each architecture's module registers its class
under the ``architecture`` name a ``cfg.json`` uses (:func:`~interp.directions.sae.base.register`);
``make_sae("topk", d_in=64, d_sae=256, k=8)`` builds one from keyword arguments.
"""

from __future__ import annotations

from interp.directions.sae.base import ARCHITECTURES, SAE, SAEConfig
from interp.directions.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from interp.directions.sae.dictionary_learning import load_dictionary_learning
from interp.directions.sae.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from interp.directions.sae.loaders import load_sae, load_sae_lens
from interp.directions.sae.relu import ReluSAE, ReluSAEConfig
from interp.directions.sae.topk import TopKSAE, TopKSAEConfig
from interp.directions.sae.train import SAETrainConfig, evaluate_sae, train_sae
from interp.errors import InterpError

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "SAEConfig",
    "ReluSAE",
    "ReluSAEConfig",
    "TopKSAE",
    "TopKSAEConfig",
    "BatchTopKSAE",
    "BatchTopKSAEConfig",
    "JumpReLUSAE",
    "JumpReLUSAEConfig",
    "SAETrainConfig",
    "make_sae",
    "train_sae",
    "evaluate_sae",
    "load_sae",
    "load_sae_lens",
    "load_dictionary_learning",
]


def make_sae(architecture: str, *, seed: int | None = 0, **config) -> SAE:
    """An untrained SAE of ``architecture`` with config fields ``config``."""
    if architecture not in ARCHITECTURES:
        raise InterpError(
            f"unknown SAE architecture {architecture!r} (known: {sorted(ARCHITECTURES)})"
        )
    cls = ARCHITECTURES[architecture]
    return cls(cls.config_cls(**config), seed=seed)
