"""Prompts with metadata and tagged spans, and the readers for chat data.

A :class:`PromptSet` is a list of prompts (plain strings or chat message lists), a
metadata table with one row per prompt (year, era, trigger on/off, template id, ...)
and named *tags*: for each prompt, a piece of the text (a trigger such as ``"1984"``)
whose tokens :func:`interp.capture` can read. Tags are located in the *rendered* text,
so they survive the chat template, and are mapped to tokens through the tokenizer's
character offsets, so a tag that splits into several tokens still resolves.

:meth:`PromptSet.grid` builds contrast grids from a template
(``"Today is {year}-05-12. {question}"`` over years x questions) with every slot tagged.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from interp.errors import EmptyPromptsError, InterpError, PromptError, SpanNotFoundError
from interp.integrity import read_text

if TYPE_CHECKING:
    from interp.models import Model

__all__ = [
    "CHAT_ROLES",
    "check_prompt",
    "check_message",
    "Tag",
    "PromptSet",
    "as_prompt_set",
    "read_chat_jsonl",
    "write_chat_jsonl",
]

Prompt = str | Sequence[Mapping[str, str]]

CHAT_ROLES = ("system", "user", "assistant", "developer", "tool")


def check_message(message, where: str) -> None:
    """One chat message: ``{"role": one of CHAT_ROLES, "content": a string}``."""
    if not isinstance(message, Mapping) or not {"role", "content"} <= message.keys():
        raise PromptError(f"{where}: a chat message is an object with 'role' and 'content'")
    role, content = message["role"], message["content"]
    if role not in CHAT_ROLES:
        raise PromptError(f"{where}: unknown chat role {role!r} (roles: {', '.join(CHAT_ROLES)})")
    if content is None:
        raise PromptError(f"{where}: 'content' is null; give the message's text")
    if not isinstance(content, str):
        raise PromptError(
            f"{where}: 'content' must be a string, not {type(content).__name__} "
            "(interp reads text-only chats)"
        )


def check_prompt(prompt, where: str = "prompt") -> None:
    """A prompt that can run: non-empty text, or a non-empty list of valid chat messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PromptError(f"{where} is empty")
        return
    if isinstance(prompt, Mapping) or not isinstance(prompt, Sequence):
        raise PromptError(
            f"{where}: a prompt is a string or a list of chat messages, not {type(prompt).__name__}"
        )
    if len(prompt) == 0:
        raise PromptError(f"{where}: an empty list of chat messages")
    for j, m in enumerate(prompt):
        check_message(m, f"{where}, message {j}")
    if not any(m["content"].strip() for m in prompt):
        raise PromptError(f"{where}: every message is empty")


@dataclass(frozen=True)
class Tag:
    """A span ``[start, end)`` inside ``anchor``; ``anchor`` is found in the rendered prompt.

    ``Tag.of("1984")`` tags the string itself. The grid builder anchors a slot to the whole
    filled user message, so ``"1984"`` is found inside that message and nowhere else.
    """

    anchor: str
    start: int
    end: int

    @classmethod
    def of(cls, text: str) -> Tag:
        return cls(text, 0, len(text))

    def locate(self, rendered: str) -> tuple[int, int] | None:
        """Character span in ``rendered`` (last occurrence of the anchor), or ``None``."""
        at = rendered.rfind(self.anchor)
        if at < 0:
            return None
        return at + self.start, at + self.end


