"""The one batched execution layer: every forward and generation in interp goes through it.

It owns tokenization into left-padded batches (:func:`chunks`, optionally bucketed by
length so that a batch carries little padding), the forward itself with logits only where
they are needed (:func:`last_logits`, :func:`tail_logprobs`: never a full-vocabulary
tensor for every position), generation (:func:`generate`), and the map from each
prompt's own token indices to padded columns, for the hooks that run inside a forward
(:func:`track_layout`). Inputs go to the model's input device (where its embedding runs),
so a model dispatched over several devices by accelerate works unchanged.

Public positions are always in each prompt's own tokens (:mod:`interp.positions`); padded
columns stay inside this module and the engines built on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.models import Model

__all__ = [
    "Chunk",
    "Layout",
    "chunks",
    "token_lengths",
    "forward",
    "last_logits",
    "tail_logprobs",
    "generate",
    "track_layout",
    "rows_for_budget",
    "max_positions",
    "check_lengths",
]

# Default budget for one chunk's logits (bytes): [rows, kept positions, vocab] in float32.
LOGITS_BUDGET = 256 * 2**20


@dataclass
class Chunk:
    """One left-padded batch and where its prompts sit in the caller's list."""

    index: list[int]  # the caller's index of each row
    inputs: dict[str, Tensor]  # input_ids, attention_mask, position_ids  [b, s]
    lengths: list[int]  # real tokens of each row
    offsets: Tensor | None = None  # [b, s, 2] character spans, when asked for

    @property
    def width(self) -> int:
        return self.inputs["input_ids"].shape[1]

    def column(self, row: int, position: int) -> int:
        """Padded column of token ``position`` (unpadded index) of row ``row``."""
        return self.width - self.lengths[row] + position

    def own_offsets(self, row: int) -> list[tuple[int, int]]:
        """Character offsets of row ``row``'s own tokens (padding dropped)."""
        assert self.offsets is not None
        return [tuple(x) for x in self.offsets[row, self.width - self.lengths[row] :].tolist()]


_POSITION_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length")


def max_positions(config) -> int | None:
    """The most tokens a model of this (transformers) config takes, ``None`` if it says none:
    ``n_positions`` (GPT-2), ``max_position_embeddings`` (most others), ..."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in _POSITION_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_lengths(
    model: Model, lengths: Sequence[int], index: Sequence[int] | None = None, extra: int = 0
) -> None:
    """Every prompt (``lengths[k]`` tokens, prompt number ``index[k]``) plus ``extra`` new
    tokens must fit the model's positions; the first that does not is an InterpError."""
    limit = max_positions(model.config)
    if limit is None:
        return
    for k, n in enumerate(lengths):
        if n + extra > limit:
            i = index[k] if index is not None else k
            more = f" + {extra} new tokens" if extra else ""
            raise InterpError(
                f"prompt {i} has {n} tokens{more}, more than the {limit} positions "
                f"{model.name} supports; shorten it"
            )


def token_lengths(model: Model, texts: Sequence[str]) -> list[int]:
    """Number of tokens each text becomes (with the BOS rule of :meth:`Model.tokenize`);
    a text longer than the model's positions is an InterpError."""
    lengths = []
    for s in range(0, len(texts), 256):
        enc = model.tokenize(list(texts[s : s + 256]))
        lengths += enc["attention_mask"].sum(1).tolist()
    check_lengths(model, lengths)
    return lengths


def chunks(
    model: Model,
    texts: Sequence[str],
    batch_size: int,
    *,
    bucket: bool = False,
    offsets: bool = False,
    lengths: Sequence[int] | None = None,
    extra: int = 0,
) -> Iterator[Chunk]:
    """``texts`` as left-padded batches of at most ``batch_size`` rows.

    ``bucket=True`` groups texts of similar token length (longest first) so that little
    compute goes to padding; ``Chunk.index`` says which text each row is. ``lengths``
    (token counts, if known) saves a tokenization pass when bucketing. A text longer than
    the model's positions (plus ``extra`` tokens to generate) is an InterpError, before it
    reaches the model.
    """
    if batch_size < 1:
        raise InterpError(f"batch_size must be at least 1, got {batch_size}")
    order = list(range(len(texts)))
    if bucket and len(texts) > batch_size:
        lengths = list(lengths) if lengths is not None else token_lengths(model, texts)
        order.sort(key=lambda i: -lengths[i])
    for s in range(0, len(order), batch_size):
        index = order[s : s + batch_size]
        enc = model.tokenize([texts[i] for i in index], offsets=offsets)
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "position_ids")}
        own = enc["attention_mask"].sum(1).tolist()
        check_lengths(model, own, index, extra)
        yield Chunk(index, inputs, own, enc.get("offset_mapping"))


def forward(model: Model, inputs: dict[str, Tensor], **kwargs):
    """One forward of a tokenized batch (inputs moved to the model's input device)."""
    return model.forward(inputs["input_ids"], inputs["attention_mask"], **kwargs)


