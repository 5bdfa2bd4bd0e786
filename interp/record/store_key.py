"""What identifies a capture in an activation store, and how two requests differ.

:func:`request_for` is the key a store's manifest keeps: the model's name and a content
hash of its weights, config and tokenizer (:attr:`interp.models.Model.weights_sha256`),
the adapter's hash and the view (base / finetuned), the sites, the position spec and a
hash of the token positions it resolves to in every prompt (:func:`positions_sha256`: the
same tag name over other text differs), batch size, dtype, and hashes of the prompts and
their metadata. :func:`mismatch` says in one line what differs between two keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from interp.fingerprint import sha256_json, sha256_texts
from interp.models import Model
from interp.prompts import PromptSet
from interp.record.batches import iter_batches

__all__ = ["request_for", "positions_sha256", "mismatch"]


def positions_sha256(model: Model, prompts: PromptSet, positions, batch_size: int) -> str:
    """Hash of the resolved token positions, prompt by prompt (tokenizes, runs nothing):
    the same position name over other tag text, or another tokenizer, hashes differently."""
    h = hashlib.sha256()
    for batch in iter_batches(model, prompts, positions, batch_size):
        rows = torch.stack([batch.batch_idx + batch.start, batch.position])  # [2, rows]
        h.update(rows.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def request_for(
    model: Model, prompts: PromptSet, sites, positions, batch_size, dtype, texts
) -> dict:
    return {
        "model": model.name,
        "weights_sha256": model.weights_sha256,
        "adapter_hash": model.adapter_hash if model.variant == "finetuned" else None,
        "variant": model.variant,
        "sites": [s.name for s in sites],
        "positions": repr(positions),
        "positions_sha256": positions_sha256(model, prompts, positions, batch_size),
        "batch_size": batch_size,
        "dtype": str(dtype).removeprefix("torch."),
        "n_prompts": len(prompts),
        "prompts_sha256": sha256_texts(texts),
        "meta_sha256": sha256_json(prompts.meta.to_json(orient="split", index=False)),
    }


_WHAT = {
    "weights_sha256": "the model's weights",
    "adapter_hash": "the adapter",
    "positions_sha256": "the resolved token positions (other tag text or tokenizer)",
    "prompts_sha256": "the prompts",
    "meta_sha256": "the prompts' metadata",
}


def _short(value) -> str:
    if value is None:
        return "none"
    text = str(value) if not isinstance(value, list) else ",".join(map(str, value))
    return text[:12] if len(text) == 64 else text[:60]


def mismatch(path: Path, stored: dict, request: dict) -> str | None:
    """What differs between the stored request and this one (``None``: nothing)."""
    diff = [k for k in request if stored.get(k) != request[k]]
    if not diff:
        return None
    parts = [
        f"{k} ({_WHAT[k] + ': ' if k in _WHAT else ''}{_short(stored.get(k))} in the store, "
        f"{_short(request[k])} now)"
        for k in diff
    ]
    return (
        f"{path} holds a different capture (differs in: {'; '.join(parts)}); its rows are "
        "not mixed with these: use another directory or delete it"
    )
