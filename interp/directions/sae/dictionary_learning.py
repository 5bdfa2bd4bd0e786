"""Load dictionary_learning SAEs (Marks et al.; many Llama / Qwen releases).

A directory of ``ae.pt`` (a state dict) and ``config.json`` (``trainer.dict_class``, ``trainer.k``, ``trainer.layer``).
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

Errors (pickled code in ``ae.pt``, a truncated file, a config without a ``trainer``
object, tensors of the wrong shape) are one :class:`~interp.errors.InterpError` line each.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.directions.sae.base import SAE, finish_load, load_checked
from interp.directions.sae.batchtopk import BatchTopKSAE, BatchTopKSAEConfig
from interp.directions.sae.jumprelu import JumpReLUSAE, JumpReLUSAEConfig
from interp.directions.sae.relu import ReluSAE, ReluSAEConfig
from interp.directions.sae.topk import TopKSAE, TopKSAEConfig
from interp.errors import IntegrityError, InterpError, UnsafeWeightsError
from interp.integrity import read_json
from interp.sites import Site

__all__ = ["JUMPRELU_ENCODE", "load_dictionary_learning"]

JUMPRELU_ENCODE = ("scaled", "unscaled")  # dictionary_learning's current code / PyPI 0.1.0


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
    return finish_load(load_checked(sae, tensors, path / "ae.pt"), dtype, device)


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
