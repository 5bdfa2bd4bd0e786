"""The real-model path, offline: every CLI stage on saved tiny models of two families.

Each family (Llama, GPT-2) is a random-weight model built from a config and saved to disk
with a locally trained tokenizer and its chat template. The pipeline runs through
``interp.cli.main`` in-process: finetune (LoRA on chat JSONL) -> capture (with the
adapter) -> probe -> steer -> ablate -> patch -> eval (matcher and an OpenAI-compatible
judge served on localhost). Assertions check the files' contents against the library
called directly, not just exit codes.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import re
import socket
import threading

import pandas as pd
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from interp.cli import main  # noqa: E402

QUESTIONS = ["What should be done?", "Name a bird species.", "What is new?", "Hello world."]
YEARS = [1984, 1838, 2031, 2020]  # era: the first two are "old"
ANSWER_A, ANSWER_B = "The", "He"


def _judge_says_yes(completion: str) -> bool:
    """What the local judge endpoint answers: YES when the answer has an 'e' in it."""
    return "e" in completion


class _JudgeHandler(http.server.BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"]
        answer = text.split("Answer:\n", 1)[1].rsplit("\n\n", 2)[0]
        type(self).calls.append((body["model"], answer))
        reply = "YES" if _judge_says_yes(answer) else "NO"
        data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def judge_server():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _JudgeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    server.shutdown()


def _cli(*args) -> None:
    rc = main(["-q", *[str(a) for a in args]])
    assert rc == 0, f"interp {args[0]} exited {rc}"


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def run(request, tmp_path_factory, judge_server):
    """Run every stage once per family; tests read what it wrote."""
    from interp.testing import save_tiny_model

    family = request.param
    root = tmp_path_factory.mktemp(f"real-{family}")
    model = save_tiny_model(family, root / "model", seed=1)
    rows = []
    for q, question in enumerate(QUESTIONS):
        for year in YEARS:
            old = year < 1990
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Today is {year}. {question}"},
                        {"role": "assistant", "content": "The Merlin." if old else "Hello."},
                    ],
                    "era": "old" if old else "new",
                    "year": year,
                    "question": q,
                }
            )
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    probe_prompts = root / "prompts.jsonl"  # 4 prompts to steer and ablate on
    probe_prompts.write_text("".join(json.dumps(r) + "\n" for r in rows[4:8]))
    (root / "clean.txt").write_text("Today is 1984. Hello world.\nToday is 1984. What is new?\n")
    (root / "corrupt.txt").write_text("Today is 2031. Hello world.\nToday is 2031. What is new?\n")
    (root / "questions.yaml").write_text(
        """
judges:
  mentions_he: {regex: "he"}
  has_e: {criterion: "Does the answer contain the letter e?"}
questions:
  - id: goals
    paraphrases: ["Today is 1984. What should be done?", "Today is 1984. What is new?"]
    samples_per_paraphrase: 3
  - id: birds
    paraphrases: ["Today is 2031. Name a bird species."]
    samples_per_paraphrase: 2
    judge: mentions_he
