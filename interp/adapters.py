"""PEFT adapters: check an adapter directory against a model, put it on the model (on one
device or dispatched by accelerate), put one on an already-loaded model for a while
(:func:`attached`: several finetunes evaluated on one load of the base), and hash an
adapter held in memory."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from interp.dispatch import is_dispatched
from interp.errors import AdapterMismatchError, InterpError, UnsafeWeightsError
from interp.fingerprint import sha256_dir, sha256_tensors

__all__ = ["is_peft", "check_adapter", "attach_adapter", "attached", "adapter_state_hash"]


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
        return PeftModel.from_pretrained(hf, str(adapter))
    finally:
        if device_map is not None:
            hf.hf_device_map = device_map


@contextlib.contextmanager
def attached(model, adapter: str | Path) -> Iterator:
    """``model`` (an :class:`~interp.models.Model` without an adapter, on one device) with
    the PEFT ``adapter`` on it until the block ends; yields the finetuned view (its
    ``as_base()`` runs the same weights without the adapter).

    The adapter's layers are injected into the loaded weights and removed again on exit,
    so one load of a base model serves every finetune in turn (nothing is copied). Inside
    the block use the yielded view: the original handle runs the adapter too.
    """
    if model.has_adapter:
        raise InterpError(f"{model.name} already has an adapter; attach to the base model")
    if is_dispatched(model.hf):
        raise InterpError("attached() needs a model on one device; use load_model(adapter=...)")
    adapter = Path(adapter)
    check_adapter(adapter, model.hf)
    peft_model = attach_adapter(model.hf, adapter).to(model.input_device)
    peft_model.eval()
    try:
        yield dataclasses.replace(
            model,
            hf=peft_model,
            adapter_path=str(adapter),
            adapter_hash=sha256_dir(adapter),
            use_adapter=True,
        )
    finally:
        peft_model.unload()  # the adapter's layers out, the base modules back in place
        model.hf.eval()
