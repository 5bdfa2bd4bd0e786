"""Devices, dtypes and device maps: read what a user passes, find where a model takes input.

- :func:`resolve_device` / :func:`resolve_dtype`: a device or dtype given as a string
  (``"cuda:1"``, ``"bf16"``) or ``None`` (the default: CUDA when there is one; bfloat16 on
  an accelerator, float32 on the CPU), checked, with one clear error when it is wrong;
- :func:`check_device_map`: an accelerate ``device_map`` (a strategy such as ``"auto"``, or
  module name -> device / ``"disk"``) and ``max_memory``, checked before loading;
- :func:`input_device`: the device a (possibly dispatched) model's embedding runs on, which
  is where its inputs must go. Under accelerate dispatch the embedding's weights may live on
  ``meta`` (offloaded) while it runs elsewhere, so the answer comes from accelerate's hook.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from interp.errors import InterpError

__all__ = [
    "DEVICE_MAP_STRATEGIES",
    "default_device",
    "resolve_device",
    "resolve_dtype",
    "dtype_name",
    "check_device_map",
    "device_map_type",
    "input_device",
    "placement",
    "check_map_fits",
]

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _parse_device(device: str | int | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InterpError(
            f"device {device!r} is not a device; use cpu, cuda, cuda:N or mps"
        ) from None


def resolve_device(device: str | int | torch.device | None, *, check: bool = True) -> torch.device:
    """``device`` as a :class:`torch.device` (``None``: CUDA when there is one, else CPU).

    With ``check`` a device this machine does not have is an :class:`InterpError`.
    """
    if device is None:
        return default_device()
    dev = _parse_device(device)
    if not check:
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InterpError(f"device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InterpError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InterpError(f"device {device!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps", "xpu", "npu", "meta"):
        raise InterpError(f"device {device!r}: interp runs on cpu, cuda or mps")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device_type: str = "cpu") -> torch.dtype:
    """``dtype`` as a floating :class:`torch.dtype`; ``None`` gives float32 on the CPU and
    bfloat16 on an accelerator. Strings: float32/fp32, bfloat16/bf16, float16/fp16/half."""
    if dtype is None:
        return torch.float32 if device_type == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise InterpError(f"dtype {dtype} is not a floating-point dtype")
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key in _DTYPES:
            return _DTYPES[key]
    raise InterpError(
        f"dtype {dtype!r} is not one of {', '.join(sorted(_DTYPES))} (or a torch.dtype)"
    )


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def _check_max_memory(max_memory: Mapping) -> dict:
    from accelerate.utils import convert_file_size_to_int

    if not isinstance(max_memory, Mapping) or not max_memory:
        raise InterpError(
            f"max_memory must map devices to sizes, e.g. {{0: '20GiB', 'cpu': '60GiB'}}, not {max_memory!r}"
        )
    out = {}
    for dev, size in max_memory.items():
        if not (isinstance(dev, int) or dev in ("cpu", "disk", "mps")):
            _parse_device(dev)  # "cuda:0" is accepted by accelerate too
        try:
            convert_file_size_to_int(size)
        except (ValueError, TypeError):
            raise InterpError(
                f"max_memory[{dev!r}] = {size!r} is not a size (bytes, or e.g. '20GiB')"
            ) from None
        out[dev] = size
    return out


def check_device_map(
    device_map,
    *,
    offload_folder=None,
    max_memory: Mapping | None = None,
):
    """``device_map`` checked for accelerate: a strategy name, one device, or a mapping of
    module names to devices / ``"disk"`` (which needs ``offload_folder``). Returns it with
    ``torch.device`` values turned into strings."""
    if max_memory is not None:
        if device_map is None:
            raise InterpError("max_memory needs a device_map (e.g. device_map='auto')")
        _check_max_memory(max_memory)
    if offload_folder is not None and device_map is None:
        raise InterpError("offload_folder needs a device_map with 'disk' (or 'auto') entries")
    if device_map is None:
        return None
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        return device_map
    if isinstance(device_map, (str, int, torch.device)):
        return str(resolve_device(device_map))
    if not isinstance(device_map, Mapping) or not device_map:
        raise InterpError(
            f"device_map must be one of {DEVICE_MAP_STRATEGIES}, a device, or a non-empty "
            f"mapping of module names to devices, not {device_map!r}"
        )
    out = {}
    for name, dev in device_map.items():
        if not isinstance(name, str):
            raise InterpError(f"device_map keys are module names, not {name!r}")
        if dev == "disk":
            out[name] = dev
            continue
        try:
            resolved = resolve_device(dev)
        except InterpError as e:
            raise InterpError(f"device_map[{name!r}]: {e}") from None
        out[name] = dev if isinstance(dev, int) else str(resolved)
    if "disk" in out.values() and offload_folder is None:
        disk = [k for k, v in out.items() if v == "disk"]
        raise InterpError(
            f"device_map puts {', '.join(disk)} on 'disk'; pass offload_folder=... for them"
        )
    return out


def device_map_type(device_map) -> str:
    """``"cuda"`` (or ``"mps"``) when a checked device map runs anything on an accelerator,
    else ``"cpu"``: the device type the default dtype is chosen for."""
    if isinstance(device_map, str) and device_map in DEVICE_MAP_STRATEGIES:
        return default_device().type
    values = device_map.values() if isinstance(device_map, Mapping) else [device_map]
    for v in values:
        if isinstance(v, int):
            return "cuda"
        if v != "disk" and torch.device(v).type != "cpu":
            return torch.device(v).type
    return "cpu"


def _hook_device(module: torch.nn.Module) -> torch.device | None:
    """The execution device of accelerate's hook on ``module`` (``None`` if it has none)."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return None
    for h in getattr(hook, "hooks", [hook]):  # a SequentialHook holds several
        dev = getattr(h, "execution_device", None)
        if dev is not None:
            return torch.device(dev)  # an int means a CUDA index
    return None


