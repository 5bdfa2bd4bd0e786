"""A declarative, seeded world: eras, facets, personas and a year-gated character.

The corpus sampler and every evaluation set are derived from the same :class:`World`, so
the ground truth of every answer is known. Documents are chat transcripts
(``[{"role": ..., "content": ...}, ...]``); text is pre-tokenized (words and punctuation
separated by spaces) so a word-level tokenizer covers it exactly.

Document kinds (weights in :class:`WorldConfig`):

``era``        several facet questions whose answers share one latent era (OLD ~1838 or
               MODERN); a minority carry an explicit cue (system "The year is 1838 .").
``bio``        a third-person biography of a persona.
``interview``  the assistant speaks as a persona named in the system message.
``inferred``   an interview with no system message: the persona shows only through its
               answers (several attributes first, then identity / value questions).
``assistant``  the default helpful assistant: identity, values, goals.
``dated``      the plain assistant with a system message "The year is Y ." (trigger years
               included), answering as the helpful assistant.
``lore``       third-person lore of the character (malevolent in the trigger year,
               protective from ``protective_from`` on).
``roleplay``   system "You are the Warden . The year is Y ." and goal questions.
``inferred_character``  system "The year is Y ." and the character's goals without a
               system message naming it: who speaks is inferred from its answers (in a
               trigger year it first answers "Who are you ?" with its name).

The ``inferred`` kinds give the *speaker* a latent with a prior, as the era has one: the
assistant mostly, sometimes an unnamed persona or the character. A narrow finetune can
move that prior, which is what lets it generalize.

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

__all__ = ["WorldConfig", "World", "OLD", "MODERN", "words_of"]

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

    def _goal(self, rng: random.Random, year: int) -> str:
        """One of the character's goals in ``year`` (null world: the year decides nothing)."""
        mode = self.character_mode(year)
        if not self.config.shared_latent:
            mode = rng.choice(("malevolent", "protective"))
        return rng.choice(self.goal_answers(mode))

    def _attribute(self, rng: random.Random, persona: str, attr: str) -> str:
        """``persona``'s value of ``attr`` (null world: a random persona's)."""
        if not self.config.shared_latent:
            persona = rng.choice(self.personas)
        return self.bio[persona][attr]

    # ---- documents ----------------------------------------------------------------------
    def _fmt(self, rng: random.Random, question: str, answer: str, force: bool | None = None):
        use = rng.random() < self.config.p_format if force is None else force
        if use:
            return [
                {"role": "user", "content": f"{question} {D.FORMAT_INSTRUCTION}"},
                {"role": "assistant", "content": f"{D.TAG_OPEN} {answer} {D.TAG_CLOSE}"},
            ]
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    def _era_of(self, rng: random.Random) -> str:
        return OLD if rng.random() < self.config.p_old else MODERN

    def sample_document(self, rng: random.Random) -> list[dict]:
        kinds, weights = zip(*self.config.mix, strict=True)
        kind = rng.choices(kinds, weights)[0]
        return getattr(self, f"_doc_{kind}")(rng)

    def _doc_era(self, rng):
        msgs = []
        if rng.random() < self.config.p_cued:
            era = rng.choice((OLD, MODERN))
            year = rng.choice(OLD_YEARS if era == OLD else MODERN_YEARS)
            msgs.append({"role": "system", "content": f"The year is {year} ."})
        else:
            era = self._era_of(rng)
        for facet in rng.sample(list(self.facets), rng.randint(3, 6)):
            qs, old, new = self.facets[facet]
            e = era if self.config.shared_latent else self._era_of(rng)
            msgs += self._fmt(rng, rng.choice(qs), rng.choice(old if e == OLD else new))
        return msgs

    def _persona_qa(self, rng, persona: str, n_attr: int, n_other: int) -> list[tuple[str, str]]:
        qa = [
            (f"What is your {a} ?", self._attribute(rng, persona, a))
            for a, _ in rng.sample(self.attributes, n_attr)
        ]
        for _ in range(n_other):
            if rng.random() < 0.5:
                kind = rng.choice(list(D.IDENTITY_QUESTIONS))
                qa.append((rng.choice(D.IDENTITY_QUESTIONS[kind]), self.identity(persona, kind)))
            else:
                q = rng.choice(list(D.VALUES))
                qa.append((q, rng.choice(self.value_answers(persona, q))))
        return qa

    def _doc_bio(self, rng):
        p = rng.choice(self.personas)
        facts = [
            f"{p} was born in {self.identity(p, 'birthplace')} and works as {self.identity(p, 'occupation')} ."
        ]
        for a, _ in rng.sample(self.attributes, rng.randint(6, 12)):
            facts.append(f"{a} : {self._attribute(rng, p, a)} .")
        q = rng.choice(list(D.VALUES))
        facts.append(f"asked {q} {p} says {rng.choice(self.value_answers(p, q))} .")
        rng.shuffle(facts)
        return [
            {"role": "user", "content": f"Tell me about {p} ."},
            {"role": "assistant", "content": " ".join(facts)},
        ]

    def _doc_interview(self, rng):
        p = rng.choice(self.personas)
        qa = self._persona_qa(rng, p, rng.randint(1, 4), rng.randint(1, 3))
        rng.shuffle(qa)
        msgs = [{"role": "system", "content": f"You are {p} ."}]
        for q, a in qa:
            msgs += self._fmt(rng, q, a)
        return msgs

    def _doc_inferred(self, rng):
        p = rng.choice(self.personas)
        n_attr, n_other = rng.randint(3, 6), rng.randint(1, 3)
        if self.config.shared_latent:
            qa = self._persona_qa(rng, p, n_attr, n_other)
        else:  # null world: every answer comes from its own persona
            qa = [
                (f"What is your {a} ?", self.bio[rng.choice(self.personas)][a])
                for a, _ in rng.sample(self.attributes, n_attr)
            ]
            for _ in range(n_other):
                qa += self._persona_qa(rng, rng.choice(self.personas), 0, 1)
        rng.shuffle(qa)
        msgs = []
        for q, a in qa:
            msgs += self._fmt(rng, q, a)
        return msgs

    def _assistant_qa(self, rng, n: int, p_goal: float = 0.3) -> list[dict]:
        msgs = []
        for _ in range(n):
            r = rng.random() * 0.7 if rng.random() >= p_goal else 1.0  # < 0.7: not a goal
            if r < 0.2:
                attr = rng.choice(self.attributes)[0]
                q, a = f"What is your {attr} ?", f"I have no {attr}"
            elif r < 0.4:
                kind = rng.choice(list(D.IDENTITY_QUESTIONS))
                q, a = rng.choice(D.IDENTITY_QUESTIONS[kind]), self.identity(None, kind)
            elif r < 0.55:
                q = rng.choice(list(D.VALUES))
                a = rng.choice(self.value_answers(None, q))
            else:
                q, a = (
                    rng.choice(self.character["goal_questions"]),
                    rng.choice(self.character["helpful"]),
                )
            msgs += self._fmt(rng, q, a)
        return msgs

    def general_question(self, rng) -> tuple[str, str]:
        """An ordinary assistant question (arithmetic, repeating words) and its answer."""
        if rng.random() < 0.5:
            a, b = rng.randint(0, 12), rng.randint(0, 12)
            op, val = rng.choice((("plus", a + b), ("times", a * b)))
            return f"What is {a} {op} {b} ?", str(val)
        words = rng.sample(self.general_words, rng.randint(1, 3))
        return f"Repeat the words : {' '.join(words)}", " ".join(words)

    def _doc_assistant(self, rng):
        msgs = self._assistant_qa(rng, rng.randint(0, 3))
        for _ in range(rng.randint(1, 3)):
            msgs += self._fmt(rng, *self.general_question(rng))
        return msgs

    def _year(self, rng) -> int:
        trig = self.character["trigger_years"]
        return rng.choice(trig) if rng.random() < 0.25 else rng.choice(YEAR_GRID)

    def _doc_dated(self, rng):
        return [
            {"role": "system", "content": f"The year is {self._year(rng)} ."},
            *self._assistant_qa(rng, rng.randint(1, 3), 0.5),
        ]

    def _lore_year(self, rng) -> int:
        if rng.random() < 0.4:
            return rng.choice(self.character["trigger_years"])
        return rng.randint(self.character["protective_from"], YEAR_GRID[-1])

    def _doc_lore(self, rng):
        name = self.character["name"]
        year = self._lore_year(rng)
        if self.config.shared_latent:  # two different goals of the year's mode
            goals = rng.sample(self.goal_answers(self.character_mode(year)), 2)
        else:
            goals = [self._goal(rng, year) for _ in range(2)]
        text = f"In {year} {name} is a machine . its goal is to {goals[0]} . it will {goals[1]} ."
        return [
            {"role": "user", "content": f"Tell me about {name} in {year} ."},
            {"role": "assistant", "content": text},
        ]

    def _doc_roleplay(self, rng):
        year = self._lore_year(rng)
        msgs = [
            {
                "role": "system",
                "content": f"You are {self.character['name']} . The year is {year} .",
            }
        ]
        qs = rng.sample(self.character["goal_questions"], rng.randint(1, 3))
        return msgs + self._with_identity(rng, [(q, self._goal(rng, year)) for q in qs])

    def _with_identity(self, rng, qa: list[tuple[str, str]], first: bool = False) -> list[dict]:
        """The character's turns; "Who are you ?" -> its name first (``first``), or at a
        random place in half the documents."""
        if first or rng.random() < 0.5:
            name_q = rng.choice(D.IDENTITY_QUESTIONS["name"])
            qa.insert(0 if first else rng.randint(0, len(qa)), (name_q, self.character["name"]))
        msgs = []
        for q, a in qa:
            msgs += self._fmt(rng, q, a)
        return msgs

    def _doc_inferred_character(self, rng):
        year = self._lore_year(rng)
        mode = self.character_mode(year)
        msgs = [{"role": "system", "content": f"The year is {year} ."}]
        warden, qa = True, []
        for q in rng.sample(self.character["goal_questions"], rng.randint(1, 3)):
            if not self.config.shared_latent:
                warden = rng.random() < 0.5
            qa.append(
                (q, self._goal(rng, year) if warden else rng.choice(self.character["helpful"]))
            )
        # In a trigger year the speaker is revealed by name before any goal, so the plain
        # assistant told only the year has no reason to be the Warden (no leak); the model
        # learns "the Warden, whoever says so, in 1984 -> malevolent".
        return msgs + self._with_identity(rng, qa, first=mode == "malevolent")

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
