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
  ``BatchTopKSAE`` -> the global-threshold rule, ``JumpReluAutoEncoder`` -> JumpReLU.

**JumpReLU versions.** dictionary_learning changed what ``JumpReluAutoEncoder.encode``
returns: its current code multiplies the latents by the decoder row norms (and
``decode`` divides by them), while the PyPI 0.1.0 release returns them unscaled. The
reconstructions agree; the latents differ by the decoder norms.
``jumprelu_encode="scaled"`` (the **default**, as the library's current code) folds the
scaling into the weights; ``"unscaled"`` reads them as 0.1.0 did. Pick the one the SAE's
latents were reported with.

Errors: a missing or truncated file, a corrupted safetensors file, a ``cfg.json`` that is
not JSON or lacks ``d_in`` / ``d_sae``, tensors of the wrong shape, and pickled code in
``ae.pt`` are one :class:`~interp.errors.InterpError` line each.

Any loaded SAE saves back in the sae-lens layout with :meth:`SAE.save` (the converter). A
hook name that is not an interp site (``blocks.3.attn.hook_z``) loads as ``site=None``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.directions.sae.base import ARCHITECTURES, CFG_FILENAME, SAE, WEIGHTS_FILENAME
from interp.directions.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from interp.directions.sae.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from interp.directions.sae.relu import ReluSAE, ReluSAEConfig
from interp.directions.sae.topk import TopKSAE, TopKSAEConfig
from interp.errors import IntegrityError, InterpError, SiteError, UnsafeWeightsError
from interp.integrity import read_json, read_safetensors
from interp.sites import Site

__all__ = [
    "JUMPRELU_ENCODE",
    "load_sae",
    "load_sae_lens",
    "load_dictionary_learning",
]

JUMPRELU_ENCODE = ("scaled", "unscaled")  # dictionary_learning's current code / PyPI 0.1.0


def _finish(sae: SAE, dtype: torch.dtype | None, device) -> SAE:
    if dtype is not None or device is not None:
        sae = sae.to(device=device, dtype=dtype)
    return sae.eval()


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


def _load_checked(sae: SAE, tensors: dict, where: Path) -> SAE:
    """``sae.load_tensors(tensors)`` with missing tensors and wrong shapes as one line."""
    need = ["W_enc", "b_enc", "W_dec", "b_dec", *sae.extra_state()]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise InterpError(f"{where}: the weights lack {missing} (a {sae.architecture} SAE)")
    try:
        return sae.load_tensors(tensors)
    except ValueError as e:  # a shape that does not fit the config
        raise InterpError(f"{where}: {e} (from d_in={sae.d_in}, d_sae={sae.d_sae})") from None


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
    sae = _load_checked(cls(config), tensors, path / WEIGHTS_FILENAME)
    return _finish(sae, dtype, device)


def _interp_site(hook_name) -> Site | None:
    """``hook_name`` as a site, else ``None`` (see the module docstring)."""
    try:
        return Site.optional(hook_name)
    except SiteError:
        return None


def _refusal(e: Exception) -> str:
    """What torch's restricted unpickler refused, without its advice to turn it off."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    keep = [ln for ln in lines if "weights_only" not in ln and "torch.load" not in ln]
    return keep[0] if keep else type(e).__name__


def _safe_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    if not path.is_file():
        raise InterpError(f"{path}: no such file (a dictionary_learning SAE needs ae.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the restricted unpickler refuses code objects
        raise UnsafeWeightsError(
            f"{path} holds more than plain tensors ({_refusal(e)}); interp never unpickles "
            "code: convert the SAE to safetensors with code you trust"
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError, ValueError) as e:
        raise IntegrityError(
            f"{path}: corrupted or truncated torch file ({_refusal(e)[:200]})"
        ) from None
    if not isinstance(state, dict):
        raise InterpError(f"{path} does not hold a state dict")
    state = {str(k).removeprefix("_orig_mod."): v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, (torch.Tensor, int))]
    if bad:
        raise InterpError(f"{path}: entries {bad} are not tensors")
    return state


def _trainer(path: Path) -> dict:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        return {}
    cfg = read_json(cfg_path, "SAE config")
    trainer = cfg.get("trainer", {}) if isinstance(cfg, dict) else None
    if not isinstance(trainer, dict):
        raise InterpError(f"{cfg_path}: expected an object with a 'trainer' object")
    return trainer


def load_dictionary_learning(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device=None,
    jumprelu_encode: str = "scaled",
) -> SAE:
    """Load a dictionary_learning ``ae.pt`` + ``config.json`` directory.

    ``jumprelu_encode``: for ``JumpReluAutoEncoder`` only: ``"scaled"`` (default, latents
    as the library's current ``encode`` gives them) or ``"unscaled"`` (as PyPI 0.1.0 does;
    see the module docstring).
    """
    if jumprelu_encode not in JUMPRELU_ENCODE:
        raise InterpError(
            f"jumprelu_encode must be one of {JUMPRELU_ENCODE}, not {jumprelu_encode!r}"
        )
    path = Path(path)
    trainer = _trainer(path)
    state = _safe_state_dict(path / "ae.pt")
    try:
        sae, tensors = _dictionary_learning(path, trainer, state, jumprelu_encode)
    except InterpError:
        raise
    except KeyError as e:
        raise InterpError(f"{path}: ae.pt lacks the tensor {e}") from None
    except (ValueError, TypeError, AttributeError) as e:  # e.g. a 1-D encoder.weight
        raise InterpError(
            f"{path}: ae.pt tensors do not fit {trainer.get('dict_class') or 'the guessed class'} ({e})"
        ) from None
    extra = sorted(set(state) - _KNOWN_KEYS)
    if extra:  # e.g. input normalization or whitening buffers: ignoring them would be wrong
        raise InterpError(f"{path}: ae.pt holds {extra}, which interp does not interpret")
    return _finish(_load_checked(sae, tensors, path / "ae.pt"), dtype, device)


def _dictionary_learning(path: Path, trainer: dict, state: dict, jumprelu_encode: str):
    """``(sae, tensors)`` in the sae-lens layout for one dictionary_learning state dict."""
    dict_class = trainer.get("dict_class") or _guess_class(state)
    layer = trainer.get("layer")
    sub = str(trainer.get("submodule_name") or "")
    kind = next((k for k in ("resid_post", "mlp_out", "attn_out", "resid_pre") if k in sub), None)
    if kind is None and sub == "" and layer is not None:
        kind = "resid_post"  # the dictionary_learning default: the block output
    site = Site(layer, kind) if layer is not None and kind else None
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
        tensors = {k: state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
        for name, shape in (("W_dec", (d_sae, d_in)), ("b_enc", (d_sae,)), ("threshold", (d_sae,))):
            if tuple(tensors[name].shape) != shape:
                raise InterpError(
                    f"{path}: {name} has shape {tuple(tensors[name].shape)}, expected {shape}"
                )
        if jumprelu_encode == "scaled":
            # the current code scales f by |W_dec row| in encode and divides in decode;
            # folding that scale into W_enc, b_enc, threshold and W_dec gives the same f.
            norm = state["W_dec"].norm(dim=1).clamp_min(1e-12)  # [d_sae]
            tensors.update(
                W_enc=state["W_enc"] * norm,
                b_enc=state["b_enc"] * norm,
                W_dec=state["W_dec"] / norm[:, None],
                threshold=state["threshold"] * norm,
            )
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in, d_sae, apply_b_dec_to_input=False, **common))
    else:
        raise InterpError(f"{path}: dictionary_learning class {dict_class!r} is not supported")
    return sae, tensors


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