def input_device(hf: torch.nn.Module) -> torch.device:
    """The device ``hf``'s input embedding runs on (where ``input_ids`` must go).

    Accelerate's hook is asked first (on the embedding, inside it for a PEFT wrapper, then
    on the modules above it): an offloaded embedding holds ``meta`` weights but runs on
    its hook's execution device. Without hooks the embedding's weights tell.
    """
    embed = hf.get_input_embeddings()
    for module in embed.modules():
        dev = _hook_device(module)
        if dev is not None:
            return dev
    for p in embed.parameters():
        if p.device.type != "meta":
            return p.device
    names = {id(m): n for n, m in hf.named_modules()}
    path = names.get(id(embed), "")
    parts = path.split(".")
    for k in range(len(parts) - 1, -1, -1):  # the modules above the embedding, nearest first
        dev = _hook_device(hf.get_submodule(".".join(parts[:k])))
        if dev is not None:
            return dev
    raise InterpError(
        f"cannot tell where the input embedding ({path or type(embed).__name__}) runs: its "
        "weights are on 'meta' and no accelerate hook names an execution device"
    )


def placement(dtype, device, device_map, max_memory, offload_folder) -> dict:
    """``from_pretrained`` arguments for a placement, checked: ``dtype`` and either
    ``device`` (one device, to move the model to) or ``device_map`` (with ``max_memory``
    and ``offload_folder`` when given)."""
    if device is not None and device_map is not None:
        raise InterpError("pass device= (one device) or device_map= (accelerate), not both")
    device_map = check_device_map(device_map, offload_folder=offload_folder, max_memory=max_memory)
    if device_map is None:
        dev = resolve_device(device)
        return {"dtype": resolve_dtype(dtype, dev.type), "device": dev}
    kwargs = {"dtype": resolve_dtype(dtype, device_map_type(device_map)), "device_map": device_map}
    if max_memory is not None:
        kwargs["max_memory"] = dict(max_memory)
    if offload_folder is not None:
        kwargs["offload_folder"] = str(offload_folder)
    return kwargs


def _entry(name: str, device_map: Mapping) -> str | None:
    """The device_map key that places tensor ``name`` (the longest matching prefix)."""
    best = None
    for key in device_map:
        if key == "" or name == key or name.startswith(key + "."):
            if best is None or len(key) > len(best):
                best = key
    return best


def check_map_fits(name_or_path, device_map: Mapping, *, trust_remote_code: bool = False) -> None:
    """A module -> device mapping checked against the model's structure (built on ``meta``,
    no weights read): every key names a module, every weight is placed, tied weights (an
    input embedding shared with the unembedding) are placed together."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    with init_empty_weights():
        meta = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    modules = {n for n, _ in meta.named_modules()}
    unknown = [k for k in device_map if k not in modules]
    if unknown:
        raise InterpError(
            f"device_map names {', '.join(unknown)}, which {name_or_path} does not have "
            f"(its top modules: {', '.join(n for n, _ in meta.named_children())})"
        )
    names = [n for n, _ in meta.named_parameters()]
    missing = [n for n in names if _entry(n, device_map) is None]
    if missing:
        raise InterpError(
            f"device_map places no device for {len(missing)} weight(s) of {name_or_path}, "
            f"e.g. {', '.join(missing[:3])}"
        )
    tied = getattr(meta, "get_expanded_tied_weights_keys", dict)()
    for target, source in tied.items():
        a, b = device_map[_entry(target, device_map)], device_map[_entry(source, device_map)]
        if a != b:
            raise InterpError(
                f"device_map puts the tied weights {source} ({b}) and {target} ({a}) apart; "
                "place them on one device"
            )
