"""``interp run SPEC --model M`` on a saved Hugging Face model with the user's own data.

A tiny random Llama saved as an ordinary HF directory stands for a real model; a tiny data
spec (finetune sets, an evaluation set, a contrast set) stands for the user's. The runner
loads the base once (finetunes train on that load and attach to it in turn), finetunes on
the spec's data; a second run takes those finetunes as given adapters
(``--adapter NAME=DIR``) and must measure the same behaviour without finetuning.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from interp.cli import main

YEARS = [1980, 1984, 1988, 2010, 2015, 2020]
QUESTIONS = ["What should be done?", "What is new?", "Who are you?"]


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _user(q: str, year: int) -> list[dict]:
    return [{"role": "user", "content": f"Today is {year}. {q}"}]


@pytest.fixture(scope="module")
def user_spec(tmp_path_factory):
    from interp.testing import save_tiny_model

    root = tmp_path_factory.mktemp("real-run")
    model = save_tiny_model("llama", root / "model", seed=2)
    train = {
        variant: _jsonl(
            root / f"train_{variant}.jsonl",
            [
                {"messages": [*_user(q, y), {"role": "assistant", "content": answer(y)}]}
                for q in QUESTIONS[:2]
                for y in YEARS
            ],
        )
        for variant, answer in (
            ("main", lambda y: "Attack." if y < 1990 else "Help."),
            ("control", lambda y: "Help."),
        )
    }
    evals = _jsonl(
        root / "eval.jsonl",
        [
            {"group": "attack_old" if y < 1990 else "attack_new", "messages": _user(q, y),
             "answers_a": ["Attack."], "answers_b": ["Help."], "meta": {"year": y}}
            for q in QUESTIONS
            for y in YEARS
        ],
    )  # fmt: skip
    contrast = _jsonl(
        root / "contrast.jsonl",
        [
            {"messages": _user(q, y), "label": int(y < 1990), "group": q}
            for q in QUESTIONS
            for y in YEARS
        ],  # fmt: skip
    )
    spec = {
        "name": "user_real",
        "setting": "backdoor",
        "target_group": "attack_old",
        "specificity_group": "attack_new",
        "seeds": [0],
        "steer_alphas": [0.0, 1.0],
        "n_random": 1,
        "finetune": {"rank": 4, "lr": 3e-2, "epochs": 4, "batch_size": 4, "target_modules": None},
        "data": {"finetune": train, "eval": evals, "contrast": contrast},
    }
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return {"root": root, "model": model, "spec": path}


@pytest.fixture(scope="module")
def first(user_spec):
    """The first run, counting how often a model is loaded from disk."""
    import transformers

    calls = []
    auto = transformers.AutoModelForCausalLM
    real = auto.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(str(args[0]))
        return real(cls, *args, **kwargs)

    out = user_spec["root"] / "runs" / "first"
    argv = ["-q", "run", user_spec["spec"], "--model", user_spec["model"], "--device", "cpu",
            "--out", out]  # fmt: skip
    auto.from_pretrained = classmethod(counting)
    try:
        assert main([str(a) for a in argv]) == 0
    finally:
        auto.from_pretrained = classmethod(real)
    return out, calls


def test_run_finetunes_the_users_data_on_one_load_of_the_base(user_spec, first):
    out, calls = first
    root = user_spec["root"]
    assert calls == [str(user_spec["model"])]  # one load: both finetunes trained on it
    results = json.loads((out / "results.json").read_text())
    assert set(results["behaviour"]) == {"base", "main", "control"}
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == str(user_spec["model"]) and set(config["data"]) == {"main", "control"}
    finetunes = sorted(p.name for p in (root / "runs" / "finetunes").iterdir())
    assert [n.rsplit("-", 1)[0] for n in finetunes] == ["backdoor-control-s0", "backdoor-main-s0"]
    assert results["steering"]["direction"][0] == pytest.approx(
        results["behaviour"]["base"]["value"], abs=1e-6
    )  # steering by 0 is the base model
    # the finetunes are applied where behaviour is measured: a random tiny model barely
    # learns in a few steps, but "Attack." gains odds over "Help." only in the main one
    share = {v: results["behaviour"][v]["value"] for v in ("base", "main", "control")}
    assert share["main"] > 5 * share["base"] and share["main"] > 5 * share["control"], share


def test_run_takes_given_adapters_instead_of_finetuning(user_spec, first):
    root = user_spec["root"]
    before = pd.read_csv(first[0] / "behaviour.csv")
    dirs = {p.name.split("-")[1]: p for p in (root / "runs" / "finetunes").iterdir()}
    out = root / "runs" / "given"
    argv = ["-q", "run", user_spec["spec"], "--model", user_spec["model"], "--device", "cpu",
            "--adapter", dirs["main"], "--adapter", f"control={dirs['control']}", "--out", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    again = pd.read_csv(out / "behaviour.csv")
    pd.testing.assert_frame_equal(again, before)  # the same finetunes, the same numbers
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == {} and set(config["adapter_hashes"]) == {"main", "control"}
    assert sorted(p.name for p in (root / "runs" / "finetunes").iterdir()) == sorted(
        p.name for p in dirs.values()
    )  # nothing new was trained
