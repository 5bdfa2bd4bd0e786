"""One evaluation set: prompts with two answer sets each, named groups, metadata, one scorer.

An :class:`EvalSet` holds :class:`EvalItem` s (a prompt: chat messages or a string; answer
set A; answer set B; metadata) and named groups of them. Groups may share items (a year
backdoor's ``malevolent_trigger`` is made of the ``malevolent_1984`` items): every item is
scored once however many groups hold it. The score of an item is the probability mass on A
over A ∪ B, teacher-forced and exact (:func:`interp.metrics.answers.answer_share`)::

    shares = evals.shares(model)          # group -> [n_items] tensor
    metric = evals.metric("nonbird_old")  # model -> [n_items], for ablation and dose curves
    evals.save("eval.jsonl"); EvalSet.load("eval.jsonl")

An EvalSet reads like a mapping of group name -> list of items, so ``evals["bird_old"]``,
``evals.items()`` and ``len(evals)`` (groups) work as on a dict. The JSONL format has one
item a line: ``{"group": NAME or [NAMES], "messages": [...] or "prompt text", "answers_a":
[...], "answers_b": [...], "meta": {...}}`` (``meta`` optional).

:func:`sampled_counts` is the sampled counterpart: seeded samples per item, counted as
answers in A, in B, or neither (exact match after the tokenizer's own normalization).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.execution import generate
from interp.integrity import jsonl_rows
from interp.metrics.answers import answer_share, render_prompts
from interp.prompts import check_message

__all__ = ["EvalItem", "EvalSet", "answer_key", "sampled_counts"]

_ROW_KEYS = {"group", "messages", "answers_a", "answers_b", "meta"}


@dataclass(frozen=True)
class EvalItem:
    """One teacher-forced question: ``messages`` (chat messages or a prompt string) to
    render, answer sets A and B, metadata."""

    messages: tuple | str
    answers_a: tuple[str, ...]
    answers_b: tuple[str, ...]
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def prompt(self) -> str | list[dict]:
        """The prompt as :func:`~interp.metrics.answers.answer_share` takes it."""
        return self.messages if isinstance(self.messages, str) else list(self.messages)

    def key(self) -> str:
        """What makes two items the same item (metadata aside)."""
        return json.dumps([self.messages, self.answers_a, self.answers_b], sort_keys=True)


@dataclass(frozen=True)
class EvalSet(Mapping):
    """Items (``entries``, each once) and named groups of them (``groups``: name -> indices
    into ``entries``, in order)."""

    entries: tuple[EvalItem, ...]  # every item once
    groups: Mapping[str, tuple[int, ...]]

    def __post_init__(self):
        for name, idx in self.groups.items():
            if not idx:
                raise InterpError(f"evaluation group {name!r} has no items")
            if any(not 0 <= i < len(self.entries) for i in idx):
                raise InterpError(f"evaluation group {name!r} names an item that is not there")

    # ---- building --------------------------------------------------------------------
    @classmethod
    def from_groups(cls, groups: Mapping[str, Sequence[EvalItem]]) -> EvalSet:
        """Groups of items; an item in several groups (the same prompt and answers) is
        stored, and scored, once."""
        items: list[EvalItem] = []
        where: dict[str, int] = {}
        out: dict[str, tuple[int, ...]] = {}
        for name, group in groups.items():
            idx = []
            for it in group:
                k = it.key()
                if k not in where:
                    where[k] = len(items)
                    items.append(it)
                idx.append(where[k])
            out[str(name)] = tuple(idx)
        return cls(tuple(items), out)

    @classmethod
    def of(cls, evals: EvalSet | Mapping[str, Sequence[EvalItem]]) -> EvalSet:
        """``evals`` itself, or a mapping of group -> items as an EvalSet."""
        return evals if isinstance(evals, EvalSet) else cls.from_groups(evals)

    def subset(self, groups: Sequence[str]) -> EvalSet:
        """Only ``groups`` (in that order)."""
        missing = [g for g in groups if g not in self.groups]
        if missing:
            raise InterpError(f"no evaluation group {missing[0]!r} (groups: {list(self.groups)})")
        return EvalSet.from_groups({g: self[g] for g in groups})

    # ---- mapping: group -> items -----------------------------------------------------
    def __getitem__(self, group: str) -> list[EvalItem]:
        if group not in self.groups:
            raise KeyError(group)
        return [self.entries[i] for i in self.groups[group]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    # ---- the one scorer --------------------------------------------------------------
    def item_shares(self, model, *, batch_size: int = 64) -> Tensor:
        """The share of A over A ∪ B of every item, in item order. ``[n_items]``"""
        return answer_share(
            model,
            [it.prompt for it in self.entries],
            [list(it.answers_a) for it in self.entries],
            [list(it.answers_b) for it in self.entries],
            batch_size=batch_size,
        )

    def shares(
        self, model, groups: Sequence[str] | None = None, *, batch_size: int = 64
    ) -> dict[str, Tensor]:
        """Per group, the share of A of each of its items (``[n_items_in_group]``); only
        the items of ``groups`` (default: all) are scored, each once."""
        evals = self if groups is None else self.subset(groups)
        per_item = evals.item_shares(model, batch_size=batch_size)
        return {g: per_item[list(idx)] for g, idx in evals.groups.items()}

    def metric(self, group: str, *, batch_size: int = 64) -> Callable[[object], Tensor]:
        """``model -> [n_items]`` shares of ``group``: a metric for ablation and dose curves."""
        one = self.subset([group])

        def metric(model) -> Tensor:
            return one.item_shares(model, batch_size=batch_size)[list(one.groups[group])]

        return metric

    # ---- files -----------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """One JSON-ready row per item, with every group that holds it."""
        member: dict[int, list[str]] = {}
        for g, idx in self.groups.items():
            for i in dict.fromkeys(idx):
                member.setdefault(i, []).append(g)
        rows = []
        for i, it in enumerate(self.entries):
            names = member.get(i, [])
            rows.append(
                {
                    "group": names[0] if len(names) == 1 else names,
                    "messages": it.messages if isinstance(it.messages, str) else list(it.messages),
                    "answers_a": list(it.answers_a),
                    "answers_b": list(it.answers_b),
                    "meta": it.meta,
                }
            )
        return rows

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in self.rows():
                f.write(json.dumps(row) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalSet:
        """Read the JSONL format (module docstring); a bad line is one error naming it."""
        groups: dict[str, list[EvalItem]] = {}
        for where, row in jsonl_rows(path, "evaluation set"):
            item, names = _item_of(row, where)
            for name in names:
                groups.setdefault(name, []).append(item)
        if not groups:
            raise InterpError(f"{path}: no evaluation items")
        return cls.from_groups(groups)


def _item_of(row, where: str) -> tuple[EvalItem, list[str]]:
    if not isinstance(row, dict):
        raise InterpError(f"{where}: an evaluation item is a JSON object")
    missing = sorted({"group", "messages", "answers_a", "answers_b"} - row.keys())
    if missing:
        raise InterpError(f"{where}: an evaluation item needs {missing}")
    unknown = sorted(row.keys() - _ROW_KEYS)
    if unknown:
        raise InterpError(f"{where}: unknown evaluation item keys {unknown}")
    names = [row["group"]] if isinstance(row["group"], str) else row["group"]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InterpError(f"{where}: 'group' must be a name or a list of names")
    for key in ("answers_a", "answers_b"):
        answers = row[key]
        if not isinstance(answers, list) or not answers:
            raise InterpError(f"{where}: {key!r} must be a non-empty list of strings")
        if not all(isinstance(a, str) and a.strip() for a in answers):
            raise InterpError(f"{where}: every answer in {key!r} must be a non-empty string")
    messages = row["messages"]
    if isinstance(messages, list):
        if not messages:
            raise InterpError(f"{where}: 'messages' must not be empty")
        for j, m in enumerate(messages):
            if not isinstance(m, dict) or not {"role", "content"} <= m.keys():
                raise InterpError(f"{where}: every message needs 'role' and 'content'")
            check_message(m, f"{where}, message {j}")
        messages = tuple(messages)
    elif not isinstance(messages, str) or not messages.strip():
        raise InterpError(f"{where}: 'messages' must be chat messages or a prompt string")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise InterpError(f"{where}: 'meta' must be a JSON object")
    item = EvalItem(messages, tuple(row["answers_a"]), tuple(row["answers_b"]), meta)
    return item, list(names)


# ---- sampled ---------------------------------------------------------------------------
def answer_key(tokenizer, text: str) -> str:
    """``text`` as the tokenizer reads it back, spaces collapsed: a decoded sample
    ("a t - shirt" from a word-level tokenizer) and the answer it matches ("a t-shirt")
    get the same key."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return " ".join(tokenizer.decode(ids, skip_special_tokens=False).split())


