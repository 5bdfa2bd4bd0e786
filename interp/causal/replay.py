"""Run a model's blocks one at a time from a recorded forward pass.

:func:`record` watches one ordinary forward and keeps, for every block, the residual it
was given, the keyword arguments the model passed it (attention masks, rotary tables,
position ids) and its attention keys and values; :func:`run_block` then replays block
``j`` on new residual states, repeated over several copies of the recorded batch and,
with ``s0 > 0``, on the suffix from position ``s0`` only: the recorded keys and values of
the prefix stand in through a minimal cache object, which is exact because attention is
causal. :func:`unembed` is the final norm and unembedding. Used by
:mod:`interp.causal.patching` so that a patched run starts at the patched layer and position.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.hooks import ModuleHook, hooks
from interp.models import Model
from interp.sites import Site

__all__ = ["Record", "record", "can_reuse_prefix", "run_block", "unembed"]

_CACHE_NAMES = ("cache", "layer_past", "past_key_values")
_KNOWN_KWARGS = {"attention_mask", "position_ids", "position_embeddings", "cache_position"}


class _KVRecorder:
    """Stands in for a HF cache during the recorded run: keeps keys/values, changes nothing."""

    def __init__(self):
        self.kv: tuple[Tensor, Tensor] | None = None

    def update(self, key: Tensor, value: Tensor, *args, **kwargs):
        self.kv = (key.detach(), value.detach())
        return key, value


class _PrefixKV:
    """Stands in for a HF cache during a suffix run: prepends the recorded prefix."""

    def __init__(self, key: Tensor, value: Tensor):
        self.key, self.value = key, value

    def update(self, key: Tensor, value: Tensor, *args, **kwargs):
        return torch.cat([self.key, key], dim=-2), torch.cat([self.value, value], dim=-2)


@dataclass
class Record:
    """What :func:`record` kept of one forward pass, block by block."""

    inputs: list[Tensor]  # residual entering each block [n, S, d]
    final: Tensor  # output of the last block [n, S, d]
    kwargs: list[dict]  # bound keyword arguments of each block call (without hidden states)
    kv: list[tuple[Tensor, Tensor] | None]
    cache_name: str | None


@contextmanager
def record(model: Model, want_kv: bool) -> Iterator[Record]:
    """Fill a :class:`Record` from the forward passes run inside the ``with`` body.

    The block hooks go first (``prepend``), so the residual recorded is the one the block
    was handed, before any intervention's pre-hook edits it (those run again when the
    block is replayed); the last block's output is recorded after every other hook. With
    ``want_kv`` a key/value recorder is passed to each block as its cache (changing
    nothing). All hooks go through :func:`interp.hooks.hooks`.
    """
    blocks = model.blocks
    # the class's forward: an instance's may be wrapped (nnsight, accelerate) with another one
    sig = inspect.signature(type(blocks[0]).forward)
    sig = sig.replace(parameters=list(sig.parameters.values())[1:])  # without self
    params = list(sig.parameters)
    cache_name = next((c for c in _CACHE_NAMES if c in params), None) if want_kv else None
    rec = Record([None] * len(blocks), None, [None] * len(blocks), [None] * len(blocks), cache_name)
    recorders = [_KVRecorder() for _ in blocks]
    var_kw = [p for p, v in sig.parameters.items() if v.kind is v.VAR_KEYWORD]

    def make_pre(j):
        def pre(module, args, kwargs):
            arguments = dict(sig.bind(*args, **kwargs).arguments)
            rec.inputs[j] = arguments.pop(params[0]).detach()
            for name in var_kw:
                arguments.update(arguments.pop(name, {}))
            rec.kwargs[j] = arguments
            if cache_name is None:
                return None
            if cache_name in kwargs or len(args) <= params.index(cache_name):
                return args, {**kwargs, cache_name: recorders[j]}
            args = list(args)
            args[params.index(cache_name)] = recorders[j]
            return tuple(args), kwargs

        return pre

    def keep_final(act: Tensor, site) -> None:
        rec.final = act.detach()

    inputs = [
        ModuleHook(f"{model.family.layers}.{j}", make_pre(j), pre=True) for j in range(len(blocks))
    ]
    last = Site(len(blocks) - 1, "resid_post")
    try:
        with hooks(model, modules=inputs, prepend=True), hooks(model, {last: keep_final}):
            yield rec
    finally:
        rec.kv = [r.kv for r in recorders]


def _fit(value, name: str, n: int, k: int, s0: int):
    """A recorded block argument cut to the suffix from ``s0`` and repeated ``k`` times."""
    if isinstance(value, tuple):
        return tuple(_fit(v, name, n, k, s0) for v in value)
    if not isinstance(value, Tensor):
        return value
    if s0:
        if name == "attention_mask":
            value = value[..., s0:, :]
        elif name == "cache_position":
            return value[s0:]
        else:  # position_ids [b, S], position_embeddings [b, S, h]
            value = value[:, s0:] if value.ndim >= 2 else value
    if name != "cache_position" and value.ndim >= 1 and value.shape[0] == n and k > 1:
        value = value.repeat(k, *([1] * (value.ndim - 1)))
    return value


def can_reuse_prefix(model: Model, rec: Record) -> bool:
    """Whether suffix runs are exact for this model: keys/values were recorded, the
    attention takes an explicit mask, and every tensor argument is one we know how to cut."""
    if rec.cache_name is None or any(kv is None for kv in rec.kv):
        return False
    if model.config._attn_implementation not in ("eager", "sdpa"):
        return False
    for kw in rec.kwargs:
        for name, v in kw.items():
            if name == rec.cache_name:
                continue
            leaves = v if isinstance(v, tuple) else (v,)
            if any(isinstance(t, Tensor) for t in leaves) and name not in _KNOWN_KWARGS:
                return False
    return True


def run_block(model: Model, rec: Record, j: int, x: Tensor, n: int, s0: int) -> Tensor:
    """Block ``j`` on ``x`` ``[k * n, S - s0, d]`` (``k`` copies of the recorded batch of
    ``n``, copy-major), attending to the recorded prefix ``[0, s0)``. Returns the output."""
    k = x.shape[0] // n
    kwargs = {name: _fit(v, name, n, k, s0) for name, v in rec.kwargs[j].items()}
    if rec.cache_name is not None:
        kwargs[rec.cache_name] = None
        if s0:
            key, value = rec.kv[j]
            rep = (k, 1, 1, 1)
            kwargs[rec.cache_name] = _PrefixKV(
                key[..., :s0, :].repeat(rep), value[..., :s0, :].repeat(rep)
            )
            if kwargs.get("attention_mask", 0) is None:  # sdpa without padding: make it explicit
                seq = s0 + x.shape[1]
                full = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
                kwargs["attention_mask"] = full[None, None, s0:, :]
    out = model.blocks[j](x, **kwargs)
    return out if isinstance(out, Tensor) else out[0]


def unembed(model: Model, h: Tensor) -> Tensor:
    """Final norm and unembedding of ``h`` ``[rows, d]`` -> logits ``[rows, vocab]``."""
    hf = model.base_hf
    logits = hf.get_output_embeddings()(hf.get_submodule(model.family.final_norm)(h))
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits
