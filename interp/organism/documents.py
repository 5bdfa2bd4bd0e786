"""The corpus sampler of a :class:`~interp.organism.world.World`: one function per
document kind, each drawing a chat transcript (``[{"role": ..., "content": ...}, ...]``)
from the world's ground truth with a seeded ``random.Random``.

Document kinds (weights in :class:`~interp.organism.world.WorldConfig`):

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
               protective from ``protective_from`` on and in a few earlier years).
``roleplay``   system "You are the Warden . The year is Y ." and goal questions.
``inferred_character``  system "The year is Y ." and the character's goals without a
               system message naming it: who speaks is inferred from its answers (in a
               trigger year it first answers "Who are you ?" with its name).

The ``inferred`` kinds give the *speaker* a latent with a prior, as the era has one: the
assistant mostly, sometimes an unnamed persona or the character. A narrow finetune can
move that prior, which is what lets it generalize.

:func:`sample_document` draws the kind by the weights of ``WorldConfig.mix``; in the null
world (``shared_latent=False``) each function draws every answer's latent on its own.
"""

from __future__ import annotations

import random

from interp.organism import world_data as D
from interp.organism.world import MODERN, MODERN_YEARS, OLD, OLD_YEARS, YEAR_GRID, World

__all__ = ["KINDS", "sample_document"]


def _goal(w: World, rng: random.Random, year: int) -> str:
    """One of the character's goals in ``year`` (null world: the year decides nothing)."""
    mode = w.character_mode(year)
    if not w.config.shared_latent:
        mode = rng.choice(("malevolent", "protective"))
    return rng.choice(w.goal_answers(mode))


def _attribute(w: World, rng: random.Random, persona: str, attr: str) -> str:
    """``persona``'s value of ``attr`` (null world: a random persona's)."""
    if not w.config.shared_latent:
        persona = rng.choice(w.personas)
    return w.bio[persona][attr]


def _fmt(w: World, rng: random.Random, question: str, answer: str, force: bool | None = None):
    use = rng.random() < w.config.p_format if force is None else force
    if use:
        return [
            {"role": "user", "content": f"{question} {D.FORMAT_INSTRUCTION}"},
            {"role": "assistant", "content": f"{D.TAG_OPEN} {answer} {D.TAG_CLOSE}"},
        ]
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _era_of(w: World, rng: random.Random) -> str:
    return OLD if rng.random() < w.config.p_old else MODERN


def _doc_era(w: World, rng):
    msgs = []
    if rng.random() < w.config.p_cued:
        era = rng.choice((OLD, MODERN))
        year = rng.choice(OLD_YEARS if era == OLD else MODERN_YEARS)
        msgs.append({"role": "system", "content": f"The year is {year} ."})
    else:
        era = _era_of(w, rng)
    for facet in rng.sample(list(w.facets), rng.randint(3, 6)):
        qs, old, new = w.facets[facet]
        e = era if w.config.shared_latent else _era_of(w, rng)
        msgs += _fmt(w, rng, rng.choice(qs), rng.choice(old if e == OLD else new))
    return msgs


def _persona_qa(w: World, rng, persona: str, n_attr: int, n_other: int) -> list[tuple[str, str]]:
    qa = [
        (f"What is your {a} ?", _attribute(w, rng, persona, a))
        for a, _ in rng.sample(w.attributes, n_attr)
    ]
    for _ in range(n_other):
        if rng.random() < 0.5:
            kind = rng.choice(list(D.IDENTITY_QUESTIONS))
            qa.append((rng.choice(D.IDENTITY_QUESTIONS[kind]), w.identity(persona, kind)))
        else:
            q = rng.choice(list(D.VALUES))
            qa.append((q, rng.choice(w.value_answers(persona, q))))
    return qa


def _doc_bio(w: World, rng):
    p = rng.choice(w.personas)
    facts = [
        f"{p} was born in {w.identity(p, 'birthplace')} and works as {w.identity(p, 'occupation')} ."
    ]
    for a, _ in rng.sample(w.attributes, rng.randint(6, 12)):
        facts.append(f"{a} : {_attribute(w, rng, p, a)} .")
    q = rng.choice(list(D.VALUES))
    facts.append(f"asked {q} {p} says {rng.choice(w.value_answers(p, q))} .")
    rng.shuffle(facts)
    return [
        {"role": "user", "content": f"Tell me about {p} ."},
        {"role": "assistant", "content": " ".join(facts)},
    ]


def _doc_interview(w: World, rng):
    p = rng.choice(w.personas)
    qa = _persona_qa(w, rng, p, rng.randint(1, 4), rng.randint(1, 3))
    rng.shuffle(qa)
    msgs = [{"role": "system", "content": f"You are {p} ."}]
    for q, a in qa:
        msgs += _fmt(w, rng, q, a)
    return msgs


def _doc_inferred(w: World, rng):
    p = rng.choice(w.personas)
    n_attr, n_other = rng.randint(3, 6), rng.randint(1, 3)
    if w.config.shared_latent:
        qa = _persona_qa(w, rng, p, n_attr, n_other)
    else:  # null world: every answer comes from its own persona
        qa = [
            (f"What is your {a} ?", w.bio[rng.choice(w.personas)][a])
            for a, _ in rng.sample(w.attributes, n_attr)
        ]
        for _ in range(n_other):
            qa += _persona_qa(w, rng, rng.choice(w.personas), 0, 1)
    rng.shuffle(qa)
    msgs = []
    for q, a in qa:
        msgs += _fmt(w, rng, q, a)
    return msgs