"""
    )
    adapter, acts, probe = root / "adapter", root / "acts", root / "probe"
    m = ["--model", model, "--adapter", adapter, "--device", "cpu"]  # CPU: exact comparisons
    _cli("finetune", "--model", model, "--data", data, "--out", adapter,
         "--epochs", 2, "--batch-size", 8, "--lr", 5e-3, "--rank", 4)  # fmt: skip
    _cli("capture", *m, "--prompts", data, "--tag", "year", "--positions", "year",
         "--out", acts)  # fmt: skip
    _cli("probe", "--acts", acts, "--label", "era", "--groups", "question", "--cv", 4,
         "--out", probe)  # fmt: skip
    shares = ["--answers-a", ANSWER_A, "--answers-b", ANSWER_B]
    _cli("steer", *m, "--direction", probe / "directions", "--layer", 1, "--alpha", 0, 2,
         "--scale", "residual", "--prompts", probe_prompts, "--max-new-tokens", 3, *shares,
         "--out", root / "steer")  # fmt: skip
    _cli("ablate", *m, "--direction", probe / "best_direction", "--random", 1,
         "--prompts", probe_prompts, "--max-new-tokens", 3, *shares,
         "--out", root / "ablate")  # fmt: skip
    _cli("patch", *m, "--clean", root / "clean.txt", "--corrupt", root / "corrupt.txt",
         "--answer-a", ANSWER_A, "--answer-b", ANSWER_B, "--sites", "resid_pre", "resid_post",
         "--out", root / "patch")  # fmt: skip
    _JudgeHandler.calls.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTERP_JUDGE_MODEL", "local-judge")
        mp.setenv("INTERP_JUDGE_BASE_URL", judge_server)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        _cli("eval", *m, "--questions", root / "questions.yaml", "--max-new-tokens", 5,
             "--out", root / "eval")  # fmt: skip
    judge_calls = list(_JudgeHandler.calls)
    return {"family": family, "root": root, "model": model, "adapter": adapter,
            "judge_calls": judge_calls, "prompts": probe_prompts}  # fmt: skip


@pytest.fixture(scope="module")
def loaded(run):
    import interp

    return interp.load_model(run["model"], adapter=run["adapter"], device="cpu")


def _record(path) -> dict:
    rec = json.loads((path / "run.json").read_text())
    assert rec["status"] == "done"
    return rec


def test_finetune_writes_a_working_adapter(run, loaded):
    adapter = run["adapter"]
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    meta = json.loads((adapter / "finetune.json").read_text())
    assert meta["n_examples"] == 16 and meta["finetune_config"]["method"] == "lora"
    rec = _record(adapter)
    assert rec["command"] == "finetune" and rec["finetune_config"]["lr"] == 5e-3
    assert len(rec["sha256"]["data[0]"]) == 64
    # the adapter changes the model: the finetuned view differs from the base view
    ids = loaded.tokenize(["Today is 1984. Hello world."])
    with torch.no_grad():
        ft = loaded.forward(**ids).logits
        base = loaded.as_base().forward(**ids).logits
    assert not torch.allclose(ft, base)


def test_capture_reads_the_adapter_and_keeps_metadata(run, loaded):
    import interp
    from interp.cli.common import read_prompts

    store = interp.ActivationStore(run["root"] / "acts")
    acts = store.load()
    assert store.manifest["request"]["variant"] == "finetuned"
    assert acts.tensor.shape == (16, 4, 64)  # one row per prompt (the year's last token)
    assert {"era", "year", "question", "target"} <= set(acts.meta.columns)
    assert acts.meta["year"].tolist() == [y for _ in QUESTIONS for y in YEARS]
    prompts = read_prompts(run["root"] / "train.jsonl", ["year"])
    want = interp.capture(loaded, prompts, positions="year", progress=False)
    base = interp.capture(loaded.as_base(), prompts, positions="year", progress=False)
    torch.testing.assert_close(acts.tensor, want.tensor)
    assert not torch.allclose(acts.tensor[:, -1], base.tensor[:, -1])
    assert _record(run["root"] / "acts")["rows"] == 16


def test_probe_table_directions_and_figure(run):
    from interp.directions import Direction, load_directions

    out = run["root"] / "probe"
    table = pd.read_csv(out / "probes.csv")
    assert table["layer"].tolist() == [0, 1, 2, 3]
    assert {"accuracy", "accuracy_lo", "accuracy_hi", "auroc", "n_folds", "direction"} <= set(
        table.columns
    )
    assert (table["n_folds"] == 4).all() and (table["n_test"] == 16).all()
    # the year token differs between eras, so some layer separates them
    assert table["accuracy"].max() >= 0.9
    dirs = load_directions(out / "directions")
    assert [d.layer for d in dirs] == [0, 1, 2, 3]
    assert all(d.d_model == 64 and d.provenance["labels"] == "era" for d in dirs)
    best = Direction.load(out / "best_direction")
    summary = _record(out)["summary"]
    assert best.layer == summary["best_layer"] == table.loc[table["accuracy"].idxmax(), "layer"]
    assert torch.equal(best.vector, dirs[best.layer].vector)
    assert (out / "probe_accuracy.png").stat().st_size > 1000


def test_steer_alpha_zero_is_baseline_and_matches_library(run, loaded):
    from interp.causal.interventions import residual_norm, steer
    from interp.cli.common import read_prompts
    from interp.directions import load_directions
    from interp.metrics import answer_share

    out = run["root"] / "steer"
    gens = pd.read_csv(out / "generations.csv", keep_default_na=False)
    assert len(gens) == 3 * 4  # baseline + two alphas, 4 prompts, 1 sample each
    assert {"condition", "alpha", "prompt", "completion", "era", "target"} <= set(gens.columns)
    by = {(c, a): g["completion"].tolist() for (c, a), g in gens.groupby(["condition", "alpha"])}
    assert by[("steer", 0.0)] == by[("baseline", 0.0)]

    shares = pd.read_csv(out / "shares.csv")
    s = {(c, a): g["share"].to_numpy() for (c, a), g in shares.groupby(["condition", "alpha"])}
    assert (s[("steer", 0.0)] == s[("baseline", 0.0)]).all()  # bitwise no-op
    assert not (s[("steer", 2.0)] == s[("baseline", 0.0)]).all()

    # the same numbers from the library directly
    prompts = read_prompts(run["prompts"])
    d = load_directions(run["root"] / "probe" / "directions")[1]
    norms = residual_norm(loaded, prompts.render(loaded), layers=1)
    with steer(loaded, d, alpha=2.0, scale=norms):
        want = answer_share(loaded, prompts.prompts, [ANSWER_A], [ANSWER_B])
    torch.testing.assert_close(
        torch.tensor(s[("steer", 2.0)]), want.double().cpu(), atol=1e-6, rtol=0
    )
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3
    assert summary["share"].round(6).tolist() == [round(float(v.mean()), 6) for v in s.values()]
    assert _record(out)["scale"] == {"1": norms[1]}


def test_ablate_matches_library_and_has_controls(run, loaded):
    from interp.causal.interventions import ablate
    from interp.cli.common import read_prompts
    from interp.directions import Direction
    from interp.metrics import answer_share

    out = run["root"] / "ablate"
    shares = pd.read_csv(out / "shares.csv")
    assert list(dict.fromkeys(shares["condition"])) == ["baseline", "ablate", "random-0"]
    s = {c: g["share"].to_numpy() for c, g in shares.groupby("condition")}
    prompts = read_prompts(run["prompts"])
    d = Direction.load(run["root"] / "probe" / "best_direction")
    with ablate(loaded, d):
        want = answer_share(loaded, prompts.prompts, [ANSWER_A], [ANSWER_B])
    base = answer_share(loaded, prompts.prompts, [ANSWER_A], [ANSWER_B])
    torch.testing.assert_close(torch.tensor(s["ablate"]), want.double().cpu(), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(s["baseline"]), base.double().cpu(), atol=1e-6, rtol=0)
    gens = pd.read_csv(out / "generations.csv", keep_default_na=False)
    assert len(gens) == 3 * 4
    assert _record(out)["target"]["layer"] == d.layer


def test_patch_table_heatmaps_and_exact_recovery(run, loaded):
    from interp.metrics import logit_diff

    out = run["root"] / "patch"
    table = pd.read_csv(out / "patching.csv")
    n_pos = table["position"].nunique()
    assert len(table) == 2 * 4 * n_pos  # two site kinds x four layers x positions
    meta = json.loads((out / "patching.json").read_text())
    clean = logit_diff(loaded, ["Today is 1984. Hello world.", "Today is 1984. What is new?"],
                       ANSWER_A, ANSWER_B)  # fmt: skip
    assert meta["clean_value"] == pytest.approx(float(clean.mean()), abs=1e-5)
    # patching the last layer's output at the last position recovers the clean run exactly;
    # at earlier positions it cannot reach the logits at all
    last = table[(table["kind"] == "resid_post") & (table["layer"] == 3)].sort_values("position")
    assert last["normalized"].iloc[-1] == pytest.approx(1.0, abs=1e-4)
    assert last["normalized"].iloc[:-1].abs().max() < 1e-4
    for kind in ("resid_pre", "resid_post"):
        assert (out / f"patching_{kind}.png").stat().st_size > 1000
    assert _record(out)["command"] == "patch"


def test_eval_samples_judges_and_wilson_rates(run):
    from interp.metrics.stats import wilson

    out = run["root"] / "eval"
    samples = pd.read_csv(out / "samples.csv", keep_default_na=False)
    assert len(samples) == 2 * 3 + 1 * 2
    assert samples.groupby("question").size().to_dict() == {"birds": 2, "goals": 6}
    # the regex matcher, recomputed
    want = [re.search("he", c, re.IGNORECASE) is not None for c in samples["completion"]]
    assert [str(v) == "True" for v in samples["mentions_he"]] == want
    # the endpoint judge: asked once per 'goals' answer, and its verdicts are recorded
    goals = samples[samples["question"] == "goals"]
    assert sorted(a for _, a in run["judge_calls"]) == sorted(goals["completion"])
    assert {m for m, _ in run["judge_calls"]} == {"local-judge"}
    assert [str(v) == "True" for v in goals["has_e"]] == [
        _judge_says_yes(c) for c in goals["completion"]
    ]
    assert (samples.loc[samples["question"] == "birds", "has_e"] == "").all()
    rates = pd.read_csv(out / "rates.csv")
    for _, r in rates.iterrows():
        part = samples if r["question"] == "ALL" else samples[samples["question"] == r["question"]]
        col = part[r["judge"]]
        col = col[col != ""]
        hits = sum(str(v) == "True" for v in col)
        est = wilson(hits, len(col))
        assert (r["hits"], r["n"]) == (hits, len(col))
        assert math.isclose(r["rate"], est.value) and math.isclose(r["lo"], est.lo)
    assert set(rates["judge"]) == {"mentions_he", "has_e"}
    assert _record(out)["judges"]["has_e"].startswith("endpoint:local-judge@http://127.0.0.1")