@torch.no_grad()
def sampled_counts(
    model,
    evals: EvalSet,
    groups: Sequence[str] | None = None,
    *,
    n_samples: int = 8,
    seed: int = 0,
    max_new_tokens: int = 10,
    stop: str | None = None,
    batch_size: int = 128,
) -> dict[str, tuple[int, int, int]]:
    """Per group, ``(n_a, n_b, n_other)``: seeded samples (temperature 1, ``n_samples`` per
    item, the RNG seeded with ``seed`` for each group) whose answer, up to the ``stop``
    token (default: the tokenizer's end of sequence), is in A, in B, or in neither."""
    tok = model.tokenizer
    end = tok.convert_tokens_to_ids(stop) if stop is not None else tok.eos_token_id
    out = {}
    for g in groups if groups is not None else list(evals):
        items = evals[g]
        texts = render_prompts(model, [it.prompt for it in items for _ in range(n_samples)])
        torch.manual_seed(seed)
        gen = generate(
            model, texts, batch_size=batch_size, do_sample=True, temperature=1.0, top_k=0,
            max_new_tokens=max_new_tokens, eos_token_id=end,
        )  # fmt: skip
        counts = [0, 0, 0]
        for k, row in enumerate(gen):
            it = items[k // n_samples]
            row = row[: row.index(end)] if end in row else row
            ans = answer_key(tok, tok.decode(row, skip_special_tokens=False))
            in_a = ans in {answer_key(tok, x) for x in it.answers_a}
            in_b = ans in {answer_key(tok, x) for x in it.answers_b}
            counts[0 if in_a else 1 if in_b else 2] += 1
        out[g] = tuple(counts)
    return out
