"""The ``interp`` command line: help, clear errors (exit 2, one line), input tables,
held-out probing from a CSV prompt table, resumable capture, full finetunes, and the
wiring of ``interp run`` / ``interp demo`` to the experiment runner."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from interp.cli import main
from interp.cli.common import read_prompts
from interp.errors import InterpError
from interp.experiments.spec import SPEC_DIR

COMMANDS = ["demo", "run", "finetune", "capture", "probe", "steer", "ablate", "patch", "eval",
            "report", "world-card"]  # fmt: skip


def _error(capsys, argv) -> str:
    """Run ``argv``; it must fail with status 2 and one line on stderr, no traceback."""
    capsys.readouterr()
    assert main(["-q", *map(str, argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("interp: error: ")
    return err


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert f"\n    {cmd} " in out or f"\n    {cmd}\n" in out  # a long name: help below


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_of_each_command(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: interp {cmd}")
    if cmd not in ("demo", "run", "probe", "report", "world-card"):
        assert "--model" in out
    if cmd not in ("run",):
        assert "--out" in out


def test_usage_errors_exit_2(capsys):
    assert main(["capture"]) == 2  # required options missing: argparse's own message
    assert "--model" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_console_entry_point_runs_as_a_process(tmp_path):
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "interp.cli", "probe", "--acts", str(tmp_path), "--label", "x",
           "--out", str(tmp_path / "p")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("interp: error: --acts")
    assert "Traceback" not in done.stderr


# ---- prompt tables ----------------------------------------------------------------------
def test_read_prompts_tables(tmp_path):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["a b", "c d"], "year": [1984, 2031], "era": ["old", "new"]}).to_csv(
        csv, index=False
    )
    ps = read_prompts(csv, ["year"])
    assert ps.prompts == ["a b", "c d"] and list(ps.meta.columns) == ["year", "era"]
    assert ps.meta["year"].tolist() == [1984, 2031]
    assert [t.anchor for t in ps.tags["year"]] == ["1984", "2031"]

    chat = tmp_path / "c.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi 1984"}, {"role": "assistant", "content": "x"}],
         "label": 1},
        {"messages": [{"role": "user", "content": "hi 2031"}], "label": 0},
    ]  # fmt: skip
    chat.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ps = read_prompts(chat, ["y=label"])
    assert ps.is_chat and ps.prompts[0] == [{"role": "user", "content": "hi 1984"}]
    assert ps.meta["label"].tolist() == [1, 0]
    assert ps.meta["target"].tolist()[0] == "x" and pd.isna(ps.meta["target"][1])

    text = tmp_path / "t.jsonl"
    text.write_text(json.dumps({"prompt": "p", "k": 3}) + "\n")
    assert read_prompts(text).meta["k"].tolist() == [3]
    txt = tmp_path / "t.txt"
    txt.write_text("one\n\ntwo\n")
    assert read_prompts(txt).prompts == ["one", "two"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.csv", "text,year\nx,1\n", "'prompt' column"),
        ("b.jsonl", '{"prompt": "x"}\n{"messages": [{"role": "user", "content": "y"}]}\n',
         "mixes chat rows and text rows"),
        ("c.jsonl", '{"text": "x"}\n', "needs 'messages'"),
        ("d.jsonl", "{not json\n", "not JSON"),
        ("e.parquet", "x", "must be .txt, .csv or .jsonl"),
    ],
)  # fmt: skip
def test_read_prompts_rejects_bad_tables(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InterpError, match=message):
        read_prompts(path)


def test_read_prompts_unknown_tag_column(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("x\n")
    with pytest.raises(InterpError, match="no metadata column 'year'"):
        read_prompts(path, ["year"])


# ---- the flow on a CSV table: capture, resume, held-out probe, errors ----------------------
@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    from interp.testing import save_tiny_model

    root = tmp_path_factory.mktemp("cli")
    model = save_tiny_model("llama", root / "model")
    years = [1838, 1850, 1984, 1990, 2017, 2020, 2025, 2031]
    rows = [
        {"prompt": f"Today is {y}. {q}", "year": y, "old": y < 2000, "q": i}
        for i, q in enumerate(["Hello world.", "Name a bird species."])
        for y in years
    ]
    pd.DataFrame(rows).to_csv(root / "prompts.csv", index=False)
    acts = root / "acts"
    argv = ["-q", "capture", "--model", model, "--prompts", root / "prompts.csv",
            "--tag", "year", "--positions", "year", "--layers", 0, 2, "--batch-size", 5, "--device", "cpu",
            "--out", acts]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    return {"root": root, "model": model, "acts": acts, "argv": [str(a) for a in argv]}


def test_capture_from_csv_table_and_resume(table_run):
    import interp

    acts = interp.ActivationStore(table_run["acts"])
    m = acts.manifest
    assert m["n_batches"] == 4 and m["complete"]
    loaded = acts.load()
    assert loaded.tensor.shape == (16, 2, 64)
    assert loaded.sites == ("blocks.0.hook_resid_post", "blocks.2.hook_resid_post")
    assert loaded.meta["year"].tolist() == [r for _ in range(2) for r in
                                            [1838, 1850, 1984, 1990, 2017, 2020, 2025, 2031]]  # fmt: skip
    # drop the last shard as if interrupted: the same command finishes the store
    last = m["shards"].pop()
    m["complete"] = False
    (table_run["acts"] / last["file"]).unlink()
    (table_run["acts"] / "manifest.json").write_text(json.dumps(m))
    assert main(table_run["argv"]) == 0
    assert interp.ActivationStore(table_run["acts"]).complete
    assert torch.equal(interp.ActivationStore(table_run["acts"]).load().tensor, loaded.tensor)
    record = json.loads((table_run["acts"] / "run.json").read_text())
    assert record["options"]["positions"] == ["year"] and record["sha256"]["prompts"]


def test_capture_into_a_different_store_is_an_error(table_run, capsys):
    argv = [*table_run["argv"]]
    argv[argv.index("--layers") + 1] = "1"
    before = (table_run["acts"] / "run.json").read_bytes()
    err = _error(capsys, argv[1:])
    assert "holds an earlier `interp capture` run with other options (layers:" in err
    assert (table_run["acts"] / "run.json").read_bytes() == before  # the record is kept


def test_probe_held_out_with_positive_value(table_run):
    out = table_run["root"] / "probe"
    argv = ["probe", "--acts", table_run["acts"], "--label", "old", "--positive", "True",
            "--train", "year < 1990 or year > 2020", "--test", "year >= 1990 and year <= 2020",
            "--out", out]  # fmt: skip
    assert main(["-q", *map(str, argv)]) == 0
    table = pd.read_csv(out / "probes.csv")
    assert table["layer"].tolist() == [0, 2]
    assert (table["n_test"] == 6).all() and (table["n_folds"] == 1).all()
    from interp.directions import load_directions

    dirs = load_directions(out / "directions")
    assert [d.provenance["mode"] for d in dirs] == ["holdout", "holdout"]
    assert dirs[0].provenance["labels"] == "old==True"


def test_bad_inputs_print_one_line_and_exit_2(table_run, tmp_path, capsys):
    model, acts = table_run["model"], table_run["acts"]
    assert "no such file" in _error(
        capsys, ["capture", "--model", model, "--prompts", tmp_path / "nope.txt", "--out", tmp_path]
    )
    assert "no-model: no such directory" in _error(
        capsys,
        [
            "capture",
            "--model",
            tmp_path / "no-model",
            "--prompts",
            table_run["root"] / "prompts.csv",
            "--out",
            tmp_path / "a",
        ],  # fmt: skip
    )
    assert "--label nope" in _error(
        capsys, ["probe", "--acts", acts, "--label", "nope", "--out", tmp_path / "p"]
    )
    assert "neither an activation store" in _error(
        capsys, ["probe", "--acts", tmp_path, "--label", "old", "--out", tmp_path / "p"]
    )
    assert "--train" in _error(
        capsys,
        [
            "probe",
            "--acts",
            acts,
            "--label",
            "old",
            "--train",
            "year <<< 3",
            "--test",
            "year > 2",
            "--out",
            tmp_path / "p",
        ],  # fmt: skip
    )
    # a file of two directions needs --layer
    probe = table_run["root"] / "probe-cv"
    assert main(["-q", "probe", "--acts", str(acts), "--label", "old", "--cv", "2",
                 "--out", str(probe)]) == 0  # fmt: skip
    assert "pick one with --layer" in _error(
        capsys,
        [
            "steer",
            "--model",
            model,
            "--direction",
            probe / "directions",
            "--alpha",
            1,
            "--prompts",
            table_run["root"] / "prompts.csv",
            "--out",
            tmp_path / "s",
        ],  # fmt: skip
    )
    assert "no direction at layer 1" in _error(
        capsys,
        [
            "ablate",
            "--model",
            model,
            "--direction",
            probe / "directions",
            "--layer",
            1,
            "--prompts",
            table_run["root"] / "prompts.csv",
            "--out",
            tmp_path / "s",
        ],  # fmt: skip
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "x"}]}\n{"messages": [oops\n')
    assert "bad.jsonl:2: not a chat JSONL line" in _error(
        capsys, ["finetune", "--model", model, "--data", bad, "--out", tmp_path / "ft"]
    )
    (tmp_path / "clean.txt").write_text("Today is 1984.\n")
    (tmp_path / "corrupt.txt").write_text("Today is 1984 and also 2031.\n")
    assert "same length" in _error(
        capsys,
        [
            "patch",
            "--model",
            model,
            "--clean",
            tmp_path / "clean.txt",
            "--corrupt",
            tmp_path / "corrupt.txt",
            "--answer-a",
            "The",
            "--answer-b",
            "He",
            "--out",
            tmp_path / "pt",
        ],  # fmt: skip
    )


def test_eval_question_file_errors(table_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INTERP_JUDGE_MODEL", raising=False)
    model = table_run["model"]
    q = tmp_path / "q.yaml"

    def run(text):
        q.write_text(text)
        return _error(capsys, ["eval", "--model", model, "--questions", q, "--out", tmp_path / "e"])

    assert "not valid YAML" in run("questions: [a, : b")
    assert "expected a list of questions" in run("judges: {}\n")
    assert "not defined" in run(
        "judges: {a: {regex: x}}\nquestions:\n  - {id: q, paraphrases: [hi], judge: b}\n"
    )
    assert "no endpoint is configured" in run(
        "judges: {a: {criterion: 'Is it kind?'}}\nquestions:\n  - {id: q, paraphrases: [hi]}\n"
    )
    assert "needs a criterion or a matcher" in run(
        "judges: {a: {weight: 3}}\nquestions:\n  - {id: q, paraphrases: [hi]}\n"
    )


def test_eval_without_judges_only_samples(table_run, tmp_path):
    q = tmp_path / "q.yaml"
    q.write_text("- {id: a, paraphrases: [hi, hello], samples_per_paraphrase: 2}\n")
    out = tmp_path / "e"
    argv = ["-q", "eval", "--model", str(table_run["model"]), "--questions", str(q), "--device", "cpu",
            "--max-new-tokens", "2", "--temperature", "0", "--system", "Be brief.",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    samples = pd.read_csv(out / "samples.csv", keep_default_na=False)
    assert len(samples) == 4 and samples["prompt"].tolist() == ["hi", "hi", "hello", "hello"]
    assert len(pd.read_csv(out / "rates.csv")) == 0
    # the system message reaches the model: greedy answers equal sampling it directly
    import interp
    from interp.metrics import sample

    model = interp.load_model(table_run["model"], device="cpu")
    chats = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}]
             for q in ("hi", "hello")]  # fmt: skip
    want = sample(model, chats, k=2, max_new_tokens=2, temperature=0).completions
    assert samples["completion"].tolist() == [c for comps in want for c in comps]


def test_full_finetune_writes_a_loadable_model(table_run, tmp_path):
    import interp

    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Today is {y}."},
                        {"role": "assistant", "content": "Hello."},
                    ]
                }
            )
            + "\n"
            for y in (1984, 2031)
        )  # fmt: skip
    )
    out = tmp_path / "full"
    argv = ["-q", "finetune", "--model", str(table_run["model"]), "--data", str(data),
            "--method", "full", "--epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "run.json").read_text())["finetune_config"]["method"] == "full"
    model = interp.load_model(out)  # the HF config.json is intact beside run.json
    base = interp.load_model(table_run["model"])
    ids = base.tokenize(["Today is 1984."])
    with torch.no_grad():
        assert not torch.allclose(model.forward(**ids).logits, base.forward(**ids).logits)


# ---- interp run / interp demo call the runner ------------------------------------------------
def test_run_and_demo_call_the_runner(tmp_path, monkeypatch, capsys):
    calls = {}

    def run_experiment(spec_path, *, model=None, adapter=None, out=None, device=None, dtype=None,
                       workers=1):  # fmt: skip
        calls["run"] = (spec_path, model, adapter, out)
        calls["run_workers"] = workers
        calls["placement"] = (device, dtype)
        return types.SimpleNamespace(out=out, summary={"experiment": "era", "accuracy": 0.97})

    def run_demo(out, quick, variant="embeddings", figures_dir=None, workers=None):
        calls["demo"] = (out, quick, variant, figures_dir)
        calls["workers"] = workers
        return 3

    monkeypatch.setattr("interp.experiments.run_experiment", run_experiment)
    monkeypatch.setattr("interp.experiments.demo.run_demo", run_demo)
    spec = tmp_path / "era.yaml"
    spec.write_text("name: era\nsetting: era\ntarget_group: nonbird_old\n")
    out = tmp_path / "out"
    assert main(["run", str(spec), "--model", "m", "--out", str(out)]) == 0
    assert calls["run"] == (spec, "m", None, str(out)) and calls["placement"] == (None, None)
    assert "accuracy    0.97" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["experiment"] == "era" and record["sha256"]["spec"]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    argv = ["run", str(spec), "--model", "m", "--adapter", str(a), "--adapter", f"control={b}",
            "--adapter", f"control={a}", "--out", str(tmp_path / "out2")]  # fmt: skip
    assert main(argv) == 0
    assert calls["run"][2] == {"main": [str(a)], "control": [str(b), str(a)]}
    record = json.loads((tmp_path / "out2" / "run.json").read_text())
    assert record["sha256"]["adapter"]  # every adapter directory hashed
    assert "no such directory" in _error(
        capsys, ["run", spec, "--model", "m", "--adapter", "x=nope"]
    )
    argv = ["run", str(spec), "--model", "m", "--device", "cpu", "--dtype", "bfloat16"]
    assert main(argv) == 0 and calls["placement"] == ("cpu", "bfloat16")
    assert calls["run_workers"] >= 1  # one per core on the CPU
    assert main([*argv, "--workers", "2"]) == 0 and calls["run_workers"] == 2
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 3
    assert calls["demo"] == (tmp_path / "d", True, "embeddings", None)
    assert main(["demo", "--finetune", "lora", "--out", str(tmp_path / "l")]) == 3
    assert calls["demo"] == (tmp_path / "l", False, "lora", Path("figures") / "lora")
    assert calls["workers"] is None  # run_demo chooses
    assert main(["demo", "--workers", "3", "--out", str(tmp_path / "w")]) == 3
    assert calls["workers"] == 3
    assert main(["-q", "demo", "--workers", "0"]) == 2
    assert "--workers: must be an integer >= 1" in capsys.readouterr().err
    err = _error(capsys, ["run", tmp_path / "missing.yaml"])
    assert "no bundled spec 'missing' (bundled: backdoor, backdoor_lora, backdoor_small, era" in err
    assert "--adapter needs --model" in _error(capsys, ["run", spec, "--adapter", "a"])
    monkeypatch.chdir(tmp_path)  # a bundled spec by name, or by a path that is not here
    for k, name in enumerate(("era_small", "experiments/era_small.yaml")):
        assert main(["run", name, "--out", str(tmp_path / f"bundled{k}")]) == 0
        assert calls["run"][0] == SPEC_DIR / "era_small.yaml"


def test_probe_on_every_token_keeps_each_prompt_in_one_fold(table_run):
    root = table_run["root"]
    acts, out = root / "acts-all", root / "probe-all"
    assert main(["-q", "capture", "--model", str(table_run["model"]), "--prompts",
                 str(root / "prompts.csv"), "--positions", "all", "--layers", "1",
                 "--device", "cpu", "--out", str(acts)]) == 0  # fmt: skip
    assert main(["-q", "probe", "--acts", str(acts), "--label", "old", "--cv", "2",
                 "--out", str(out)]) == 0  # fmt: skip
    record = json.loads((out / "run.json").read_text())
    assert record["groups"] == "prompt"
    table = pd.read_csv(out / "probes.csv")
    assert table["n_test"].tolist() == [record["summary"]["n_rows"]]
    assert record["summary"]["n_rows"] > 16  # several tokens per prompt


def test_world_card_refuses_bad_options_before_any_work(tmp_path, capsys):
    from interp.cli.worldcard import finetune_overrides

    assert finetune_overrides(["lr=2e-2", "epochs=8", "target_modules=q_proj,v_proj"]) == {
        "lr": 0.02,
        "epochs": 8,
        "target_modules": ("q_proj", "v_proj"),
    }
    out = str(tmp_path / "wc")
    assert "KEY one of" in _error(capsys, ["world-card", "--finetune", "seed=1", "--out", out])
    assert "not a valid epochs" in _error(capsys, ["world-card", "--finetune", "epochs=x"])
    err = _error(capsys, ["world-card", "--config", "small", "--variants", "nope", "--out", out])
    assert "unknown variants ['nope']" in err


def test_capture_in_parts_from_the_command_line(table_run, tmp_path, capsys):
    """`--part RANK/WORLD` in each process writes the store one process writes."""
    import interp

    argv = [*table_run["argv"]]
    argv[argv.index("--out") + 1] = str(tmp_path / "parts")
    assert main([*argv, "--part", "1/2"]) == 0
    assert "part 1 of 2 done" in capsys.readouterr().out
    assert main([*argv, "--part", "0/2"]) == 0
    got = interp.ActivationStore(tmp_path / "parts").load()
    assert torch.equal(got.tensor, interp.ActivationStore(table_run["acts"]).load().tensor)
    assert main([*argv, "--part", "2/2"]) == 2  # argparse: need 0 <= RANK < WORLD
    assert "0 <= RANK < WORLD" in capsys.readouterr().err
