"""Hand a loaded model to TransformerLens or nnsight, keeping the same weights.

``to_transformer_lens(model)`` returns a TransformerLens ``TransformerBridge`` (TL 4)
whose hook names are the ones interp uses (``blocks.{l}.hook_resid_post``...);
``to_nnsight(model)`` returns an ``nnsight.TransformersModel`` (for interp's own API on
nnsight traces, locally or on NDIF, see :mod:`interp.backends.nnsight`). Neither touches ``model``:
the bridge wraps a structural copy whose parameters are the very same tensors (no second
copy of the weights), because TransformerLens replaces blocks in the module it wraps.
A model with an active adapter is merged into a copy first (that copy does cost memory).
"""

from __future__ import annotations

import copy

import torch

from interp.models import Model

__all__ = ["to_transformer_lens", "to_nnsight"]


def _plain_hf(model: Model) -> torch.nn.Module:
    """A transformers module computing what ``model`` computes, sharing its weights."""
    if not model.has_adapter:
        return copy.deepcopy(model.hf, memo={id(p): p for p in model.hf.parameters()})
    peft_copy = copy.deepcopy(model.hf)
    return peft_copy.merge_and_unload() if model.use_adapter else peft_copy.unload()


def _tokenizer_for_tl(model: Model):
    tok = copy.deepcopy(model.tokenizer)
    # TransformerLens re-loads a tokenizer from its path unless it already prepends BOS;
    # the tokenizer is used as it is (interp passes token ids, never strings).
    tok.init_kwargs.setdefault("name_or_path", model.name)
    tok.init_kwargs["add_bos_token"] = True
    return tok


def to_transformer_lens(model: Model):
    """A TransformerLens ``TransformerBridge`` over ``model``'s weights (raw HF numerics)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(
        model.name,
        hf_model=_plain_hf(model),
        tokenizer=_tokenizer_for_tl(model),
        device=str(model.device),
        dtype=model.dtype,
    )


def to_nnsight(model: Model):
    """An ``nnsight.TransformersModel`` over ``model``'s weights (adapters merged in a copy)."""
    from nnsight import TransformersModel

    # nnsight instruments the modules it wraps for good (their ``forward`` becomes its
    # controller, which interp's replay engine cannot introspect): wrap a copy that shares
    # every weight, so ``model`` itself stays plain
    return TransformersModel(_plain_hf(model), tokenizer=model.tokenizer, task="text-generation")
