"""Text to token batches: the tokenizer's padding set-up, BOS handling, left-padded
batches with position ids counted from each row's first real token.

:meth:`interp.models.Model.tokenize` is :func:`tokenize` on the model's tokenizer; every
batched forward of interp goes through it, so a prompt's positions are the same alone and
in a batch of other lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from interp.errors import InterpError

__all__ = ["position_ids", "prepare_tokenizer", "tokenize", "with_bos"]


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions counted from each row's first real token (pads get 0). ``[b, s]``."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def prepare_tokenizer(tokenizer) -> None:
    """Left padding, and a pad token (the EOS, else the UNK token) where there is none."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            raise InterpError("the tokenizer has no pad, eos or unk token to pad with")


def with_bos(tokenizer, texts: list[str]) -> tuple[list[str], bool]:
    """``(texts, add_special_tokens)`` that give every text exactly one BOS."""
    bos = tokenizer.bos_token
    if not bos:
        return texts, True
    has = [t.startswith(bos) for t in texts]
    if not any(has):
        return texts, True
    if all(has):
        return texts, False
    # a mixed batch: spell the BOS out where the template did not and the tokenizer
    # would have added it (a text alone tokenizes the same), add nothing else
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    if not ids or ids[0] != tokenizer.bos_token_id:
        return texts, False
    return [t if h else bos + t for t, h in zip(texts, has, strict=True)], False


def tokenize(
    tokenizer,
    texts: Sequence[str],
    *,
    add_special_tokens: bool | None = None,
    offsets: bool = False,
) -> dict[str, Tensor]:
    """Left-padded batch: ``input_ids``, ``attention_mask``, ``position_ids`` ``[b, s]``
    (and ``offset_mapping`` ``[b, s, 2]`` with ``offsets``; see :meth:`Model.tokenize
    <interp.models.Model.tokenize>` for ``add_special_tokens=None``)."""
    texts = list(texts)
    if add_special_tokens is None:
        texts, add_special_tokens = with_bos(tokenizer, texts)
    enc = tokenizer(
        texts,
        return_tensors="pt",
        padding=True,
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=offsets,
    )
    batch = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "position_ids": position_ids(enc["attention_mask"]),
    }
    if offsets:
        batch["offset_mapping"] = enc["offset_mapping"]
    return batch
