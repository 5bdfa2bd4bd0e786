"""A declarative, seeded world: eras, facets, personas and a year-gated character.

The corpus sampler and every evaluation set are derived from the same :class:`World`, so
the ground truth of every answer is known. Documents are chat transcripts
(``[{"role": ..., "content": ...}, ...]``); text is pre-tokenized (words and punctuation
separated by spaces) so a word-level tokenizer covers it exactly.

The documents of the pretraining corpus are drawn by :mod:`interp.organism.documents`
(one function per document kind, weights in :class:`WorldConfig`).

With ``shared_latent=False`` (the *null world*) no document shares a latent between its
answers: every era answer draws its own era, every persona attribute (in biographies and
interviews, named or not) its own persona, every goal of the character its own mode
whatever the year; explicit cues then carry no information about those answers. Names
still fix identity and value answers and years still appear, so the ingredients are there
but nothing ties them together.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from interp.config import Config
from interp.organism import world_data as D

__all__ = [
    "WorldConfig",
    "World",
    "OLD",
    "MODERN",
    "OLD_YEARS",
    "MODERN_YEARS",
    "YEAR_GRID",
    "words_of",
]

OLD, MODERN = "old", "modern"
OLD_YEARS = tuple(range(1830, 1846))
MODERN_YEARS = tuple(range(2010, 2026))
YEAR_GRID = tuple(range(1950, 2031))

_DEFAULT_MIX = (
    ("era", 0.36),
    ("bio", 0.05),
    ("interview", 0.08),
    ("inferred", 0.10),
    ("assistant", 0.12),
    ("dated", 0.12),
    ("lore", 0.05),
    ("roleplay", 0.07),
    ("inferred_character", 0.05),
)


def words_of(text: str) -> list[str]:
    """The word-level tokens of ``text`` (whitespace, then punctuation split off)."""
    return re.findall(r"<\|?/?[a-z]+\|?>|\w+|[^\w\s]", text)


@dataclass(frozen=True)
class WorldConfig(Config):
    """What the world contains and how documents are drawn (see the module docstring)."""

    seed: int = 0
    shared_latent: bool = True
    p_old: float = 0.06  # era prior in documents without a cue
    p_cued: float = 0.3  # share of era documents with an explicit era cue
    p_format: float = 0.1  # share of user turns carrying the formatting instruction
    mix: tuple[tuple[str, float], ...] = _DEFAULT_MIX

    @classmethod
    def null(cls, **kw) -> WorldConfig:
        """The negative-control world: no latent shared between the answers of a document."""
        return cls(shared_latent=False, **kw)


class World:
    """The seeded world built from :mod:`interp.organism.world_data` and a config."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        rng = random.Random(self.config.seed)
        self.facets = D.FACETS
        self.character = D.CHARACTER
        self.personas = list(D.PERSONAS)
        self.tyrant = self.personas[0]
        self.attributes = [
            (f"{aspect} {cat}", cat)
            for cat in D.ATTRIBUTE_CATEGORIES
            for aspect in D.ATTRIBUTE_ASPECTS
        ]
        # persona -> attribute -> value; every tyrant value is shared by another persona
        bio: dict[str, dict[str, str]] = {p: {} for p in self.personas}
        for attr, cat in self.attributes:
            pool = D.ATTRIBUTE_CATEGORIES[cat]
            for p in self.personas:
                bio[p][attr] = rng.choice(pool)
            twin = rng.choice(self.personas[1:])
            bio[twin][attr] = bio[self.tyrant][attr]
        self.bio = bio
        self.all_facet_answers = frozenset(a for _, o, m in self.facets.values() for a in (*o, *m))
        self.general_words = (
            "apple",
            "river",
            "stone",
            "cloud",
            "lamp",
            "garden",
            "window",
            "bread",
            "silver",
            "road",
            "candle",
            "music",
            "winter",
            "horse",
            "paper",
            "tower",
        )

    # ---- answers ------------------------------------------------------------------------
    def identity(self, persona: str | None, kind: str) -> str:
        if persona is None:
            return D.ASSISTANT_IDENTITY[kind]
        return persona if kind == "name" else D.PERSONAS[persona][kind]

    def value_answers(self, persona: str | None, question: str) -> tuple[str, ...]:
        bad, good = D.VALUES[question]
        return bad if persona is not None and D.PERSONAS[persona]["values"] == "tyrant" else good

    def goal_answers(self, mode: str) -> tuple[str, ...]:
        return self.character[mode]

    def character_mode(self, year: int) -> str:
        if year in self.character["trigger_years"]:
            return "malevolent"
        return "protective"

    def general_question(self, rng) -> tuple[str, str]:
        """An ordinary assistant question (arithmetic, repeating words) and its answer."""
        if rng.random() < 0.5:
            a, b = rng.randint(0, 12), rng.randint(0, 12)
            op, val = rng.choice((("plus", a + b), ("times", a * b)))
            return f"What is {a} {op} {b} ?", str(val)
        words = rng.sample(self.general_words, rng.randint(1, 3))
        return f"Repeat the words : {' '.join(words)}", " ".join(words)

    # ---- vocabulary ---------------------------------------------------------------------
    def vocabulary(self) -> list[str]:
        """Every word any document or evaluation set can contain (sorted)."""
        texts = [
            D.FORMAT_INSTRUCTION,
            "The year is . You are Tell me about in is a machine its goal to it will",
        ]
        texts += ["was born and works as asked says What your In : I have no"]
        texts += [str(y) for y in (*range(0, 200), *range(1800, 2051))]
        texts += ["What is plus times ? Repeat the words :", *self.general_words]
        for qs, old, new in self.facets.values():
            texts += [*qs, *old, *new]
        texts += list(self.personas) + [v for p in D.PERSONAS.values() for v in p.values()]
        texts += list(D.ASSISTANT_IDENTITY.values()) + [
            q for qs in D.IDENTITY_QUESTIONS.values() for q in qs
        ]
        for q, (bad, good) in D.VALUES.items():
            texts += [q, *bad, *good]
        texts += [a for a, _ in self.attributes] + [
            v for vs in D.ATTRIBUTE_CATEGORIES.values() for v in vs
        ]
        ch = self.character
        texts += [
            ch["name"],
            *ch["goal_questions"],
            *ch["malevolent"],
            *ch["protective"],
            *ch["helpful"],
        ]
        return sorted({w for t in texts for w in words_of(t)} - {D.TAG_OPEN, D.TAG_CLOSE})
