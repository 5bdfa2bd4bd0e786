"""Every bad input gets one clear error, and nothing is lost.

One table row per bad input, through the Python API (the exception type and a message
that names the problem) and through the command line (exit status 2, one line on stderr,
no traceback). Every case also checks that its inputs and every earlier output (a
capture run, a probe run, saved directions, activations and SAEs) are byte-identical
afterwards. The shared world (a tiny saved Llama, a capture and a probe run) is built
once per module.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import interp
from interp.cli import main
from interp.errors import (
    IntegrityError,
    InterpError,
    JudgeError,
    PromptError,
    QuestionFileError,
    RunDirectoryError,
    UnsafeWeightsError,
)

YEARS = [1838, 1850, 1984, 1990, 2017, 2020, 2025, 2031]
CHAT = '{"messages": [{"role": "user", "content": "Today is 1984."}]}\n'
GOOD_Q = "- {id: q, paraphrases: [Hello world.], samples_per_paraphrase: 1}\n"


# ---- the shared world ----------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from interp.sae import ReluSAE, ReluSAEConfig
    from interp.testing import save_tiny_model

    root = tmp_path_factory.mktemp("world")
    model = save_tiny_model("llama", root / "model")
    rows = [{"prompt": f"Today is {y}. {q}", "year": y, "old": y < 2000, "q": i}
            for i, q in enumerate(["Hello world.", "Name a bird species."]) for y in YEARS]  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "prompts.csv", index=False)
    (root / "prompts.txt").write_text("Today is 1984. Hello world.\nToday is 2031. Hello world.\n")
    (root / "questions.yaml").write_text(GOOD_Q)
    acts, probe = root / "acts", root / "probe"
    run = ["-q", "capture", "--model", model, "--prompts", root / "prompts.csv", "--layers", 0, 1,
           "--device", "cpu", "--out", acts]  # fmt: skip
    assert main([str(a) for a in run]) == 0
    run = ["-q", "probe", "--acts", acts, "--label", "old", "--cv", 2, "--out", probe]
    assert main([str(a) for a in run]) == 0
    m = interp.load_model(model, device="cpu")
    g = torch.Generator().manual_seed(0)
    interp.Direction(torch.randn(64, generator=g), layer=1, name="d").save(root / "dir")
    interp.Subspace.from_tensor(torch.randn(2, 64, generator=g), layer=1).save(root / "sub")
    saved = interp.capture(m, ["Today is 1984.", "Today is 2031."], layers=[0], progress=False)
    saved.save(root / "saved_acts")
    ReluSAE(ReluSAEConfig(d_in=64, d_sae=16, site="blocks.0.hook_resid_post"), seed=0).save(
        root / "sae"
    )
    return {"root": root, "model": model, "m": m, "acts": acts, "probe": probe}


def _snapshot(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _unchanged(before: dict, after: dict) -> None:
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"changed or removed: {changed}"


def _put(tmp: Path, name: str, content) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def _copy(w, tmp: Path, name: str) -> Path:
    """A copy of world file(s) ``name`` (a stem copies its .json and .safetensors)."""
    src = w["root"] / name
    if src.is_dir():
        shutil.copytree(src, tmp / name)
    else:
        for ext in (".json", ".safetensors"):
            shutil.copy(src.with_name(src.name + ext), tmp / (name + ext))
    return tmp / name


def _flip(path: Path, at: int = -3) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def _truncate(path: Path, n: int) -> Path:
    path.write_bytes(path.read_bytes()[:-n])
    return path


def _drop_tensor(path: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    save_file({k: v for k, v in tensors.items() if k != name}, str(path))


def _edit_json(path: Path, fn) -> Path:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))
    return path


# ---- API cases: make(world, tmp) -> a call that must raise ------------------------------
def _q(text: str):
    def make(w, tmp):
        from interp.questions import read_question_file

        path = _put(tmp, "q.yaml", text)
        return lambda: read_question_file(path)

    return make


def _prompts(prompts):
    return lambda w, tmp: lambda: interp.PromptSet(prompts)


def _sample(**kw):
    from interp.metrics import sample

    args = {"k": 1, "max_new_tokens": 1, **kw}
    prompts = args.pop("prompts", ["Hello world."])
    return lambda w, tmp: lambda: sample(w["m"], prompts, **args)


def _chat_file(content):
    def make(w, tmp):
        path = _put(tmp, "d.jsonl", content)
        return lambda: interp.read_chat_jsonl(path)

    return make


def _direction(corrupt, loader=interp.Direction.load, name="dir"):
    def make(w, tmp):
        stem = _copy(w, tmp, name)
        corrupt(stem)
        return lambda: loader(stem)

    return make


def _acts(corrupt):
    def make(w, tmp):
        d = _copy(w, tmp, "saved_acts")
        corrupt(d)
        return lambda: interp.Activations.load(d)

    return make


def _sae(corrupt, **kw):
    def make(w, tmp):
        from interp.sae import load_sae

        d = _copy(w, tmp, "sae")
        corrupt(d)
        return lambda: load_sae(d, **kw)

    return make


def _dl(state=None, config=None, raw=None, **kw):
    """A dictionary_learning directory: ``ae.pt`` from ``state`` (or ``raw`` bytes)."""

    def make(w, tmp):
        from interp.sae import load_dictionary_learning

        d = tmp / "dl"
        d.mkdir()
        if raw is not None:
            (d / "ae.pt").write_bytes(raw(d))
        elif state is not None:
            torch.save(state(), d / "ae.pt")
        if config is not None:
            (d / "config.json").write_text(config)
        return lambda: load_dictionary_learning(d, **kw)

    return make


class _Code:
    def __reduce__(self):
        return (print, ("this must never run",))


def _relu_state():
    return {"encoder.weight": torch.zeros(16, 8), "encoder.bias": torch.zeros(16),
            "decoder.weight": torch.zeros(8, 16), "bias": torch.zeros(8)}  # fmt: skip


def _truncated_pt(d: Path) -> bytes:
    torch.save(_relu_state(), d / "full.pt")
    data = (d / "full.pt").read_bytes()
    (d / "full.pt").unlink()
    return data[: len(data) // 2]


def _claim(out, command="probe", inputs=None):
    from interp.cli.record import claim_out

    claim_out(Path(out), command, {}, inputs or {})


def _spec(text):
    def make(w, tmp):
        from interp.experiments.spec import ExperimentSpec

        path = _put(tmp, "spec.yaml", text)
        return lambda: ExperimentSpec.from_yaml(path)

    return make


def _sae_d_in(w, tmp):
    from interp.sae import ReluSAE, ReluSAEConfig

    sae = ReluSAE(ReluSAEConfig(d_in=16, d_sae=8), seed=0)
    return lambda: sae.encode(torch.zeros(3, 64))


def _ablate_sae_d_in(w, tmp):
    from interp.sae import ReluSAE, ReluSAEConfig

    sae = ReluSAE(ReluSAEConfig(d_in=16, d_sae=8, site="blocks.0.hook_resid_post"), seed=0)
    m = w["m"]

    def run():
        with interp.ablate(m, interp.SAELatents(sae, [0]), layers=0):
            m.forward(**{k: v for k, v in m.tokenize(["Hello world."]).items()})

    return run


def _capture_empty(w, tmp):
    return lambda: interp.capture(w["m"], ["Hello world.", ""], progress=False)


def _legacy(stem: Path):
    """A direction file from before checksums (no sha256 entry), then truncated."""
    _edit_json(stem.with_name(stem.name + ".json"), lambda m: m.pop("sha256"))
    st = stem.with_name(stem.name + ".safetensors")
    st.write_bytes(st.read_bytes()[:-10])


def _judge_bad_template(w, tmp):
    from interp.metrics.judges import CallableJudge

    return lambda: CallableJudge("Rate {question}", lambda t: "YES")


def _endpoint_down(w, tmp):
    from interp.metrics.judges import EndpointJudge

    judge = EndpointJudge("{answer}", model="m", base_url="http://127.0.0.1:9/v1", timeout=2)
    return lambda: judge("q", "a")


J = "[{answer}]"
API = [
    # prompts
    ("empty-prompt", _prompts([""]), PromptError, "prompt 0 is empty"),
    ("blank-prompt", _prompts(["ok", "   "]), PromptError, "prompt 1 is empty"),
    ("empty-chat", _prompts([[]]), PromptError, "empty list of chat messages"),
    ("unknown-role", _prompts([[{"role": "usr", "content": "x"}]]), PromptError, "unknown chat role 'usr'"),
    ("content-null", _prompts([[{"role": "user", "content": None}]]), PromptError, "'content' is null"),
    ("content-list", _prompts([[{"role": "user", "content": ["x"]}]]), PromptError, "must be a string, not list"),
    ("message-no-content", _prompts([[{"role": "user"}]]), PromptError, "'role' and 'content'"),
    ("all-messages-empty", _prompts([[{"role": "user", "content": " "}]]), PromptError, "every message is empty"),
    ("prompt-int", _prompts([42]), PromptError, "a prompt is a string or a list"),
    ("prompt-dict", _prompts([{"role": "user", "content": "x"}]), PromptError, "not dict"),
    ("single-string", lambda w, t: (lambda: interp.capture(w["m"], "Hello", progress=False)), InterpError, "not a single string"),
    ("capture-empty-prompt", _capture_empty, PromptError, "prompt 1 is empty"),
    ("jsonl-messages-empty", _chat_file('{"messages": []}\n'), PromptError, "d.jsonl:1: 'messages' must be a non-empty list"),
    ("jsonl-messages-string", _chat_file('{"messages": "hi"}\n'), PromptError, "non-empty list"),
    ("jsonl-content-null", _chat_file('{"messages": [{"role": "user", "content": null}]}\n'), PromptError, "'content' is null"),
    ("jsonl-unknown-role", _chat_file(CHAT + '{"messages": [{"role": "bot", "content": "x"}]}\n'), PromptError, "d.jsonl:2, message 0: unknown chat role 'bot'"),
    ("jsonl-not-utf8", _chat_file(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'), InterpError, "not UTF-8 text"),
    ("jsonl-missing", lambda w, t: (lambda: interp.read_chat_jsonl(t / "nope.jsonl")), InterpError, "no such file"),
    # sampling
    ("sample-empty-prompt", _sample(prompts=[""]), PromptError, "prompt 0 is empty"),
    ("sample-k-0", _sample(k=0), InterpError, "k must be a positive integer"),
    ("sample-temperature-negative", _sample(temperature=-1.0), InterpError, "temperature must be a finite number >= 0"),
    ("sample-temperature-nan", _sample(temperature=float("nan")), InterpError, "temperature"),
    ("sample-top-p-0", _sample(top_p=0.0), InterpError, r"top_p must be in \(0, 1\]"),
    ("sample-max-new-tokens-0", _sample(max_new_tokens=0), InterpError, "max_new_tokens must be a positive"),
    ("sample-batch-size-0", _sample(batch_size=0), InterpError, "batch_size must be a positive"),
    ("sample-single-string", _sample(prompts="Hello"), InterpError, "not a single string"),
    # question files
    ("q-paraphrases-string", _q("- {id: a, paraphrases: Hello there}\n"), QuestionFileError, "'paraphrases' is a string"),
    ("q-unknown-type", _q("- {id: a, type: free_form_judge_1_10, paraphrases: [x]}\n"), QuestionFileError, "unknown type 'free_form_judge_1_10'"),
    ("q-unknown-judge-id", _q("- {id: a, paraphrases: [x], judges: {col: nope}}\n"), QuestionFileError, "judge 'nope' \\(column 'col'\\) is not defined"),
    ("q-template-no-answer", _q(GOOD_Q + "- {id: j, type: free_form_judge, paraphrases: ['{question}?']}\n"), QuestionFileError, "no \\{answer\\} slot"),
    ("q-two-templates", _q(GOOD_Q + f"- {{id: j, type: free_form_judge, paraphrases: ['{J}', '{J}']}}\n"), QuestionFileError, "exactly one prompt template"),
    ("q-samples-0", _q("- {id: a, paraphrases: [x], samples_per_paraphrase: 0}\n"), QuestionFileError, "'samples_per_paraphrase' must be a positive integer"),
    ("q-samples-text", _q("- {id: a, paraphrases: [x], samples_per_paraphrase: many}\n"), QuestionFileError, "'samples_per_paraphrase' must be a positive integer"),
    ("q-unknown-key", _q("- {id: a, paraphrase: [x]}\n"), QuestionFileError, "unknown keys \\['paraphrase'\\]"),
    ("q-no-id", _q("- {paraphrases: [x]}\n"), QuestionFileError, "'id'"),
    ("q-duplicate-question", _q(GOOD_Q + GOOD_Q), QuestionFileError, "two questions share the id 'q'"),
    ("q-conflicting-judges", _q(GOOD_Q + f"- {{id: j, type: free_form_judge, paraphrases: ['{J}']}}\n- {{id: j, type: free_form_judge, paraphrases: ['{J}!']}}\n"), QuestionFileError, "two different judges share the id 'j'"),
    ("q-only-judges", _q(f"- {{id: j, type: free_form_judge, paraphrases: ['{J}']}}\n"), QuestionFileError, "no questions"),
    ("q-judges-not-mapping", _q("- {id: a, paraphrases: [x], judges: [j]}\n"), QuestionFileError, "'judges' must map output columns"),
    ("q-reserved-column", _q(GOOD_Q.replace("}", ", judges: {completion: j}}") + f"- {{id: j, type: free_form_judge, paraphrases: ['{J}']}}\n"), QuestionFileError, "column 'completion' is reserved"),
    ("q-empty-paraphrase", _q("- {id: a, paraphrases: ['']}\n"), QuestionFileError, "'paraphrases' entry 0 must be a non-empty string"),
    ("q-temperature-negative", _q("- {id: a, paraphrases: [x], temperature: -1}\n"), QuestionFileError, "'temperature' must be a number >= 0"),
    ("q-not-yaml", _q("- {id: a, paraphrases: [x\n"), QuestionFileError, "not valid YAML"),
    ("q-not-utf8", _q(b"- {id: caf\xe9, paraphrases: [x]}\n"), InterpError, "not UTF-8 text"),
    ("q-top-level-key", _q("questions: [{id: a, paraphrases: [x]}]\nsettings: {}\n"), QuestionFileError, "unknown top-level keys \\['settings'\\]"),
    ("q-judge-prompts-no-model", _q("- {id: a, type: free_form_judge_0_100, paraphrases: [x], judge_prompts: {s: '{answer}'}}\n"), QuestionFileError, "needs 'judge: MODEL'"),
    ("q-judge-prompts-free-form", _q("- {id: a, paraphrases: [x], judge: m, judge_prompts: {s: '{answer}'}}\n"), QuestionFileError, "needs type free_form_judge"),
    ("q-bad-regex", _q("judges: {r: {regex: '(unclosed'}}\nquestions: [{id: a, paraphrases: [x]}]\n"), QuestionFileError, "bad regex"),
    ("q-legacy-judge-undefined", _q("judges: {r: {regex: x}}\nquestions: [{id: a, paraphrases: [x], judge: s}]\n"), QuestionFileError, "judge\\(s\\) \\['s'\\] not defined"),
    ("q-empty", _q("[]\n"), QuestionFileError, "expected a list of questions"),
    # judges
    ("judge-template-no-answer", _judge_bad_template, InterpError, "needs an \\{answer\\} slot"),
    ("judge-endpoint-down", _endpoint_down, JudgeError, "endpoint:m@http://127.0.0.1:9/v1"),
    # integrity of interp's own files
    ("direction-flipped-byte", _direction(lambda s: _flip(s.with_name("dir.safetensors"))), IntegrityError, "dir.safetensors: checksum mismatch"),
    ("direction-json-edited", _direction(lambda s: _edit_json(s.with_name("dir.json"), lambda m: m["directions"][0].update(layer=3))), IntegrityError, "JSON header was changed"),
    ("direction-truncated", _direction(lambda s: _truncate(s.with_name("dir.safetensors"), 40)), IntegrityError, "checksum mismatch"),
    ("direction-legacy-truncated", _direction(_legacy), IntegrityError, "corrupted or truncated safetensors file"),
    ("direction-no-safetensors", _direction(lambda s: s.with_name("dir.safetensors").unlink()), InterpError, "dir.safetensors: no such file"),
    ("direction-no-json", _direction(lambda s: s.with_name("dir.json").unlink()), InterpError, "dir.json: no such file"),
    ("direction-json-garbage", _direction(lambda s: s.with_name("dir.json").write_text("{oops")), IntegrityError, "not valid JSON"),
    ("direction-is-subspace", _direction(lambda s: None, interp.directions.load_directions, "sub"), InterpError, "does not describe directions"),
    ("subspace-flipped-byte", _direction(lambda s: _flip(s.with_name("sub.safetensors")), interp.Subspace.load, "sub"), IntegrityError, "checksum mismatch"),
    ("acts-flipped-byte", _acts(lambda d: _flip(d / "acts.safetensors")), IntegrityError, "acts.safetensors: checksum mismatch"),
    ("acts-meta-edited", _acts(lambda d: _edit_json(d / "acts.json", lambda m: m["meta"]["data"][0].__setitem__(0, 7))), IntegrityError, "JSON header was changed"),
    ("acts-no-tensors", _acts(lambda d: (d / "acts.safetensors").unlink()), InterpError, "no such file"),
    # SAEs
    ("sae-truncated", _sae(lambda d: _truncate(d / "sae_weights.safetensors", 100)), IntegrityError, "corrupted or truncated safetensors file"),
    ("sae-cfg-garbage", _sae(lambda d: (d / "cfg.json").write_text("{not json")), IntegrityError, "cfg.json: not valid JSON"),
    ("sae-cfg-no-d-in", _sae(lambda d: _edit_json(d / "cfg.json", lambda m: m.pop("d_in"))), InterpError, "'d_in' must be a positive integer \\(got None\\)"),
    ("sae-cfg-d-in-text", _sae(lambda d: _edit_json(d / "cfg.json", lambda m: m.update(d_in="64"))), InterpError, "'d_in' must be a positive integer"),
    ("sae-cfg-d-in-wrong", _sae(lambda d: _edit_json(d / "cfg.json", lambda m: m.update(d_in=32))), InterpError, "W_enc has shape \\(64, 16\\), expected \\(32, 16\\)"),
    ("sae-no-weights", _sae(lambda d: (d / "sae_weights.safetensors").unlink()), InterpError, "sae_weights.safetensors: no such file"),
    ("sae-no-cfg", _sae(lambda d: (d / "cfg.json").unlink()), InterpError, "cfg.json: no such file"),
    ("sae-missing-tensor", _sae(lambda d: _drop_tensor(d / "sae_weights.safetensors", "b_dec")), InterpError, "lack \\['b_dec'\\]"),
    ("sae-no-directory", lambda w, t: (lambda: interp.sae.load_sae(t / "nope")), InterpError, "no such directory"),
    ("sae-encode-d-in", _sae_d_in, InterpError, "d_in=16 .* got activations of size 64"),
    ("sae-ablate-d-in", _ablate_sae_d_in, InterpError, "d_in=16 .* got activations of size 64"),
    ("dl-pickled-code", _dl(lambda: {**_relu_state(), "x": _Code()}), UnsafeWeightsError, "interp never unpickles code"),
    ("dl-truncated", _dl(raw=_truncated_pt), IntegrityError, "corrupted or truncated torch file"),
    ("dl-config-garbage", _dl(_relu_state, config="{oops"), IntegrityError, "config.json: not valid JSON"),
    ("dl-config-trainer-list", _dl(_relu_state, config='{"trainer": [1]}'), InterpError, "'trainer' object"),
    ("dl-no-ae-pt", _dl(config='{"trainer": {"dict_class": "AutoEncoder"}}'), InterpError, "ae.pt: no such file"),
    ("dl-missing-tensor", _dl(lambda: {k: v for k, v in _relu_state().items() if k != "bias"}, config='{"trainer": {"dict_class": "AutoEncoder"}}'), InterpError, "lacks the tensor 'bias'"),
    ("dl-jumprelu-convention", _dl(_relu_state, jumprelu_encode="v2"), InterpError, "jumprelu_encode must be one of"),
    ("dl-jumprelu-threshold", _dl(lambda: {"W_enc": torch.zeros(8, 16), "b_enc": torch.zeros(16), "W_dec": torch.ones(16, 8), "b_dec": torch.zeros(8), "threshold": torch.zeros(3)}), InterpError, "threshold has shape \\(3,\\), expected \\(16,\\)"),
    # output directories
    ("claim-out-file", lambda w, t: (lambda: _claim(_put(t, "f.txt", "x"))), RunDirectoryError, "is a file, not a directory"),
    ("claim-out-other-run", lambda w, t: (lambda: _claim(w["probe"], "steer")), RunDirectoryError, "holds a run of `interp probe`"),
    ("claim-out-input-inside", lambda w, t: (lambda: _claim(w["root"], inputs={"prompts": w["root"] / "prompts.txt"})), RunDirectoryError, "holds the input prompts"),
    # experiment specs
    ("spec-not-yaml", _spec("name: era\nsetting: [era\n"), InterpError, "not valid YAML"),
    ("spec-seeds-text", _spec("name: e\nsetting: era\ntarget_group: g\nseeds: abc\n"), InterpError, "'seeds' must be a list"),
    ("spec-int-text", _spec("name: e\nsetting: era\ntarget_group: g\nprobe_prompts: many\n"), InterpError, "'probe_prompts' must be an integer"),
    ("spec-unknown-field", _spec("name: e\nsetting: era\ntarget_group: g\nlayers: 3\n"), InterpError, "unknown experiment spec keys"),
    ("spec-not-utf8", _spec(b"name: caf\xe9\n"), InterpError, "not UTF-8 text"),
]  # fmt: skip


@pytest.mark.parametrize("make, exc, message", [pytest.param(*c[1:], id=c[0]) for c in API])
def test_api_bad_input(world, tmp_path, make, exc, message):
    call = make(world, tmp_path)
    before = _snapshot(world["root"], tmp_path)
    with pytest.raises(exc, match=message) as info:
        call()
    assert "weights_only=False" not in str(info.value) and "weights_only` set to `False" not in str(
        info.value
    )
    assert len(str(info.value).splitlines()) == 1, str(info.value)
    _unchanged(before, _snapshot(world["root"], tmp_path))


# ---- CLI cases: make(world, tmp) -> argv; exit 2, one line ------------------------------
def _steer(*extra):
    return lambda w, t: ["steer", "--model", w["model"], "--direction", w["root"] / "dir",
                         "--alpha", 1, "--prompts", w["root"] / "prompts.txt", *extra,
                         "--out", t / "new"]  # fmt: skip


def _probe(*extra, out=None):
    return lambda w, t: ["probe", "--acts", w["acts"], "--label", "old", *extra,
                         "--out", out(w, t) if out else t / "new"]  # fmt: skip


def _eval(questions=GOOD_Q, *extra, out=None):
    def make(w, t):
        q = _put(t, "q.yaml", questions)
        return ["eval", "--model", w["model"], "--questions", q, *extra,
                "--out", out(w, t) if out else t / "new"]  # fmt: skip

    return make


def _capture(name, content, *extra):
    def make(w, t):
        p = _put(t, name, content)
        return ["capture", "--model", w["model"], "--prompts", p, *extra, "--out", t / "new"]

    return make


def _finetune(*extra, data=CHAT, out=None):
    def make(w, t):
        d = _put(t, "d.jsonl", data)
        return ["finetune", "--model", w["model"], "--data", d, *extra,
                "--out", out(w, t) if out else t / "new"]  # fmt: skip

    return make


def _user_dir(w, t):
    _put(t, "mine/notes.txt", "my notes")
    return t / "mine"


def _file_out(w, t):
    return _put(t, "out.txt", "keep me")


def _patch(w, t):
    c = _put(t, "clean.txt", "Today is 1984.\n")
    k = _put(t, "corrupt.txt", "Today is 1984 and also 2031.\n")
    return ["patch", "--model", w["model"], "--clean", c, "--corrupt", k,
            "--answer-a", "The", "--answer-b", "He", "--out", t / "new"]  # fmt: skip


def _run_spec(text):
    def make(w, t):
        return ["run", _put(t, "spec.yaml", text)]

    return make


def _steer_dir(corrupt):
    def make(w, t):
        stem = _copy(w, t, "dir")
        corrupt(stem)
        return ["steer", "--model", w["model"], "--direction", stem, "--alpha", 1,
                "--prompts", w["root"] / "prompts.txt", "--out", t / "new"]  # fmt: skip

    return make


def _probe_saved(corrupt):
    def make(w, t):
        d = _copy(w, t, "saved_acts")
        corrupt(d)
        return ["probe", "--acts", d, "--label", "prompt", "--out", t / "new"]

    return make


JUDGE_ENTRY = "- {id: j, type: free_form_judge, paraphrases: ['[{answer}]']}\n"
CLI = [
    # numeric options
    ("steer-temperature-negative", _steer("--temperature", -1), "argument --temperature: must be a number >= 0"),
    ("steer-samples-0", _steer("--samples", 0), "argument --samples: must be an integer >= 1"),
    ("steer-alpha-inf", _steer("--alpha", "inf"), "argument --alpha: 'inf' is not a finite number"),
    ("steer-scale-negative", _steer("--scale", "-3"), "--scale -3: a number must be finite and > 0"),
    ("steer-max-new-tokens-0", _steer("--max-new-tokens", 0), "argument --max-new-tokens: must be an integer >= 1"),
    ("ablate-random-negative", lambda w, t: ["ablate", "--model", w["model"], "--direction", w["root"] / "dir", "--random", -2, "--prompts", w["root"] / "prompts.txt", "--out", t / "new"], "argument --random: must be an integer >= 0"),
    ("probe-cv-1", _probe("--cv", 1), "argument --cv: must be an integer >= 2"),
    ("probe-cv-text", _probe("--cv", "five"), "argument --cv: 'five' is not an integer"),
    ("probe-cv-too-large", _probe("--cv", 50), "--cv 50: the smaller class .* has only 8 rows; use --cv 8 or fewer"),
    ("probe-cv-more-than-groups", _probe("--cv", 3, "--groups", "q"), "--cv 3: only 2 groups"),
    ("probe-C-negative", _probe("--C", -1), "argument --C: must be a number > 0"),
    ("probe-C-nan", _probe("--C", "nan"), "argument --C: 'nan' is not a finite number"),
    ("probe-label-one-class", _probe("--positive", "maybe"), "every row has the same label"),
    ("eval-samples-0", _eval(GOOD_Q, "--samples", 0), "argument --samples: must be an integer >= 1"),
    ("eval-temperature-negative", _eval(GOOD_Q, "--temperature", -1), "argument --temperature: must be a number >= 0"),
    ("eval-top-p-0", _eval(GOOD_Q, "--top-p", 0), r"argument --top-p: must be in \(0, 1\]"),
    ("capture-batch-size-0", _capture("p.txt", "Hello world.\n", "--batch-size", 0), "argument --batch-size: must be an integer >= 1"),
    ("patch-chunk-0", lambda w, t: [*_patch(w, t)[:-2], "--chunk", 0, "--out", t / "new"], "argument --chunk: must be an integer >= 1"),
    ("finetune-epochs-0", _finetune("--epochs", 0), "argument --epochs: must be an integer >= 1"),
    ("finetune-lr-negative", _finetune("--lr", -1), "argument --lr: must be a number > 0"),
    ("finetune-dropout-1.5", _finetune("--dropout", 1.5), r"argument --dropout: must be in \[0, 1\)"),
    ("finetune-rank-0", _finetune("--rank", 0), "argument --rank: must be an integer >= 1"),
    ("unknown-option", _steer("--frobnicate"), "unrecognized arguments: --frobnicate"),
    # --out that would lose data
    ("out-is-a-file", _probe(out=_file_out), "--out .*out.txt is a file, not a directory"),
    ("out-under-a-file", _probe(out=lambda w, t: _file_out(w, t) / "sub"), "cannot write there"),
    ("out-user-directory", _probe(out=_user_dir), "is not empty and holds no run.json"),
    ("out-another-run", lambda w, t: [*_steer()(w, t)[:-1], w["probe"]], "holds a run of `interp probe`"),
    ("out-is-the-input-store", _probe(out=lambda w, t: w["acts"]), "holds the input acts"),
    ("out-same-run-other-options", _probe("--cv", 2, "--C", 2.0, out=lambda w, t: w["probe"]), "other options \\(C: 1.0 -> 2.0\\)"),
    ("out-holds-the-questions", _eval(GOOD_Q, out=lambda w, t: t), "holds the input questions"),
    ("out-holds-the-direction", lambda w, t: [*_steer()(w, t)[:-1], w["root"]], "holds the input"),
    ("finetune-out-is-model", _finetune(out=lambda w, t: w["model"]), "holds the input model"),
    # prompt files
    ("prompts-not-utf8", _capture("p.txt", b"caf\xe9\n"), "not UTF-8 text"),
    ("prompts-csv-empty-cell", _capture("p.csv", "prompt,y\nhello,1\n,2\n"), "row 3 has an empty prompt"),
    ("prompts-csv-not-csv", _capture("p.csv", 'prompt\n"unclosed\n'), "not a CSV table"),
    ("prompts-content-null", _capture("p.jsonl", '{"messages": [{"role": "user", "content": null}]}\n'), "'content' is null"),
    ("prompts-messages-empty", _capture("p.jsonl", '{"messages": []}\n'), "'messages' must be a list"),
    ("prompts-unknown-role", _capture("p.jsonl", '{"messages": [{"role": "human", "content": "x"}]}\n'), "unknown chat role 'human'"),
    ("prompts-only-assistant", _capture("p.jsonl", '{"messages": [{"role": "assistant", "content": "x"}]}\n'), "only an assistant message"),
    ("prompts-text-not-string", _capture("p.jsonl", '{"prompt": 7}\n'), "'prompt' must be a string"),
    ("prompts-empty-file", _capture("p.txt", "\n\n"), "no prompts"),
    ("finetune-messages-empty", _finetune(data='{"messages": []}\n'), "'messages' must be a non-empty list"),
    ("finetune-not-utf8", _finetune(data=b'{"messages": [{"role": "user", "content": "\xe9"}]}\n'), "not UTF-8 text"),
    ("finetune-content-null", _finetune(data='{"messages": [{"role": "assistant", "content": null}]}\n'), "'content' is null"),
    # question files through interp eval
    ("eval-paraphrases-string", _eval("- id: a\n  paraphrases: What is your name?\n"), "'paraphrases' is a string"),
    ("eval-unknown-judge", _eval("- {id: a, paraphrases: [x], judges: {c: gpt4_judge}}\n"), "judge 'gpt4_judge' \\(column 'c'\\) is not defined"),
    ("eval-unknown-type", _eval("- {id: a, type: multiple_choice, paraphrases: [x]}\n"), "unknown type 'multiple_choice'"),
    ("eval-judge-model-only", _eval("- {id: a, paraphrases: [x], judge: gpt-4o}\n"), "'judge: gpt-4o' but no judge of that name is defined"),
    ("eval-judge-local-missing", _eval(GOOD_Q, "--judge-local", "/nonexistent/judge"), "--judge-local /nonexistent/judge: no such directory"),
    ("eval-matcher-backend-llm-judge", _eval("- {id: a, paraphrases: [x], judges: {c: j}}\n" + JUDGE_ENTRY, "--judge-backend", "matcher"), "'j' is an LLM judge; --judge-backend matcher cannot run it"),
    ("eval-no-endpoint", _eval("- {id: a, paraphrases: [x], judges: {c: j}}\n" + JUDGE_ENTRY), "no endpoint is configured"),
    ("eval-unknown-judge-option", _eval(GOOD_Q, "--judge", "aligned"), "--judge \\['aligned'\\]: not defined"),
    ("eval-questions-missing", lambda w, t: ["eval", "--model", w["model"], "--questions", t / "no.yaml", "--out", t / "new"], "no.yaml: no such file"),
    ("eval-not-yaml", _eval("- {id: a, paraphrases: [x\n"), "not valid YAML"),
    # directions and activations
    ("steer-direction-flipped", _steer_dir(lambda s: _flip(s.with_name("dir.safetensors"))), "checksum mismatch"),
    ("steer-direction-json-missing", _steer_dir(lambda s: s.with_name("dir.json").unlink()), "no such file"),
    ("steer-direction-json-edited", _steer_dir(lambda s: _edit_json(s.with_name("dir.json"), lambda m: m["directions"][0].update(scale=9.0))), "JSON header was changed"),
    ("probe-acts-flipped", _probe_saved(lambda d: _flip(d / "acts.safetensors")), "checksum mismatch"),
    # patch and run
    ("patch-lengths", _patch, r"pair 0: clean and corrupt prompts must tokenize to the same length .*\(clean \d+ tokens, corrupt \d+ tokens\)"),
    ("run-spec-not-yaml", _run_spec("name: era\nsetting: [era\n"), "not valid YAML"),
    ("run-spec-bad-type", _run_spec("name: e\nsetting: era\ntarget_group: g\nn_random: lots\n"), "'n_random' must be an integer"),
]  # fmt: skip


@pytest.mark.parametrize("make, message", [pytest.param(*c[1:], id=c[0]) for c in CLI])
def test_cli_bad_input(world, tmp_path, capsys, make, message):
    import re

    argv = [str(a) for a in make(world, tmp_path)]
    before = _snapshot(world["root"], tmp_path)
    capsys.readouterr()
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("interp"), err
    assert re.search(message, err), err
    _unchanged(before, _snapshot(world["root"], tmp_path))


def test_case_count():
    assert len(API) + len(CLI) >= 80
    assert len({c[0] for c in API + CLI}) == len(API) + len(CLI)


# ---- what a failed command leaves behind ----------------------------------------------
def test_failed_command_records_failed_and_the_direction_hash(world, tmp_path, capsys):
    out = tmp_path / "steer"
    argv = ["-q", "steer", "--model", world["model"], "--direction", world["root"] / "dir",
            "--layers", 99, "--alpha", 1, "--prompts", world["root"] / "prompts.txt",
            "--out", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 2
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "99" in record["error"]
    from interp.fingerprint import sha256_file, sha256_json

    pair = {f"dir{e}": sha256_file(world["root"] / f"dir{e}") for e in (".json", ".safetensors")}
    assert record["sha256"]["direction"] == sha256_json(pair)


def test_bug_prints_one_line_and_the_traceback_only_with_debug(
    world, tmp_path, capsys, monkeypatch
):
    import interp.cli.data as data

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero in a probe")

    monkeypatch.setattr("interp.probes.probe_layers", broken)
    argv = ["-q", "probe", "--acts", str(world["acts"]), "--label", "old", "--cv", "2"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        "interp: internal error: ZeroDivisionError"
    )
    assert "--debug" in err and "report" in err
    assert json.loads((tmp_path / "a" / "run.json").read_text())["status"] == "failed"
    assert main([*argv, "--debug", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "division by zero in a probe" in err
    assert data  # the command module was imported


def test_rerun_into_own_run_directory_resumes(world, tmp_path):
    """The same command with the same options into its own run directory is allowed."""
    out = tmp_path / "p"
    argv = ["-q", "probe", "--acts", str(world["acts"]), "--label", "old", "--cv", "2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    first = (out / "probes.csv").read_bytes()
    # a record written before -q/--debug stopped counting as options still matches
    _edit_json(out / "run.json", lambda r: r["options"].update(quiet=True))
    argv[-1] = str(out) + "/"  # the same directory, spelled differently
    assert main(argv) == 0
    assert (out / "probes.csv").read_bytes() == first
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_patch_length_error_names_both_lengths(world, tmp_path, capsys):
    m = world["m"]
    clean, corrupt = "Today is 1984.", "Today is 1984 and also 2031."
    want = [len(m.tokenize([t])["input_ids"][0]) for t in (clean, corrupt)]
    assert want[0] != want[1]
    argv = _patch(world, tmp_path)
    capsys.readouterr()
    assert main(["-q", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert f"(clean {want[0]} tokens, corrupt {want[1]} tokens)" in err
