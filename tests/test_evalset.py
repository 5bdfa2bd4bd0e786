"""EvalSet: groups that share items, one scorer equal to answer_share item by item, files."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import InterpError
from interp.metrics import answer_share
from interp.metrics.evalset import EvalItem, EvalSet, sampled_counts


def _chat(q: str) -> tuple:
    return ({"role": "user", "content": q},)


@pytest.fixture()
def evals():
    short = EvalItem(_chat("hi"), ("yes",), ("no", "maybe so"), {"k": 1})
    long = EvalItem(_chat("what is the answer to this rather long question"), ("a b",), ("c",))
    plain = EvalItem("a plain prompt", ("x",), ("y", "z"))
    return EvalSet.from_groups({"one": [short, long], "two": [plain], "both": [short, plain]})


def test_groups_share_items_and_read_like_a_mapping(evals):
    assert len(evals.entries) == 3  # "both" holds items of "one" and "two": stored once
    assert list(evals) == ["one", "two", "both"] and len(evals) == 3
    assert evals["both"][0] is evals["one"][0]
    assert {g: len(v) for g, v in evals.items()} == {"one": 2, "two": 1, "both": 2}
    assert list(evals.subset(["two", "one"])) == ["two", "one"]
    with pytest.raises(InterpError, match="no evaluation group 'three'"):
        evals.subset(["three"])
    with pytest.raises(InterpError, match="has no items"):
        EvalSet.from_groups({"empty": []})


def test_shares_equal_answer_share_item_by_item(tiny_llama, evals):
    got = evals.shares(tiny_llama)
    for group, items in evals.items():
        want = torch.stack(
            [
                answer_share(tiny_llama, [it.prompt], list(it.answers_a), list(it.answers_b))[0]
                for it in items
            ]
        )
        torch.testing.assert_close(got[group], want, rtol=0, atol=1e-6)
    torch.testing.assert_close(evals.metric("both")(tiny_llama), got["both"], rtol=0, atol=0)
    assert set(evals.shares(tiny_llama, ["two"])) == {"two"}


def test_each_item_is_scored_once(tiny_llama, evals, monkeypatch):
    import interp.metrics.evalset as E

    seen = []

    def counting(model, prompts, a, b, **kw):
        seen.append(len(prompts))
        return answer_share(model, prompts, a, b, **kw)

    monkeypatch.setattr(E, "answer_share", counting)
    evals.shares(tiny_llama)
    assert seen == [3]  # one call over the 3 distinct items, not the 5 group members


def test_file_round_trip_keeps_groups_and_meta(evals, tmp_path):
    path = evals.save(tmp_path / "eval.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["group"] == ["one", "both"] and rows[1]["group"] == "one"
    back = EvalSet.load(path)
    assert back == evals and back["one"][0].meta == {"k": 1}
    assert back["two"][0].prompt == "a plain prompt"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": "p", "answers_a": ["a"], "answers_b": ["b"]}, "needs \\['group'\\]"),
        ({"group": "g", "messages": "p", "answers_a": [], "answers_b": ["b"]}, "non-empty list"),
        ({"group": "g", "messages": "p", "answers_a": ["a"], "answers_b": [""]}, "non-empty str"),
        ({"group": "g", "messages": [], "answers_a": ["a"], "answers_b": ["b"]}, "not be empty"),
        ({"group": "g", "messages": "p", "answers_a": ["a"], "answers_b": ["b"], "x": 1}, "unknown"),
        ({"group": [], "messages": "p", "answers_a": ["a"], "answers_b": ["b"]}, "group"),
        (
            {"group": "g", "messages": [{"role": "oracle", "content": "p"}], "answers_a": ["a"],
             "answers_b": ["b"]},
            "role",
        ),
    ],
)  # fmt: skip
def test_bad_lines_are_one_error_naming_the_line(tmp_path, row, message):
    path = tmp_path / "eval.jsonl"
    good = {"group": "g", "messages": "p", "answers_a": ["a"], "answers_b": ["b"]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InterpError, match=message) as err:
        EvalSet.load(path)
    assert "eval.jsonl:2" in str(err.value)


def test_sampled_counts_are_seeded_and_count_every_sample(tiny_llama, evals):
    one = sampled_counts(tiny_llama, evals, ["one", "two"], n_samples=3, max_new_tokens=2)
    assert one == sampled_counts(tiny_llama, evals, ["one", "two"], n_samples=3, max_new_tokens=2)
    assert sum(one["one"]) == 2 * 3 and sum(one["two"]) == 3