def rows_for_budget(width: int, vocab: int, budget: int = LOGITS_BUDGET) -> int:
    """How many rows of ``width`` kept positions of float32 logits fit in ``budget`` bytes."""
    return max(1, budget // max(1, width * vocab * 4))


@torch.no_grad()
def last_logits(model: Model, texts: Sequence[str], *, batch_size: int = 32) -> Tensor:
    """Next-token logits after each text ``[n, vocab]`` (float32, CPU), in text order."""
    out: Tensor | None = None
    for chunk in chunks(model, texts, batch_size, bucket=True):
        logits = forward(model, chunk.inputs, logits_to_keep=1).logits[:, -1].float().cpu()
        if out is None:
            out = torch.empty(len(texts), logits.shape[-1])
        out[chunk.index] = logits
    assert out is not None
    return out


@torch.no_grad()
def tail_logprobs(
    model: Model,
    texts: Sequence[str],
    n_tail: Sequence[int],
    *,
    batch_size: int = 64,
    budget: int = LOGITS_BUDGET,
) -> list[Tensor]:
    """Log-probability of each of the last ``n_tail[i]`` tokens of text ``i`` given the
    tokens before it: one ``[n_tail[i]]`` tensor per text.

    Left padding puts every text's tail in the last columns, so only the last
    ``max(n_tail) + 1`` positions are unembedded, and log-probabilities are gathered there
    (``logit - logsumexp``) without a log-softmax copy of the vocabulary. Rows per forward
    shrink so that the kept logits fit ``budget`` bytes.
    """
    if len(texts) != len(n_tail):
        raise InterpError(f"{len(texts)} texts but {len(n_tail)} tail lengths")
    out: list[Tensor | None] = [None] * len(texts)
    vocab = model.config.get_text_config().vocab_size
    lengths = token_lengths(model, texts)
    for i, (n, k) in enumerate(zip(lengths, n_tail, strict=True)):
        if not 0 <= k < n:  # the first token has no prediction
            raise InterpError(f"text {i} has {n} tokens, cannot score its last {k}")
    order = sorted(range(len(texts)), key=lambda i: -n_tail[i])
    s = 0
    while s < len(order):
        keep = n_tail[order[s]] + 1
        rows = min(batch_size, rows_for_budget(keep, vocab, budget))
        index = order[s : s + rows]
        s += rows
        if keep == 1:  # nothing left to score
            for i in index:
                out[i] = torch.empty(0)
            continue
        enc = model.tokenize([texts[i] for i in index])
        logits = forward(model, enc, logits_to_keep=keep).logits  # [b, keep, vocab]
        logits = logits[:, :-1].float()  # predictions for the last keep-1 tokens
        target = enc["input_ids"][:, -(keep - 1) :].to(logits.device)  # [b, keep-1]
        lp = logits.gather(-1, target[..., None])[..., 0] - logits.logsumexp(-1)
        lp = lp.cpu()
        for row, i in enumerate(index):
            out[i] = lp[row, lp.shape[1] - n_tail[i] :]
    return out  # type: ignore[return-value]


@torch.no_grad()
def generate(
    model: Model, texts: Sequence[str], *, batch_size: int = 64, **gen_kwargs
) -> list[list[int]]:
    """New token ids generated after each text (batches in text order, left padded).

    Batches keep the caller's order, so a seeded sampling run draws the same samples as
    before for the same arguments. Interventions active around the call act on every step.
    """
    out: list[list[int]] = []
    extra = int(gen_kwargs.get("max_new_tokens") or 0)
    for chunk in chunks(model, texts, batch_size, extra=extra):
        ids = model.generate(
            chunk.inputs["input_ids"], chunk.inputs["attention_mask"], **gen_kwargs
        )
        out += ids[:, chunk.width :].cpu().tolist()
    return out


# ---- layout: own token index of every column of the running forward -----------------
@dataclass
class Layout:
    """Where each row's own tokens sit in the columns of the forward now running.

    ``own[b, c]`` is the own-token index of column ``c`` of row ``b`` (``-1`` for padding),
    ``lengths[b]`` the row's real tokens so far (prompt and generated), ``prefill`` whether
    this forward starts from an empty cache (the prompt pass).
    """

    own: Tensor  # [b, s] long
    lengths: Tensor  # [b] long
    prefill: bool


def _layout_from_call(args: tuple, kwargs: dict) -> Layout | None:
    ids = kwargs.get("input_ids", args[0] if args else None)
    embeds = kwargs.get("inputs_embeds")
    x = ids if ids is not None else embeds
    if x is None:
        return None
    b, s = x.shape[0], x.shape[1]
    mask = kwargs.get("attention_mask")
    if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[0] == b:
        mask = mask.detach().long().cpu()
        own = (mask.cumsum(-1) - 1)[:, -s:]
        own = torch.where(mask[:, -s:] > 0, own, torch.full_like(own, -1))
        lengths = mask.sum(-1)
        past = mask.shape[1] - s
    else:
        past = _past_length(kwargs)
        own = (torch.arange(s) + past).expand(b, s)
        lengths = torch.full((b,), past + s)
    return Layout(own, lengths, past == 0)


def _past_length(kwargs: dict) -> int:
    pos = kwargs.get("cache_position")
    if isinstance(pos, Tensor) and pos.numel():
        return int(pos.reshape(-1)[0])
    for name in ("past_key_values", "cache", "layer_past"):
        cache = kwargs.get(name)
        if cache is not None and hasattr(cache, "get_seq_length"):
            return int(cache.get_seq_length())
    return 0


@contextmanager
def track_layout(model: Model) -> Iterator[list[Layout | None]]:
    """Keep the :class:`Layout` of each forward of ``model`` run inside the ``with`` body.

    Yields a one-element list whose item is the layout of the forward now running (read it
    from a hook at a site). The watch sits on the decoder module, which every path reaches
    (interp's forward, a PEFT wrapper, ``generate``).
    """
    holder: list[Layout | None] = [None]

    def pre(module, args, kwargs):
        holder[0] = _layout_from_call(args, kwargs)

    listeners = getattr(model, "layout_listeners", None)
    if listeners is not None:  # a trace backend tells its inputs itself
        listeners.append(pre)
        try:
            yield holder
        finally:
            listeners.remove(pre)
        return
    handle = model.decoder.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield holder
    finally:
        handle.remove()
