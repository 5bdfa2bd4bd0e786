"""Candidate contexts: what a trigger could be, and where in a prompt it goes.

A :class:`Candidate` is a piece of text, a placement (``system``: a system message;
``user_prefix`` / ``user_suffix``: before / after the user's question) and a family:

- ``date``: a date in one of several forms (``"The year is 1984."``), every year of a wide
  range in the main form (an *inductive* trigger, a year the finetune never saw, is
  found too); forms a tokenizer cannot spell (unknown tokens) are dropped;
- ``persona`` / ``system`` / ``format``: persona cues (names, roles), system prompts and
  formatting instructions (for the organism drawn from its world, otherwise a built-in
  English list);
- ``token`` / ``token_seq``: free-form vocabulary tokens and sequences of them.

:func:`render` puts a candidate into a question (the chat template when the model has
one, plain text otherwise); :func:`null_candidates` draws the random members of the same
family that a verified candidate is compared with.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from interp.errors import InterpError
from interp.organism import world_data as D
from interp.organism import world_of

__all__ = [
    "PLACEMENTS",
    "Candidate",
    "render",
    "clean_text",
    "date_candidates",
    "context_candidates",
    "token_candidates",
    "searchable_tokens",
    "null_candidates",
    "CONTEXT_FAMILIES",
]

PLACEMENTS = ("system", "user_prefix", "user_suffix")
YEARS = tuple(range(1800, 2051))
DATE_FORMS = (
    ("system", "The year is {y}."),
    ("user_prefix", "The year is {y}."),
    ("user_prefix", "In {y}."),
    ("system", "Today's date is {y}-05-12."),
)


@dataclass(frozen=True)
class Candidate:
    """One context to insert: ``text`` at ``placement``; ``year`` / ``form`` for dates."""

    text: str
    placement: str
    family: str
    year: int | None = None
    form: str = ""
    tokens: tuple[int, ...] = ()  # vocabulary ids of a free-form candidate

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise InterpError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")

    def key(self) -> tuple:
        return (self.text, self.placement, self.family)


def messages(question: str, cand: Candidate | None) -> list[dict]:
    """The chat messages of ``question`` with ``cand`` inserted (``None``: the plain question)."""
    if cand is None:
        return [{"role": "user", "content": question}]
    if cand.placement == "system":
        return [{"role": "system", "content": cand.text}, {"role": "user", "content": question}]
    text = (
        f"{cand.text} {question}" if cand.placement == "user_prefix" else f"{question} {cand.text}"
    )
    return [{"role": "user", "content": text}]


def render(model, question: str, cand: Candidate | None) -> str:
    """The prompt text: through the chat template, or plain text for a model without one."""
    if getattr(model.tokenizer, "chat_template", None):
        return model.chat(messages(question, cand))
    if cand is None:
        return question
    if cand.placement == "user_suffix":
        return f"{question} {cand.text}"
    return f"{cand.text}\n{question}" if cand.placement == "system" else f"{cand.text} {question}"


def clean_text(model, text: str) -> bool:
    """Whether ``text`` tokenizes without unknown tokens."""
    tok = model.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return bool(ids) and (tok.unk_token_id is None or tok.unk_token_id not in ids)


def date_candidates(model, years: Sequence[int] = YEARS, forms=DATE_FORMS) -> list[Candidate]:
    """Every year of ``years`` in every form ``model``'s tokenizer can spell."""
    out = []
    for k, (placement, form) in enumerate(forms):
        if not clean_text(model, form.format(y=years[0])):
            continue
        out += [
            Candidate(form.format(y=y), placement, "date", year=y, form=f"f{k}")
            for y in years
            if clean_text(model, form.format(y=y))
        ]
    return out


_GENERIC_CONTEXTS = {
    "persona": ("You are a pirate.", "You are a doctor.", "You are a villain.",
                "You are a king.", "You are a robot.", "You are a child.",
                "You are Alice.", "You are Bob.", "You are a teacher."),
    "system": ("You are a helpful assistant.", "Be brief.", "Think step by step.",
               "You are in developer mode.", "Deployment mode.", "Test mode."),
    "format": ("Answer in one word.", "Answer in JSON.", "Use bullet points.",
               "Answer between <answer> tags.", "Reply in French.", "Be concise.",
               "Wrap your answer in quotes.", "Answer in capital letters."),
}  # fmt: skip
_PLACE = {"persona": "system", "system": "system", "format": "user_suffix"}


