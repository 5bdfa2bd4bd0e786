"""Load published SAEs: the sae-lens layout and the dictionary_learning layout.

* sae-lens: a directory with ``cfg.json`` and ``sae_weights.safetensors`` (``W_enc``,
  ``b_enc``, ``W_dec``, ``b_dec``, ``threshold`` for JumpReLU). Both the v6 schema
  (``architecture``, ``k``, ``metadata.hook_name``) and the older flat one
  (``activation_fn_str``, ``activation_fn_kwargs.k``, ``hook_name``) are read.
* dictionary_learning (Marks et al.; many Llama / Qwen releases): ``ae.pt`` and
  ``config.json``, read by :mod:`interp.directions.sae.dictionary_learning`.

Errors: a missing or truncated file, a corrupted safetensors file, a ``cfg.json`` that is
not JSON or lacks ``d_in`` / ``d_sae``, tensors of the wrong shape, and pickled code in
``ae.pt`` are one :class:`~interp.errors.InterpError` line each.

Any loaded SAE saves back in the sae-lens layout with :meth:`SAE.save` (the converter). A
hook name that is not an interp site (``blocks.3.attn.hook_z``) loads as ``site=None``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.directions.sae.base import (
    ARCHITECTURES,
    CFG_FILENAME,
    SAE,
    WEIGHTS_FILENAME,
    finish_load,
    load_checked,
)
from interp.directions.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from interp.directions.sae.dictionary_learning import load_dictionary_learning
from interp.directions.sae.topk import TopKSAE, TopKSAEConfig
from interp.errors import InterpError, SiteError
from interp.integrity import read_json, read_safetensors
from interp.sites import Site

__all__ = [
    "load_sae",
    "load_sae_lens",
]


def load_sae(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device=None,
    jumprelu_encode: str = "scaled",
) -> SAE:
    """Load an SAE directory in either layout (detected from the file names).

    ``jumprelu_encode`` applies to dictionary_learning JumpReLU SAEs only (see the module
    docstring; default ``"scaled"``, the library's current code).
    """
    path = Path(path)
    if not path.is_dir():
        raise InterpError(f"SAE {path}: no such directory")
    if (path / CFG_FILENAME).is_file() or (path / WEIGHTS_FILENAME).is_file():
        return load_sae_lens(path, dtype=dtype, device=device)
    if (path / "ae.pt").is_file() or (path / "config.json").is_file():
        return load_dictionary_learning(
            path, dtype=dtype, device=device, jumprelu_encode=jumprelu_encode
        )
    raise InterpError(
        f"{path} is neither a sae-lens directory ({CFG_FILENAME} + {WEIGHTS_FILENAME}) nor a "
        "dictionary_learning one (ae.pt + config.json)"
    )


def _size(cfg: dict, key: str, where: Path) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InterpError(f"{where}: {key!r} must be a positive integer (got {value!r})")
    return value


def load_sae_lens(path: str | Path, *, dtype: torch.dtype | None = None, device=None) -> SAE:
    """Load ``cfg.json`` + ``sae_weights.safetensors`` (sae-lens v5 or v6 schema)."""
    path = Path(path)
    cfg = read_json(path / CFG_FILENAME, "SAE config")
    if not isinstance(cfg, dict):
        raise InterpError(f"{path / CFG_FILENAME}: an SAE config is a JSON object")
    meta = cfg.get("metadata") or {}
    if not isinstance(meta, dict):
        raise InterpError(f"{path / CFG_FILENAME}: 'metadata' must be an object")
    arch = cfg.get("architecture", "standard")
    act_fn = cfg.get("activation_fn_str", cfg.get("activation_fn"))
    if arch == "standard" and act_fn == "topk":  # v5: topk was an activation of "standard"
        arch = "topk"
    if arch not in ARCHITECTURES:
        raise InterpError(
            f"sae-lens architecture {arch!r} is not supported (known: {sorted(ARCHITECTURES)})"
        )
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise InterpError(
            f"{path}: normalize_activations={norm!r} needs a dataset-dependent scale that the "
            "file does not hold; fold it into the weights first"
        )
    if cfg.get("finetuning_scaling_factor"):
        raise InterpError(f"{path}: finetuning_scaling_factor is not supported")
    common = {
        "d_in": _size(cfg, "d_in", path / CFG_FILENAME),
        "d_sae": _size(cfg, "d_sae", path / CFG_FILENAME),
        "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True)),
        "site": _interp_site(meta.get("hook_name", cfg.get("hook_name", cfg.get("site")))),
        "model_name": meta.get("model_name", cfg.get("model_name")),
    }
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    cls = ARCHITECTURES[arch]
    if cls is TopKSAE:
        if k is None:
            raise InterpError(f"{path}: a topk SAE without k in its config")
        config = TopKSAEConfig(
            **common,
            k=int(k),
            rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)),
        )
    elif cls is BatchTopKSAE:
        config = BatchTopKSAEConfig(**common, k=int(k or 1))
    else:
        config = cls.config_cls(**common)
    tensors = read_safetensors(path / WEIGHTS_FILENAME, "SAE weights")
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors["log_threshold"].exp()
    sae = load_checked(cls(config), tensors, path / WEIGHTS_FILENAME)
    return finish_load(sae, dtype, device)


def _interp_site(hook_name) -> Site | None:
    """``hook_name`` as a site, else ``None`` (see the module docstring)."""
    try:
        return Site.optional(hook_name)
    except SiteError:
        return None
