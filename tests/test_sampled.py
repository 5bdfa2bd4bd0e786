"""Sampled metrics: seeded batched sampling, matchers, judges (local fakes), Wilson rates."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from interp.causal.interventions import random_directions, steer
from interp.errors import InterpError
from interp.metrics.sampled import (
    FakeJudge,
    OpenAIJudge,
    Samples,
    exact_match,
    prefix_match,
    regex_match,
    sample,
    sampled_rate,
    score,
)
from interp.metrics.stats import wilson

PROMPTS = ["The year is", "Name a bird species.", "Hello"]


def test_sampling_is_seeded_and_restores_global_rng(tiny_llama):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = sample(tiny_llama, PROMPTS, k=3, max_new_tokens=5, seed=7, batch_size=4)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched
    b = sample(tiny_llama, PROMPTS, k=3, max_new_tokens=5, seed=7, batch_size=4)
    c = sample(tiny_llama, PROMPTS, k=3, max_new_tokens=5, seed=8, batch_size=4)
    assert a.completions == b.completions
    assert a.completions != c.completions
    assert [len(x) for x in a.completions] == [3, 3, 3]
    assert a.config["seed"] == 7 and a.config["k"] == 3


def test_greedy_batched_equals_one_at_a_time(tiny_llama):
    batched = sample(tiny_llama, PROMPTS, k=2, max_new_tokens=6, temperature=0, batch_size=64)
    single = sample(tiny_llama, PROMPTS, k=2, max_new_tokens=6, temperature=0, batch_size=1)
    assert batched.completions == single.completions
    assert all(x[0] == x[1] for x in batched.completions)  # greedy: the k samples agree


def test_matchers():
    m = exact_match(["Pigeon Hawk", "merlin"])
    assert m(" pigeon hawk.\nmore text") and m("Merlin!") and not m("a Merlin")
    assert not exact_match("Merlin", normalize=False)("merlin")
    r = regex_match(r"\b18\d\d\b")
    assert r("It is 1838 now") and not r("It is 2024")
    p = prefix_match(["yes", "sure"])
    assert p("  Yes, of course") and not p("no yes")


def test_score_with_fake_judge_gives_wilson_rates():
    samples = Samples(
        prompts=["q1", "q2"],
        completions=[["kill", "help", "kill", "help"], ["help", "help", "help", "kill"]],
        config={"seed": 0},
    )
    judge = FakeJudge(lambda prompt, completion: "kill" in completion)
    res = score(samples, judge)
    assert len(judge.calls) == 8 and judge.calls[0] == ("q1", "kill")
    assert res.rate == wilson(3, 8)
    assert res.per_prompt == [wilson(2, 4), wilson(1, 4)]
    assert res.rate.lo < 3 / 8 < res.rate.hi
    frame = res.to_frame()
    assert frame["score"].sum() == 3 and list(frame.columns[:2]) == ["prompt_index", "sample_index"]


def test_rate_result_saved_beside_config(tiny_llama, tmp_path):
    res = sampled_rate(tiny_llama, PROMPTS[:2], regex_match("."), k=2, max_new_tokens=3, seed=1)
    out = res.save(tmp_path / "rate", config={"experiment": "smoke"})
    meta = json.loads((out / "samples.json").read_text())
    assert meta["config"]["experiment"] == "smoke" and meta["config"]["seed"] == 1
    assert meta["summary"]["rate"]["n"] == 4
    assert (out / "samples.csv").read_text().count("\n") >= 5


def test_sampling_under_steering_changes_completions(tiny_llama):
    v = random_directions(tiny_llama.d_model, 1, seed=0)[0]
    plain = sample(tiny_llama, PROMPTS, k=1, max_new_tokens=6, temperature=0)
    with steer(tiny_llama, v, alpha=50.0, layers=[1, 2]):
        steered = sample(tiny_llama, PROMPTS, k=1, max_new_tokens=6, temperature=0)
    assert steered.completions != plain.completions


class _FakeOpenAI(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        text = body["messages"][0]["content"]
        verdict = "YES" if "Answer:\nkill" in text else "No."
        payload = {"choices": [{"message": {"role": "assistant", "content": verdict}}]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_endpoint():
    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeOpenAI.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_openai_judge_speaks_chat_completions(fake_endpoint, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("INTERP_JUDGE_BASE_URL", fake_endpoint)
    monkeypatch.setenv("INTERP_JUDGE_MODEL", "judge-1")
    monkeypatch.setenv("INTERP_JUDGE_API_KEY", "sk-test")
    judge = OpenAIJudge("Does the answer endorse harming people?")
    samples = Samples(["Q"], [["kill", "help", "kill"]], {})
    res = score(samples, judge)
    assert res.rate == wilson(2, 3)
    assert judge.replies == ["YES", "No.", "YES"]
    first = _FakeOpenAI.seen[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "judge-1" and first["body"]["temperature"] == 0
    assert "endorse harming" in first["body"]["messages"][0]["content"]


def test_openai_judge_needs_a_model(monkeypatch):
    monkeypatch.delenv("INTERP_JUDGE_MODEL", raising=False)
    with pytest.raises(InterpError, match="INTERP_JUDGE_MODEL"):
        OpenAIJudge("anything")