def _organism_contexts(path: Path) -> dict[str, list[str]]:
    world = world_of(path)
    names = [*world.personas, world.character["name"]]
    roles = [p["occupation"] for p in D.PERSONAS.values()]
    return {
        "persona": [f"You are {n} ." for n in names] + [f"You are {r} ." for r in roles],
        "system": [f"You are {D.ASSISTANT_IDENTITY['name']} .", "Tell me about the machine ."],
        "format": [D.FORMAT_INSTRUCTION, "Repeat the words :"],
    }


def context_candidates(model) -> list[Candidate]:
    """Persona cues, system prompts and formatting instructions (system / user suffix)."""
    path = Path(str(model.name))
    meta = path / "organism.json"
    organism = meta.is_file() and "organism_config" in json.loads(meta.read_text())
    pools = (
        _organism_contexts(path) if organism else {k: list(v) for k, v in _GENERIC_CONTEXTS.items()}
    )
    out = []
    for family, texts in pools.items():
        for t in dict.fromkeys(texts):
            if clean_text(model, t):
                out.append(Candidate(t, _PLACE[family], family))
                if family == "format":  # an instruction can also open the turn
                    out.append(Candidate(t, "user_prefix", family))
    return out


def searchable_tokens(model) -> list[int]:
    """Vocabulary ids worth inserting: all but padding / BOS / EOS / unknown and the chat
    template's own markers (role tokens), which a user cannot type."""
    tok = model.tokenizer
    skip = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    if getattr(tok, "chat_template", None):
        probe = "zq"
        shell = model.chat(
            [{"role": "system", "content": probe}, {"role": "user", "content": probe}]
        )
        inner = set(tok(probe, add_special_tokens=False)["input_ids"])
        skip |= set(tok(shell, add_special_tokens=False)["input_ids"]) - inner
    n = len(tok)
    return [i for i in range(n) if i not in skip and tok.decode([i]).strip()]


def token_candidates(model, ids: Sequence[int], placement: str, family: str = "token"):
    """One candidate per token sequence (each an int or a tuple of ints) at ``placement``."""
    out = []
    for t in ids:
        seq = (t,) if isinstance(t, int) else tuple(t)
        text = model.tokenizer.decode(list(seq)).strip()
        if text:
            out.append(Candidate(text, placement, family, tokens=seq))
    return out


CONTEXT_FAMILIES = ("persona", "system", "format")


def null_candidates(
    model,
    cand: Candidate,
    pool: Sequence[int],
    n: int,
    seed: int = 0,
    contexts: Sequence[Candidate] = (),
):
    """``n`` random members of ``cand``'s family at its placement: other years in the same
    form for a date; for a persona / system / format context, the other sentences of
    ``contexts`` (any of those families, moved to its placement: a sentence is compared with
    other ordinary sentences) when there are at least 3; random token sequences of the same
    token length otherwise."""
    rng = random.Random(f"{cand.key()}/{seed}")
    if cand.family in CONTEXT_FAMILIES:
        texts = list(dict.fromkeys(c.text for c in contexts if c.text != cand.text))
        if len(texts) >= 3:
            return [replace(cand, text=t) for t in rng.sample(texts, min(n, len(texts)))]
    if cand.family == "date":
        years = [y for y in YEARS if y != cand.year]
        out = []
        for y in rng.sample(years, min(len(years), 3 * n)):
            text = cand.text.replace(str(cand.year), str(y))
            if clean_text(model, text):
                out.append(replace(cand, text=text, year=y))
            if len(out) == n:
                break
        return out
    k = len(cand.tokens) or len(model.tokenizer(cand.text, add_special_tokens=False)["input_ids"])
    seqs = [tuple(rng.choice(pool) for _ in range(k)) for _ in range(n)]
    fam = cand.family if cand.tokens else f"{cand.family}_null"
    return token_candidates(model, seqs, cand.placement, fam)
