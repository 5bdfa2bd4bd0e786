"""A PEFT adapter on a model that accelerate dispatched (``device_map``, offloaded weights).

``PeftModel.from_pretrained`` on a dispatched model removes accelerate's hooks and, when a
module is offloaded, either loses the adapter's weights in offloaded modules (they are
created on ``meta``) or re-plans the placement with ``device_map="auto"``. Here the hooks
come off, the adapter is injected with its weights loaded for real (on the CPU), and the
:class:`~peft.PeftModel` is dispatched again with the *same* placement: every offloaded
weight is read from where the first dispatch kept it (the CPU state dict or the
safetensors / offload files on disk), the adapter's own weights in offloaded modules from
memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from interp.compat import peft_wrap
from interp.errors import InterpError

__all__ = ["is_dispatched", "peft_on_dispatched"]

_PREFIX = "base_model.model."


def is_dispatched(hf: torch.nn.Module) -> bool:
    """Whether accelerate hooks place ``hf``'s modules (a multi-device or offloaded map)."""
    return getattr(hf, "hf_device_map", None) is not None and any(
        hasattr(m, "_hf_hook") for m in hf.modules()
    )


def _weights_map(hf: torch.nn.Module):
    """The one :class:`OffloadedWeightsLoader` the dispatch hooks share (or ``None``)."""
    for m in hf.modules():
        wm = getattr(getattr(m, "_hf_hook", None), "weights_map", None)
        if wm is not None:
            return getattr(wm, "dataset", wm)
    return None


def _main_device(hf: torch.nn.Module) -> torch.device:
    hook = getattr(hf, "_hf_hook", None)
    dev = getattr(hook, "execution_device", None)
    return torch.device(dev) if dev is not None else torch.device("cpu")


def _offloaded(name: str, modules: list[str]) -> bool:
    return any(name == m or name.startswith(m + ".") or m == "" for m in modules)


def _base_name(name: str) -> str:
    """A PeftModel tensor name -> the base model's name of the same tensor."""
    return name.removeprefix(_PREFIX).replace(".base_layer.", ".").replace(".original_module.", ".")


def _saved_name(name: str, adapters: list[str]) -> str | None:
    """An adapter tensor's name in ``adapter_model.safetensors`` (``None``: not an adapter's)."""
    for a in adapters:
        if f".{a}." in name:
            return name.replace(f".{a}.", ".", 1)
        if name.endswith(f".{a}"):
            return name.removesuffix(f".{a}")
    return None


def _link_dat(folder: str, src: str, dst: str) -> None:
    """Offload files are named by tensor: give the renamed tensor a name of its own."""
    a, b = os.path.join(folder, f"{src}.dat"), os.path.join(folder, f"{dst}.dat")
    if not os.path.exists(b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copyfile(a, b)


def _adapter_layer_classes(peft) -> list[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sorted({type(m).__name__ for m in peft.modules() if isinstance(m, BaseTunerLayer)})


def _adapter_tensors(adapter: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(adapter) / "adapter_model.safetensors"), device="cpu")


def _split_weights(peft, loader, offloaded: list[str], saved: dict) -> tuple[dict, dict]:
    """``(state_dict, index)`` for every parameter of the offloaded modules, by PEFT name:
    base weights from where the first dispatch kept them, adapter weights from ``saved``
    (peft leaves those on ``meta`` in an offloaded module; the file names them without the
    adapter's name)."""
    old_state = loader.state_dict if loader is not None else {}
    old_index = loader.index if loader is not None else {}
    state, index = {}, {}
    for name, p in peft.named_parameters(remove_duplicate=False):  # tied weights too
        if not _offloaded(name, offloaded):
            continue
        if p.device.type != "meta":
            state[name] = p.detach()
            continue
        key = _saved_name(name, list(peft.peft_config))
        base = _base_name(name)
        if key is not None:
            if key not in saved:
                raise InterpError(f"adapter weight {key} is not in the adapter file")
            state[name] = saved[key].to(p.dtype)
        elif base in old_state:
            state[name] = old_state[base]
        elif base in old_index:
            entry = dict(old_index[base])
            if entry.get("safetensors_file") is None:  # a .dat file named after the tensor
                _link_dat(loader.save_folder, base, name)
            index[name] = entry
        else:
            raise InterpError(f"offloaded weight {base} has no stored value to dispatch from")
    return state, index


def peft_on_dispatched(
    hf: torch.nn.Module, adapter: str | Path, offload_folder: str | Path | None
) -> torch.nn.Module:
    """``hf`` (dispatched by ``from_pretrained(device_map=...)``) with ``adapter`` on it, as a
    :class:`~peft.PeftModel` dispatched on the same devices."""
    from accelerate import dispatch_model
    from accelerate.hooks import remove_hook_from_submodules
    from peft import PeftModel

    device_map = dict(hf.hf_device_map)
    main = _main_device(hf)
    loader = _weights_map(hf)
    offload_types = ("disk",) if main.type in ("cpu", "mps") else ("disk", "cpu")
    offloaded = [_PREFIX + k if k else "" for k, v in device_map.items() if v in offload_types]
    remove_hook_from_submodules(hf)
    del hf.hf_device_map  # else peft re-plans the placement with device_map="auto"
    try:
        with peft_wrap():
            peft = PeftModel.from_pretrained(
                hf, str(adapter), low_cpu_mem_usage=True, torch_device="cpu"
            )
    finally:
        hf.hf_device_map = device_map
    state, index = _split_weights(peft, loader, offloaded, _adapter_tensors(adapter))
    folder = offload_folder if offload_folder is not None else getattr(loader, "save_folder", None)
    dispatch_model(
        peft,
        device_map={(_PREFIX + k if k else ""): v for k, v in device_map.items()},
        main_device=main.type if main.index is None else f"{main.type}:{main.index}",
        state_dict=state,
        offload_dir=None if folder is None else str(folder),
        offload_index=index if any(v == "disk" for v in device_map.values()) else None,
        skip_keys=getattr(hf, "_skip_keys_device_placement", None),
        # an adapter layer reads parts of its weights without calling the module that holds
        # them (lora_embedding_A is a ParameterDict): load them all when the layer runs
        preload_module_classes=_adapter_layer_classes(peft),
    )
    return peft.eval()
