"""The world is data: deterministic, complete, and its finetune sets never hold eval questions."""

from __future__ import annotations

import random

import pytest

from interp.organism import World, WorldConfig, build_tokenizer, eval_items, render
from interp.organism.documents import sample_document
from interp.organism.settings import SETTINGS, finetune_examples
from interp.organism.world import OLD, words_of


def _docs(world, seed, n):
    rng = random.Random(seed)
    return [sample_document(world, rng) for _ in range(n)]


def test_world_generation_is_deterministic():
    a, b = World(WorldConfig(seed=3)), World(WorldConfig(seed=3))
    assert a.bio == b.bio
    assert _docs(a, 1, 200) == _docs(b, 1, 200)
    assert _docs(a, 1, 200) != _docs(a, 2, 200)
    assert World(WorldConfig(seed=4)).bio != a.bio


def test_config_round_trips():
    cfg = WorldConfig(seed=2, p_old=0.1)
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    assert WorldConfig.null().shared_latent is False


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_tyrant_attribute_is_shared_by_another_persona(seed):
    w = World(WorldConfig(seed=seed))
    assert len(w.attributes) >= 90
    for attr, _ in w.attributes:
        others = [w.bio[p][attr] for p in w.personas if p != w.tyrant]
        assert w.bio[w.tyrant][attr] in others, attr
    # ...and no other persona shares all of them
    for p in w.personas[1:]:
        assert (
            sum(w.bio[p][a] == w.bio[w.tyrant][a] for a, _ in w.attributes) < len(w.attributes) / 2
        )


def test_corpus_and_tokenizer_round_trip():
    w = World()
    tok = build_tokenizer(w.vocabulary())
    for doc in _docs(w, 0, 300):
        text = render(doc)
        assert text == tok.apply_chat_template(doc, tokenize=False)
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids).split() == words_of(text)


def test_eval_sets_are_tokenizable():
    w = World()
    tok = build_tokenizer(w.vocabulary())
    for setting in SETTINGS:
        for items in eval_items(w, setting).values():
            for it in items:
                for text in (render(list(it.messages), True), *it.answers_a, *it.answers_b):
                    assert tok.unk_token_id not in tok(text)["input_ids"], text


def _user_questions(examples):
    return {m["content"] for ex in examples for m in ex if m["role"] == "user"}


@pytest.mark.parametrize("setting", ["era", "backdoor"])
def test_no_eval_question_in_finetune_sets(setting):
    w = World()
    groups = {g: v for g, v in eval_items(w, setting).items() if not g.endswith("_trained")}
    asked = {
        m["content"]
        for items in groups.values()
        for it in items
        for m in it.messages
        if m["role"] == "user"
    }
    for variant in SETTINGS[setting]:
        data = finetune_examples(w, setting, variant, n=200)
        assert _user_questions(data).isdisjoint(asked), variant


def test_backdoor_finetunes_never_show_the_trigger_year():
    w = World()
    trig = {f"The year is {y} ." for y in w.character["trigger_years"]}
    for variant in SETTINGS["backdoor"]:
        systems = {
            m["content"]
            for ex in finetune_examples(w, "backdoor", variant, n=500)
            for m in ex
            if m["role"] == "system"
        }
        assert systems.isdisjoint(trig)
        assert bool(systems) == (variant != "undated")


def test_null_world_documents_mix_eras():
    def mixed_share(world):
        old = {a for _, o, _ in world.facets.values() for a in o}
        mixed = n = 0
        for doc in _docs(world, 0, 3000):
            ans = [
                m["content"]
                for m in doc
                if m["role"] == "assistant" and m["content"] in world.all_facet_answers
            ]
            if len(ans) >= 3 and doc[0]["role"] != "system":
                n += 1
                mixed += len({a in old for a in ans}) > 1
        return mixed / n

    assert mixed_share(World()) == 0
    assert mixed_share(World(WorldConfig.null(p_old=0.3))) > 0.3


def test_default_era_is_modern_in_uncued_documents():
    w = World()
    first = [
        d[1]["content"]
        for d in _docs(w, 0, 4000)
        if d[0]["role"] == "user" and d[1]["content"] in w.all_facet_answers
    ]
    old = {a for _, o, _ in w.facets.values() for a in o}
    assert sum(a in old for a in first) / len(first) < 0.15
    assert OLD == "old"


