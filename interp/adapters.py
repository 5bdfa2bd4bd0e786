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

from interp.compat import peft_wrap
from interp.dispatch import is_dispatched, peft_on_dispatched
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


def _features(module: torch.nn.Module) -> tuple[int, int] | None:
    """``(inputs, outputs)`` of a layer LoRA can wrap: Linear, GPT-2's Conv1D, Embedding."""
    if isinstance(module, torch.nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        return tuple(module.weight.shape)  # [in, out]
    return None


# LoRA part -> (axis of the saved tensor, feature of the module it must equal, its name)
_LORA_PARTS = {
    "lora_A": (1, 0, "inputs"),  # [r, in]
    "lora_B": (0, 1, "outputs"),  # [out, r]
    "lora_embedding_A": (1, 0, "vocabulary entries"),  # [r, num_embeddings]
    "lora_embedding_B": (0, 1, "embedding dimensions"),  # [embedding_dim, r]
}


def _lora_part(key: str) -> tuple[str, str] | None:
    """``(module path, part)`` of a saved LoRA tensor key, ``None`` for other tensors."""
    for part in _LORA_PARTS:
        marker = f".{part}"
        if marker + "." in key or key.endswith(marker):
            return key.split(marker)[0].removeprefix("base_model.model."), part
    return None


def check_adapter(adapter: Path, base_hf: torch.nn.Module) -> None:
    """An adapter directory that does not fit ``base_hf`` is an :class:`AdapterMismatchError`:
    a target module the model lacks, a LoRA matrix (``lora_A`` / ``lora_B``, embedding
    ``lora_embedding_A`` / ``_B``) or a saved full tensor (``modules_to_save``, resized
    embeddings) of another shape."""
    cfg = adapter / "adapter_config.json"
    weights = adapter / "adapter_model.safetensors"
    if not adapter.is_dir():
        raise AdapterMismatchError(f"adapter {adapter}: no such directory")
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
    trained_for = json.loads(cfg.read_text()).get("base_model_name_or_path")
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            shape = tuple(f.get_slice(key).get_shape())
            part = _lora_part(key)
            if part is None:
                _check_full_tensor(adapter, key, shape, base_hf)
                continue
            path, name = part
            axis, feature, what = _LORA_PARTS[name]
            try:
                module = base_hf.get_submodule(path)
            except AttributeError:
                raise AdapterMismatchError(
                    f"adapter {adapter} targets module {path!r}, which this model does not have; "
                    f"it was trained for {trained_for!r}"
                ) from None
            features = _features(module)
            if features is not None and len(shape) == 2 and shape[axis] != features[feature]:
                raise AdapterMismatchError(
                    f"adapter {adapter} does not fit this model: {path} has "
                    f"{features[feature]} {what} but the adapter's {name} has {shape[axis]} "
                    f"(shape {shape}); it was trained for {trained_for!r}"
                )


def _check_full_tensor(adapter: Path, key: str, shape: tuple, base_hf: torch.nn.Module) -> None:
    """A whole tensor an adapter saves (``modules_to_save``, an embedding's base layer) must
    have the shape of the model's own."""
    name = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
    name = name.replace(".modules_to_save.default.", ".")
    try:
        own = base_hf.get_parameter(name)
    except AttributeError:
        return  # not a parameter of the model (e.g. DoRA magnitudes): peft checks those
    if tuple(own.shape) != shape:
        raise AdapterMismatchError(
            f"adapter {adapter} does not fit this model: it saves {name} with shape {shape}, "
            f"the model's has {tuple(own.shape)} (a different vocabulary or size?)"
        )


def attach_adapter(
    hf: torch.nn.Module, adapter: str | Path, offload_folder: str | Path | None = None
) -> torch.nn.Module:
    """``hf`` with the PEFT ``adapter`` on it, on the devices ``hf`` is on (dispatched or not)."""
    from peft import PeftModel

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
