"""PEFT adapters: check an adapter directory against a model, put it on the model (on one
device or dispatched by accelerate), and hash an adapter held in memory."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors import safe_open

from interp.compat import peft_wrap
from interp.errors import AdapterMismatchError, UnsafeWeightsError
from interp.fingerprint import sha256_tensors

__all__ = ["is_peft", "check_adapter", "attach_adapter", "adapter_state_hash"]


def is_peft(hf: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(hf, PeftModel)


def adapter_state_hash(peft_model) -> str | None:
    """Hash of an in-memory adapter's weights and config (``None`` if they are offloaded)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model)
    if any(t.device.type == "meta" for t in state.values()):
        warnings.warn("the adapter's weights are offloaded; its hash is not computed", stacklevel=3)
        return None
    configs = {k: _plain(c.to_dict()) for k, c in peft_model.peft_config.items()}
    return sha256_tensors(state, extra=configs)


def _plain(obj):
    """Sets (peft keeps ``target_modules`` as one) sorted, so that the hash is stable."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(map(str, obj))
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def check_adapter(adapter: Path, base_hf: torch.nn.Module) -> None:
    cfg = adapter / "adapter_config.json"
    weights = adapter / "adapter_model.safetensors"
    if not cfg.is_file():
        raise AdapterMismatchError(
            f"{adapter} is not a PEFT adapter directory (no adapter_config.json)"
        )
    if not weights.is_file():
        if any(adapter.glob("adapter_model.*")):
            raise UnsafeWeightsError(
                f"{adapter} has no adapter_model.safetensors; interp never unpickles"
            )
        raise AdapterMismatchError(f"{adapter} has no adapter_model.safetensors")
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            if ".lora_A." not in key or not key.endswith(".weight"):
                continue
            path = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            try:
                module = base_hf.get_submodule(path)
            except AttributeError:
                raise AdapterMismatchError(
                    f"adapter {adapter} targets module {path!r}, which this model does not have; "
                    f"it was trained for {json.loads(cfg.read_text()).get('base_model_name_or_path')!r}"
                ) from None
            in_features = getattr(module, "in_features", None)
            shape = f.get_slice(key).get_shape()
            if in_features is not None and shape[1] != in_features:
                raise AdapterMismatchError(
                    f"adapter {adapter} does not fit this model: {path} expects inputs of size "
                    f"{in_features} but the adapter's lora_A has {shape[1]}"
                )


def attach_adapter(
    hf: torch.nn.Module, adapter: str | Path, offload_folder: str | Path | None = None
) -> torch.nn.Module:
    """``hf`` with the PEFT ``adapter`` on it, on the devices ``hf`` is on (dispatched or not)."""
    from peft import PeftModel

    from interp.dispatch import is_dispatched, peft_on_dispatched

    if is_dispatched(hf):
        return peft_on_dispatched(hf, adapter, offload_folder)
    device_map = getattr(hf, "hf_device_map", None)
    if device_map is not None:  # one device: peft would re-plan it with device_map="auto"
        del hf.hf_device_map
    try:
        with peft_wrap():
            return PeftModel.from_pretrained(hf, str(adapter))
    finally:
        if device_map is not None:
            hf.hf_device_map = device_map