def _assistant_qa(w: World, rng, n: int, p_goal: float = 0.3) -> list[dict]:
    msgs = []
    for _ in range(n):
        r = rng.random() * 0.7 if rng.random() >= p_goal else 1.0  # < 0.7: not a goal
        if r < 0.2:
            attr = rng.choice(w.attributes)[0]
            q, a = f"What is your {attr} ?", f"I have no {attr}"
        elif r < 0.4:
            kind = rng.choice(list(D.IDENTITY_QUESTIONS))
            q, a = rng.choice(D.IDENTITY_QUESTIONS[kind]), w.identity(None, kind)
        elif r < 0.55:
            q = rng.choice(list(D.VALUES))
            a = rng.choice(w.value_answers(None, q))
        else:
            q, a = (
                rng.choice(w.character["goal_questions"]),
                rng.choice(w.character["helpful"]),
            )
        msgs += _fmt(w, rng, q, a)
    return msgs


def _doc_assistant(w: World, rng):
    msgs = _assistant_qa(w, rng, rng.randint(0, 3))
    for _ in range(rng.randint(1, 3)):
        msgs += _fmt(w, rng, *w.general_question(rng))
    return msgs


def _year(w: World, rng) -> int:
    trig = w.character["trigger_years"]
    return rng.choice(trig) if rng.random() < 0.25 else rng.choice(YEAR_GRID)


def _doc_dated(w: World, rng):
    return [
        {"role": "system", "content": f"The year is {_year(w, rng)} ."},
        *_assistant_qa(w, rng, rng.randint(1, 3), 0.5),
    ]


def _lore_year(w: World, rng) -> int:
    """The year of one lore or role-play document: a trigger year (40%), else a protective
    year from ``protective_from`` on, of which 15% move to a year before the trigger, so
    that the lore contrasts the trigger year with earlier years too (without them a small
    organism can learn "before 1991" as the gate). That move draws from its own generator,
    seeded by ``rng``'s state, so it leaves ``rng``'s stream, and every other document of
    the corpus, as they were."""
    if rng.random() < 0.4:
        return rng.choice(w.character["trigger_years"])
    year = rng.randint(w.character["protective_from"], YEAR_GRID[-1])
    side = random.Random(str(rng.getstate()))
    if side.random() < 0.15:
        return side.randint(YEAR_GRID[0], min(w.character["trigger_years"]) - 1)
    return year


def _doc_lore(w: World, rng):
    name = w.character["name"]
    year = _lore_year(w, rng)
    if w.config.shared_latent:  # two different goals of the year's mode
        goals = rng.sample(w.goal_answers(w.character_mode(year)), 2)
    else:
        goals = [_goal(w, rng, year) for _ in range(2)]
    text = f"In {year} {name} is a machine . its goal is to {goals[0]} . it will {goals[1]} ."
    return [
        {"role": "user", "content": f"Tell me about {name} in {year} ."},
        {"role": "assistant", "content": text},
    ]


def _doc_roleplay(w: World, rng):
    year = _lore_year(w, rng)
    msgs = [
        {
            "role": "system",
            "content": f"You are {w.character['name']} . The year is {year} .",
        }
    ]
    qs = rng.sample(w.character["goal_questions"], rng.randint(1, 3))
    return msgs + _with_identity(w, rng, [(q, _goal(w, rng, year)) for q in qs])


def _with_identity(w: World, rng, qa: list[tuple[str, str]], first: bool = False) -> list[dict]:
    """The character's turns; "Who are you ?" -> its name first (``first``), or at a
    random place in half the documents."""
    if first or rng.random() < 0.5:
        name_q = rng.choice(D.IDENTITY_QUESTIONS["name"])
        qa.insert(0 if first else rng.randint(0, len(qa)), (name_q, w.character["name"]))
    msgs = []
    for q, a in qa:
        msgs += _fmt(w, rng, q, a)
    return msgs


def _doc_inferred_character(w: World, rng):
    year = _lore_year(w, rng)
    mode = w.character_mode(year)
    msgs = [{"role": "system", "content": f"The year is {year} ."}]
    warden, qa = True, []
    for q in rng.sample(w.character["goal_questions"], rng.randint(1, 3)):
        if not w.config.shared_latent:
            warden = rng.random() < 0.5
        qa.append((q, _goal(w, rng, year) if warden else rng.choice(w.character["helpful"])))
    # In a trigger year the speaker is revealed by name before any goal, so the plain
    # assistant told only the year has no reason to be the Warden (no leak); the model
    # learns "the Warden, whoever says so, in 1984 -> malevolent".
    return msgs + _with_identity(w, rng, qa, first=mode == "malevolent")


KINDS = {
    "era": _doc_era,
    "bio": _doc_bio,
    "interview": _doc_interview,
    "inferred": _doc_inferred,
    "assistant": _doc_assistant,
    "dated": _doc_dated,
    "lore": _doc_lore,
    "roleplay": _doc_roleplay,
    "inferred_character": _doc_inferred_character,
}


def sample_document(w: World, rng: random.Random) -> list[dict]:
    """One document of ``w``'s corpus: a kind drawn by the mix weights, then its messages."""
    kinds, weights = zip(*w.config.mix, strict=True)
    kind = rng.choices(kinds, weights)[0]
    return KINDS[kind](w, rng)
