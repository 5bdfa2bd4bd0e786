"""Load published SAEs: the sae-lens layout and the dictionary_learning layout.

* sae-lens: a directory with ``cfg.json`` and ``sae_weights.safetensors`` (``W_enc``,
  ``b_enc``, ``W_dec``, ``b_dec``, ``threshold`` for JumpReLU). Both the v6 schema
  (``architecture``, ``k``, ``metadata.hook_name``) and the older flat one
  (``activation_fn_str``, ``activation_fn_kwargs.k``, ``hook_name``) are read.
* dictionary_learning (Marks et al.; many Llama / Qwen releases): ``ae.pt`` (a state
  dict) and ``config.json`` (``trainer.dict_class``, ``trainer.k``, ``trainer.layer``).
  ``ae.pt`` is read with ``torch.load(weights_only=True)``, which refuses anything but
  tensors and plain containers, so loading never runs pickled code. The activation
  follows ``dict_class``: ``AutoEncoder`` -> ReLU, ``AutoEncoderTopK`` -> TopK,
  ``BatchTopKSAE`` -> the global-threshold rule, ``JumpReluAutoEncoder`` -> JumpReLU
  (its encode-time decoder-norm scaling is folded into the weights).

Any loaded SAE saves back in the sae-lens layout with :meth:`SAE.save` (the converter).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from interp.errors import InterpError, UnsafeWeightsError
from interp.sae.base import CFG_FILENAME, SAE, WEIGHTS_FILENAME
from interp.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from interp.sae.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from interp.sae.relu import ReluSAE, ReluSAEConfig
from interp.sae.topk import TopKSAE, TopKSAEConfig

__all__ = ["ARCHITECTURES", "load_sae", "load_sae_lens", "load_dictionary_learning"]

# architecture name (as written in cfg.json) -> module class; "relu" is interp's alias
ARCHITECTURES: dict[str, type[SAE]] = {
    "standard": ReluSAE,
    "relu": ReluSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
}


def _finish(sae: SAE, dtype: torch.dtype | None, device) -> SAE:
    if dtype is not None or device is not None:
        sae = sae.to(device=device, dtype=dtype)
    return sae.eval()


def load_sae(path: str | Path, *, dtype: torch.dtype | None = None, device=None) -> SAE:
    """Load an SAE directory in either layout (detected from the file names)."""
    path = Path(path)
    if (path / CFG_FILENAME).is_file() and (path / WEIGHTS_FILENAME).is_file():
        return load_sae_lens(path, dtype=dtype, device=device)
    if (path / "ae.pt").is_file() or (path / "config.json").is_file():
        return load_dictionary_learning(path, dtype=dtype, device=device)
    raise InterpError(
        f"{path} is neither a sae-lens directory ({CFG_FILENAME} + {WEIGHTS_FILENAME}) nor a "
        "dictionary_learning one (ae.pt + config.json)"
    )


def load_sae_lens(path: str | Path, *, dtype: torch.dtype | None = None, device=None) -> SAE:
    """Load ``cfg.json`` + ``sae_weights.safetensors`` (sae-lens v5 or v6 schema)."""
    path = Path(path)
    cfg = json.loads((path / CFG_FILENAME).read_text())
    meta = cfg.get("metadata") or {}
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
        "d_in": int(cfg["d_in"]),
        "d_sae": int(cfg["d_sae"]),
        "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True)),
        "site": meta.get("hook_name", cfg.get("hook_name", cfg.get("site"))),
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
    tensors = load_file(str(path / WEIGHTS_FILENAME))
    if "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors["log_threshold"].exp()
    sae = cls(config).load_tensors(tensors)
    return _finish(sae, dtype, device)


def _safe_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the restricted unpickler refuses code objects
        raise UnsafeWeightsError(
            f"{path} could not be read as plain tensors (torch.load weights_only=True): {e}"
        ) from None
    if not isinstance(state, dict):
        raise InterpError(f"{path} does not hold a state dict")
    return {k.removeprefix("_orig_mod."): v for k, v in state.items()}


def load_dictionary_learning(
    path: str | Path, *, dtype: torch.dtype | None = None, device=None
) -> SAE:
    """Load a dictionary_learning ``ae.pt`` + ``config.json`` directory."""
    path = Path(path)
    cfg_path = path / "config.json"
    trainer = json.loads(cfg_path.read_text()).get("trainer", {}) if cfg_path.is_file() else {}
    state = _safe_state_dict(path / "ae.pt")
    dict_class = trainer.get("dict_class") or _guess_class(state)
    layer = trainer.get("layer")
    sub = str(trainer.get("submodule_name") or "")
    kind = next((k for k in ("resid_post", "mlp_out", "attn_out", "resid_pre") if k in sub), None)
    if kind is None and sub == "" and layer is not None:
        kind = "resid_post"  # the dictionary_learning default: the block output
    site = f"blocks.{layer}.hook_{kind}" if layer is not None and kind else None
    common = {"site": site, "model_name": trainer.get("lm_name")}

    def k_of() -> int:
        if "k" in state:
            return int(state["k"])
        if "k" in trainer:
            return int(trainer["k"])
        raise InterpError(f"{path}: {dict_class} without k in ae.pt or config.json")

    if dict_class == "AutoEncoder":
        d_sae, d_in = state["encoder.weight"].shape
        sae = ReluSAE(ReluSAEConfig(d_in, d_sae, apply_b_dec_to_input=True, **common))
        tensors = _linear(state, b_dec="bias")
    elif dict_class == "AutoEncoderNew":
        d_sae, d_in = state["encoder.weight"].shape
        sae = ReluSAE(ReluSAEConfig(d_in, d_sae, apply_b_dec_to_input=False, **common))
        tensors = _linear(state, b_dec="decoder.bias")
    elif dict_class in ("AutoEncoderTopK", "TopKSAE"):
        d_sae, d_in = state["encoder.weight"].shape
        sae = TopKSAE(TopKSAEConfig(d_in, d_sae, apply_b_dec_to_input=True, k=k_of(), **common))
        tensors = _linear(state, b_dec="b_dec")
    elif dict_class in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        d_sae, d_in = state["encoder.weight"].shape
        cfg = BatchTopKSAEConfig(d_in, d_sae, apply_b_dec_to_input=True, k=k_of(), **common)
        sae = BatchTopKSAE(cfg)
        tensors = {**_linear(state, b_dec="b_dec"), "threshold": state["threshold"].reshape(1)}
    elif dict_class in ("JumpReluAutoEncoder", "JumpReLUSAE") and "W_enc" in state:
        d_in, d_sae = state["W_enc"].shape
        # dictionary_learning scales f by |W_dec row| in encode and divides in decode;
        # folding that scale into W_enc, b_enc, threshold and W_dec gives the same f.
        norm = state["W_dec"].norm(dim=1)  # [d_sae]
        tensors = {
            "W_enc": state["W_enc"] * norm,
            "b_enc": state["b_enc"] * norm,
            "W_dec": state["W_dec"] / norm[:, None],
            "b_dec": state["b_dec"],
            "threshold": state["threshold"] * norm,
        }
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in, d_sae, apply_b_dec_to_input=False, **common))
    else:
        raise InterpError(f"{path}: dictionary_learning class {dict_class!r} is not supported")
    extra = sorted(set(state) - _KNOWN_KEYS)
    if extra:  # e.g. input normalization or whitening buffers: ignoring them would be wrong
        raise InterpError(f"{path}: ae.pt holds {extra}, which interp does not interpret")
    return _finish(sae.load_tensors(tensors), dtype, device)


_KNOWN_KEYS = {
    "encoder.weight",
    "encoder.bias",
    "decoder.weight",
    "decoder.bias",
    "bias",
    "b_dec",
    "k",
    "threshold",
    "W_enc",
    "b_enc",
    "W_dec",
}


def _linear(state: dict[str, torch.Tensor], *, b_dec: str) -> dict[str, torch.Tensor]:
    """nn.Linear layout (``encoder.weight`` ``[d_sae, d_in]``) -> sae-lens layout."""
    return {
        "W_enc": state["encoder.weight"].T,
        "b_enc": state["encoder.bias"],
        "W_dec": state["decoder.weight"].T,
        "b_dec": state[b_dec],
    }


def _guess_class(state: dict[str, torch.Tensor]) -> str:
    if "W_enc" in state:
        return "JumpReluAutoEncoder"
    if "threshold" in state and "k" in state:
        return "BatchTopKSAE"
    if "k" in state:
        return "AutoEncoderTopK"
    if "decoder.bias" in state:
        return "AutoEncoderNew"
    return "AutoEncoder"