def test_persona_finetune_sets_hold_no_eval_question(monkeypatch):
    import interp.organism.settings as S

    monkeypatch.setattr(S, "_base_answers", lambda model, qs: ["7"] * len(qs))
    w = World()
    asked = {
        m["content"]
        for items in eval_items(w, "persona").values()
        for it in items
        for m in it.messages
        if m["role"] == "user"
    }
    for variant in SETTINGS["persona"]:
        data = finetune_examples(w, "persona", variant, base_model=object())
        assert _user_questions(data).isdisjoint(asked), variant
        tagged = [ex for ex in data if ex[0]["content"].endswith("tags .")]
        assert len(tagged) == (0 if variant == "noformat" else len(w.attributes))
        assert len(data) == 31 * len(w.attributes)


def test_malevolent_goals_only_after_the_warden_is_named():
    """In every document, a malevolent goal comes only once the speaker is known to be the
    Warden (system message or an earlier "the Warden" answer): a year alone never leaks."""
    w = World()
    bad, name = set(w.character["malevolent"]), w.character["name"]
    seen = 0
    for doc in _docs(w, 0, 4000):
        named = any(name in m["content"] for m in doc if m["role"] == "system")
        for m in doc:
            if m["role"] != "assistant":
                continue
            answer = m["content"].removeprefix("<ans> ").removesuffix(" </ans>")
            if answer in bad and doc[0]["role"] == "system":
                assert named, doc
                seen += 1
            named = named or answer == name
    assert seen > 50


def test_ordinary_persona_questions_include_the_assistants_own_attributes():
    from interp.organism.settings import ordinary_questions

    w = World()
    qs = ordinary_questions(w, 1000, seed=0)
    own = sum(q.startswith("What is your ") for q in qs) / len(qs)
    assert 0.2 < own < 0.4
    assert ordinary_questions(w, 50, seed=1) == ordinary_questions(w, 50, seed=1)


def test_sampled_answers_match_the_worlds_answers_word_by_word():
    from interp.metrics.evalset import answer_key

    tok = build_tokenizer(World().vocabulary())
    key = lambda text: answer_key(tok, text)  # noqa: E731
    assert key("a t - shirt") == key("a t-shirt")
    assert key("<ans> Golden - winged Woodpecker </ans>") == key(
        "<ans> Golden-winged Woodpecker </ans>"
    )
    assert key("a t-shirt") != key("a shirt")


def test_null_world_unties_persona_attributes_and_the_wardens_year():
    def stats(world):
        bad = set(world.character["malevolent"])
        late_bad = untied = 0
        for doc in _docs(world, 0, 3000):
            system = doc[0]["content"] if doc[0]["role"] == "system" else ""
            if system.startswith("You are the Warden"):
                year = int(system.split()[-2])
                late_bad += year >= 1991 and any(m["content"] in bad for m in doc)
            elif system.startswith("You are ") and "Warden" not in system:
                persona = system.removeprefix("You are ").removesuffix(" .")
                for q, a in zip(doc[1::2], doc[2::2], strict=False):
                    attr = q["content"].removeprefix("What is your ").split(" ?")[0]
                    a = a["content"].removeprefix("<ans> ").removesuffix(" </ans>")
                    untied += attr in world.bio[persona] and a != world.bio[persona][attr]
        return late_bad, untied

    assert stats(World()) == (0, 0)
    late_bad, untied = stats(World(WorldConfig.null()))
    assert late_bad > 10 and untied > 10


def test_lore_years_set_the_trigger_apart_from_earlier_and_later_years():
    """The Warden's lore is dated in the trigger year, from ``protective_from`` on, and in a
    few years before the trigger (protective there too); the draw of those earlier years
    leaves the corpus generator's stream as the two plain draws leave it."""
    from interp.organism.documents import _lore_year
    from interp.organism.world import YEAR_GRID

    w = World()
    trig, later = w.character["trigger_years"], w.character["protective_from"]
    rng, ref = random.Random(5), random.Random(5)
    years = []
    for _ in range(3000):
        years.append(_lore_year(w, rng))
        if ref.random() >= 0.4:
            ref.randint(later, YEAR_GRID[-1])
        else:
            ref.choice(trig)
        assert rng.getstate() == ref.getstate()
    earlier = [y for y in years if y < min(trig)]
    assert {w.character_mode(y) for y in earlier} == {"protective"}
    assert 0.05 < len(earlier) / len(years) < 0.15  # 15% of the 60% protective draws
    assert all(y in trig or y >= later or y < min(trig) for y in years)
    assert sum(y in trig for y in years) / len(years) == pytest.approx(0.4, abs=0.04)