@dataclass
class PromptSet:
    """Prompts + a metadata table (one row per prompt) + named tags (one per prompt)."""

    prompts: list[Prompt]
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    tags: dict[str, list[Tag | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prompts = list(self.prompts)
        if not self.prompts:
            raise EmptyPromptsError("the prompt list is empty")
        for i, p in enumerate(self.prompts):
            check_prompt(p, f"prompt {i}")
        if self.meta is None or len(self.meta.columns) == 0:
            self.meta = pd.DataFrame(index=range(len(self.prompts)))
        else:
            self.meta = pd.DataFrame(self.meta).reset_index(drop=True)
        if len(self.meta) != len(self.prompts):
            raise InterpError(f"{len(self.prompts)} prompts but {len(self.meta)} metadata rows")
        for name, values in self.tags.items():
            if len(values) != len(self.prompts):
                raise InterpError(
                    f"tag {name!r} has {len(values)} entries for {len(self.prompts)} prompts"
                )

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompts[0], str)

    def tag(self, name: str, values: str | Iterable[str | Tag | None]) -> PromptSet:
        """Add tag ``name``: one string (the same for every prompt) or one per prompt."""
        vals = [values] * len(self) if isinstance(values, str) else list(values)
        tags = [Tag.of(v) if isinstance(v, str) else v for v in vals]
        return PromptSet(self.prompts, self.meta, {**self.tags, name: tags})

    def subset(self, index: Sequence[int]) -> PromptSet:
        index = list(index)
        return PromptSet(
            [self.prompts[i] for i in index],
            self.meta.iloc[index].reset_index(drop=True),
            {k: [v[i] for i in index] for k, v in self.tags.items()},
        )

    def render(self, model: Model) -> list[str]:
        """The text each prompt becomes: chat lists through the model's chat template."""
        if not self.is_chat:
            return [str(p) for p in self.prompts]
        return [model.chat(list(p), add_generation_prompt=True) for p in self.prompts]

    def char_spans(self, name: str, rendered: Sequence[str]) -> list[tuple[int, int]]:
        """Character span of tag ``name`` in each rendered prompt; error if one is missing."""
        if name not in self.tags:
            known = ", ".join(sorted(self.tags)) or "none"
            raise SpanNotFoundError(f"no tag named {name!r} in this PromptSet (tags: {known})")
        spans = []
        for i, (tag, text) in enumerate(zip(self.tags[name], rendered, strict=True)):
            span = tag.locate(text) if tag is not None else None
            if span is None:
                what = repr(tag.anchor) if tag is not None else "nothing"
                raise SpanNotFoundError(f"tag {name!r} ({what}) not found in prompt {i}: {text!r}")
            spans.append(span)
        return spans

    @classmethod
    def grid(
        cls,
        template: str,
        *,
        chat: bool = True,
        system: str | None = None,
        **slots: Sequence[Any],
    ) -> PromptSet:
        """Every combination of slot values filled into ``template``; each slot is tagged.

        ``PromptSet.grid("Today is {year}-05-12. {question}", year=range(1980, 2031),
        question=questions)`` gives len(years) x len(questions) prompts, a metadata
        column per slot, and tags ``year`` and ``question`` at the filled text. The
        ``system`` message may hold slots too (``system="The year is {year} ."``); a slot
        is tagged where it first appears, in the user message or else in the system one.
        """
        user_fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        sys_fields = [f for _, f, _, _ in string.Formatter().parse(system or "") if f]
        if sys_fields and not chat:
            raise InterpError("a system message needs chat=True")
        missing = set(user_fields + sys_fields) - set(slots)
        if missing:
            raise InterpError(f"template slots without values: {sorted(missing)}")
        names = list(dict.fromkeys(user_fields + sys_fields))
        prompts, rows, tags = [], [], {n: [] for n in names}
        for combo in itertools.product(*(list(slots[n]) for n in names)):
            values = dict(zip(names, combo, strict=True))
            text, spans = _fill(template, values)
            sys_text, sys_spans = _fill(system, values) if system else (None, {})
            rows.append(values)
            for n in names:
                anchor, (start, end) = (text, spans[n]) if n in spans else (sys_text, sys_spans[n])
                tags[n].append(Tag(anchor, start, end))
            if chat:
                msgs = [{"role": "system", "content": sys_text}] if system else []
                prompts.append([*msgs, {"role": "user", "content": text}])
            else:
                prompts.append(text)
        return cls(prompts, pd.DataFrame(rows), tags)


def _fill(template: str, values: Mapping[str, Any]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Format ``template`` and record where the first occurrence of each slot landed."""
    out, spans = [], {}
    pos = 0
    for literal, name, spec, conv in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if name is None:
            continue
        piece = format(values[name], spec or "")
        if conv:
            piece = format({"r": repr, "s": str, "a": ascii}[conv](values[name]), spec or "")
        spans.setdefault(name, (pos, pos + len(piece)))
        out.append(piece)
        pos += len(piece)
    return "".join(out), spans


def as_prompt_set(prompts: PromptSet | Sequence[Prompt]) -> PromptSet:
    """Accept a PromptSet, a list of strings or a list of chat message lists."""
    if isinstance(prompts, PromptSet):
        return prompts
    if isinstance(prompts, str):
        raise InterpError("pass a list of prompts, not a single string")
    return PromptSet(list(prompts))


def read_chat_jsonl(path: str | Path) -> list[list[dict[str, str]]]:
    """Read a chat JSONL file (one ``{"messages": [...]}`` object a line, UTF-8).

    Every line is checked: JSON, a non-empty ``messages`` list, known roles and string
    content; the first bad line is one :class:`~interp.errors.InterpError` naming it.
    """
    out = []
    for lineno, line in enumerate(read_text(path, "chat data").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
            messages = obj["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InterpError(f"{where}: not a chat JSONL line ({e})") from None
        if not isinstance(messages, list) or not messages:
            raise PromptError(f"{where}: 'messages' must be a non-empty list")
        for j, m in enumerate(messages):
            if not isinstance(m, dict) or not {"role", "content"} <= m.keys():
                raise InterpError(f"{where}: every message needs 'role' and 'content'")
            check_message(m, f"{where}, message {j}")
        out.append(messages)
    return out


def write_chat_jsonl(
    path: str | Path, conversations: Iterable[Sequence[Mapping[str, str]]]
) -> Path:
    """Write ``conversations`` (lists of ``{role, content}``) as chat JSONL; returns ``path``.

    One ``{"messages": [...]}`` object a line, the format :func:`read_chat_jsonl` and
    :func:`interp.finetune.finetune` read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for messages in conversations:
            f.write(json.dumps({"messages": [dict(m) for m in messages]}) + "\n")
    return path
