"""Patching inputs: clean/corrupt pairs as unpadded tokens, grouped by length, sized to memory.

:func:`pairs` tokenizes both prompt sets (strings, chat messages, a
:class:`~interp.prompts.PromptSet` whose tags positions may name, or a batch from
:meth:`Model.tokenize`) and checks that pair ``i`` has one length on both sides.
:func:`length_groups` groups pairs by length (nothing inside the patching engine is
padded); :func:`group_metric` gives a metric the rows of one group in their places;
:func:`memory_budget`, :func:`split_group` and :func:`chunk_size` size the batched
exact runs to the bytes one run may use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.execution import chunks
from interp.models import Model
from interp.positions import span_tokens
from interp.prompts import as_prompt_set

__all__ = [
    "CPU_BUDGET",
    "Metric",
    "Pairs",
    "Tokens",
    "as_values",
    "chunk_size",
    "group_metric",
    "length_groups",
    "memory_budget",
    "pairs",
    "row_bytes",
    "split_group",
]

Metric = Callable[[Tensor], Tensor]  # last-position logits [n, vocab] -> [n] or scalar

# Default memory for one chunk of patched runs (bytes), on CPU; on a GPU half its free memory.
CPU_BUDGET = 1 << 30


@dataclass
class Tokens:
    """Prompts as unpadded token ids, with each prompt's tag tokens when a tag is used."""

    ids: list[Tensor]  # [n_i] each
    tags: dict[str, list[list[int]]]


@dataclass
class Pairs:
    """Clean and corrupt prompts of equal length pair by pair (tags on the clean side)."""

    clean: Tokens
    corrupt: Tokens

    @property
    def lengths(self) -> list[int]:
        return [len(t) for t in self.clean.ids]

    def batches(self, index: list[int]) -> tuple[dict, dict]:
        """The clean and corrupt batches ``[len(index), length]`` of pairs of one length."""
        ones = torch.ones(len(index), len(self.clean.ids[index[0]]), dtype=torch.long)
        return tuple(
            {"input_ids": torch.stack([side.ids[i] for i in index]), "attention_mask": ones}
            for side in (self.clean, self.corrupt)
        )  # type: ignore[return-value]


def _tokens(model: Model, prompts, tags: set[str]) -> Tokens:
    if isinstance(prompts, dict):  # a batch from Model.tokenize: strip each row's padding
        if tags:
            raise InterpError("tag positions and align= need prompts (a PromptSet), not ids")
        mask = prompts["attention_mask"].bool()
        return Tokens([row[m] for row, m in zip(prompts["input_ids"], mask, strict=True)], {})
    if isinstance(prompts, str):
        prompts = [prompts]
    pset = as_prompt_set(prompts)
    texts = pset.render(model)
    chars = {t: pset.char_spans(t, texts) for t in tags}
    ids: list[Tensor | None] = [None] * len(texts)
    spans: dict[str, list[list[int]]] = {t: [[] for _ in texts] for t in tags}
    for chunk in chunks(model, texts, 64, offsets=bool(tags)):
        for r, i in enumerate(chunk.index):
            ids[i] = chunk.inputs["input_ids"][r, chunk.width - chunk.lengths[r] :]
            for t in tags:
                spans[t][i] = span_tokens(chunk.own_offsets(r), chars[t][i])
    return Tokens(ids, spans)  # type: ignore[arg-type]


def pairs(model: Model, clean, corrupt, tags: set[str]) -> Pairs:
    """Both prompt sets tokenized (the clean side with the token spans of ``tags``); an
    error naming the pair whose two sides differ in length."""
    c = _tokens(model, clean, tags)
    x = _tokens(model, corrupt, set())
    if len(c.ids) != len(x.ids) or not c.ids:
        raise InterpError(
            f"clean and corrupt need the same, non-zero number of prompts "
            f"(got {len(c.ids)} and {len(x.ids)})"
        )
    for i, (a, b) in enumerate(zip(c.ids, x.ids, strict=True)):
        if len(a) != len(b):
            raise InterpError(
                f"pair {i}: clean and corrupt prompts must tokenize to the same length so that "
                f"positions line up (clean {len(a)} tokens, corrupt {len(b)} tokens)"
            )
    return Pairs(c, x)


def length_groups(lengths: list[int]) -> dict[int, list[int]]:
    """``{length: [pair index, ...]}`` in order of first appearance."""
    out: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        out.setdefault(n, []).append(i)
    return out


def group_metric(metric: Metric, index: list[int], n: int) -> Metric:
    """The metric on a group's rows: called on ``[n, vocab]`` with the group's rows in
    place (other rows zero), so a metric that reads per-prompt targets by row still can."""
    if index == list(range(n)):
        return metric
    idx = torch.tensor(index)

    def on_group(logits: Tensor) -> Tensor:
        full = logits.new_zeros(n, logits.shape[-1]).index_copy(0, idx.to(logits.device), logits)
        value = torch.as_tensor(metric(full))
        if value.ndim == 0:
            raise InterpError(
                "the metric returned a scalar; with pairs of different lengths it must return "
                f"one value per prompt ([{n}])"
            )
        return value[idx.to(value.device)]

    return on_group


def as_values(value, n: int) -> Tensor:
    """A metric's output as a CPU float tensor: a scalar, or ``[n]`` (else an error)."""
    value = torch.as_tensor(value).detach().float().cpu()
    if value.ndim == 0:
        return value
    if value.shape != (n,):
        raise InterpError(
            f"the metric must return a scalar or a [{n}] tensor, got {tuple(value.shape)}"
        )
    return value


def memory_budget(model: Model, memory: int | None) -> int:
    if memory is not None:
        if memory < 1:
            raise InterpError(f"memory must be a positive number of bytes, got {memory}")
        return memory
    if model.device.type == "cuda":
        return torch.cuda.mem_get_info(model.device)[0] // 2
    return CPU_BUDGET


def row_bytes(model: Model, n_sites: int, seq: int) -> int:
    """Bytes one (prompt, patched position) costs at the deepest block, where every site's
    rows have joined: the sequence's d_model floats per site, and about 8x that for the
    block's intermediates (attention, MLP)."""
    return n_sites * seq * model.d_model * 4 * 8


def split_group(index: list[int], row: int, budget: int) -> list[list[int]]:
    """A length group split so that one patched position of all its prompts fits."""
    size = max(1, min(len(index), budget // max(1, row)))
    return [index[k : k + size] for k in range(0, len(index), size)]


def chunk_size(model: Model, n: int, row: int, budget: int) -> int:
    """Positions per exact run: about 8 rows per site on CPU (64 on GPU), fewer when the
    rows of every joined site would not fit the budget."""
    default = max(1, (64 if model.device.type == "cuda" else 8) // n)
    return max(1, min(default, budget // max(1, n * row)))
