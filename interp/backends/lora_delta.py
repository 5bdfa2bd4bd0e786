"""A PEFT LoRA adapter as plain low-rank deltas, to apply inside a trace.

A remote model (NDIF) cannot load a local adapter directory, so the adapter is read here
and its effect is added to each target module's output inside the trace:

- a linear module ``W`` (``lora_A [r, in]``, ``lora_B [out, r]``): ``y + s * B A x``;
- an embedding (``lora_embedding_A [r, vocab]``, ``lora_embedding_B [d, r]``):
  ``y + s * B A[:, ids]``,

with ``s = lora_alpha / r`` (``/ sqrt(r)`` for rsLoRA; ``rank_pattern`` and
``alpha_pattern`` honoured). This is exactly what PEFT computes for LoRA at inference;
anything else (``modules_to_save``, DoRA, LoRA biases, other PEFT types) is refused with
an :class:`~interp.errors.UnsupportedAdapterError`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from interp.errors import UnsupportedAdapterError

__all__ = ["LoRADelta", "LoRAModule", "read_lora", "linear_delta", "embedding_delta"]


@dataclass(frozen=True)
class LoRAModule:
    """One adapted module: its dotted path in the base model and its low-rank factors."""

    path: str
    kind: str  # "linear" or "embedding"
    a: Tensor  # linear: [r, in]; embedding: [r, vocab]
    b: Tensor  # [out, r]
    scale: float


@dataclass(frozen=True)
class LoRADelta:
    """Every adapted module of one adapter (see :func:`read_lora`)."""

    source: str
    modules: tuple[LoRAModule, ...]

    def by_path(self) -> dict[str, LoRAModule]:
        return {m.path: m for m in self.modules}


def _pattern_value(pattern: dict, name: str, default):
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def _check(cfg: dict, path: Path) -> None:
    def refuse(why: str) -> UnsupportedAdapterError:
        return UnsupportedAdapterError(
            f"adapter {path} cannot be applied as LoRA deltas inside a trace: {why}; merge it "
            "into the base model (interp.metrics.vllm_engine.merge_adapter) and load that"
        )

    if cfg.get("peft_type", "LORA") != "LORA":
        raise refuse(f"it is a {cfg['peft_type']} adapter")
    if cfg.get("modules_to_save"):
        raise refuse(f"it saves whole modules ({cfg['modules_to_save']})")
    if cfg.get("use_dora"):
        raise refuse("it is DoRA")
    if cfg.get("bias", "none") != "none":
        raise refuse(f"it trains biases ({cfg['bias']})")


def read_lora(path: str | Path) -> LoRADelta:
    """The LoRA factors of the PEFT adapter directory ``path`` (safetensors only)."""
    path = Path(path)
    cfg = json.loads((path / "adapter_config.json").read_text())
    _check(cfg, path)
    tensors = load_file(str(path / "adapter_model.safetensors"))
    r0, alpha0 = cfg["r"], cfg["lora_alpha"]
    modules = []
    for key in sorted(tensors):
        for a_tag, b_tag, kind in (
            (".lora_A.weight", ".lora_B.weight", "linear"),
            (".lora_embedding_A", ".lora_embedding_B", "embedding"),
        ):
            if not key.endswith(a_tag):
                continue
            name = key[: -len(a_tag)].removeprefix("base_model.model.")
            r = _pattern_value(cfg.get("rank_pattern"), name, r0)
            alpha = _pattern_value(cfg.get("alpha_pattern"), name, alpha0)
            scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
            b = tensors[key[: -len(a_tag)] + b_tag]
            modules.append(LoRAModule(name, kind, tensors[key], b, float(scale)))
    known = {k for k in tensors if ".lora_" in k or ".base_layer." in k}
    stray = sorted(set(tensors) - known)
    if stray:  # base_layer copies are the unchanged base weights PEFT saves beside embedding LoRA
        raise UnsupportedAdapterError(f"adapter {path} stores non-LoRA weights ({stray[0]})")
    return LoRADelta(str(path), tuple(modules))


def linear_delta(m: LoRAModule, x: Tensor, like: Tensor) -> Tensor:
    """``s * B A x`` for inputs ``x [..., in]``, in ``like``'s dtype and device."""
    a, b = m.a.to(device=x.device, dtype=x.dtype), m.b.to(device=x.device, dtype=x.dtype)
    return (m.scale * ((x @ a.T) @ b.T)).to(like.dtype)


def embedding_delta(m: LoRAModule, ids: Tensor, like: Tensor) -> Tensor:
    """``s * B A[:, ids]`` for token ids ``ids [b, s]``, in ``like``'s dtype and device."""
    a = m.a.to(device=ids.device, dtype=like.dtype)
    b = m.b.to(device=ids.device, dtype=like.dtype)
    return m.scale * (torch.nn.functional.embedding(ids, a.T) @ b.T)
