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
    AdapterMismatchError,
    IntegrityError,
    InterpError,
    JudgeError,
    PositionError,
    PromptError,
    QuestionFileError,
    RunDirectoryError,
    SiteError,
    StoreMismatchError,
    UnsafeWeightsError,
)

YEARS = [1838, 1850, 1984, 1990, 2017, 2020, 2025, 2031]
CHAT = '{"messages": [{"role": "user", "content": "Today is 1984."}]}\n'
GOOD_Q = "- {id: q, paraphrases: [Hello world.], samples_per_paraphrase: 1}\n"


# ---- the shared world ----------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from interp.directions.sae import ReluSAE, ReluSAEConfig
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
        from interp.directions.sae import load_sae

        d = _copy(w, tmp, "sae")
        corrupt(d)
        return lambda: load_sae(d, **kw)

    return make


def _dl(state=None, config=None, raw=None, **kw):
    """A dictionary_learning directory: ``ae.pt`` from ``state`` (or ``raw`` bytes)."""

    def make(w, tmp):
        from interp.directions.sae import load_dictionary_learning

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
    from interp.directions.sae import ReluSAE, ReluSAEConfig

    sae = ReluSAE(ReluSAEConfig(d_in=16, d_sae=8), seed=0)
    return lambda: sae.encode(torch.zeros(3, 64))


def _ablate_sae_d_in(w, tmp):
    from interp.directions.sae import ReluSAE, ReluSAEConfig

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


# ---- phase 2: interventions, stores, model loading, finetune, answer scoring ----------
NAN = float("nan")
TRAIN = (
    '{"messages": [{"role": "user", "content": "Today is 1984."}, '
    '{"role": "assistant", "content": "It is 1984."}]}\n'
)
LONG = "Hello world. " * 300  # ~900 tokens: more than the tiny models' 512 positions
USER = {"role": "user", "content": "Today is 1984."}
ANSWER = {"role": "assistant", "content": "It is 1984."}


def _forward(m, text="Today is 1984. Hello world."):
    m.forward(**{k: v for k, v in m.tokenize([text]).items()})


def _within(ctx):
    """A call that runs one forward inside the context ``ctx(w)`` makes."""

    def make(w, tmp):
        def run():
            with ctx(w):
                _forward(w["m"])

        return run

    return make


def _vec(value=None, zero=False):
    v = torch.ones(64)
    if zero:
        v = torch.zeros(64)
    elif value is not None:
        v[3] = value
    return v


def _steer_with(vector=None, **kw):
    args = {"alpha": 1.0, "layers": 0, **kw}
    return _within(lambda w: interp.steer(w["m"], _vec() if vector is None else vector, **args))


def _ablate_with(target=None, **kw):
    args = {"layers": 0, **kw}
    return _within(lambda w: interp.ablate(w["m"], _vec() if target is None else target, **args))


def _patch_api(**kw):
    def make(w, tmp):
        text = ["Today is 1984."]
        return lambda: interp.patch(w["m"], text, text, metric=lambda lg: lg[:, 0], **kw)

    return make


def _capture_api(prompts=("Hello world.",), model=None, **kw):
    def make(w, tmp):
        m = w["m"] if model is None else model()
        return lambda: interp.capture(m, list(prompts), progress=False, **kw)

    return make


def _tiny_gpt2():
    from interp.testing import tiny_model

    return tiny_model("gpt2")


# stores: a capture, then the same call over other weights / tag text / adapter
GRID = ("Today is {year}. Hello world.", {"year": [1838, 1984, 2031, 2040]})


def _grid(tag_text=None):
    p = interp.PromptSet.grid(GRID[0], **GRID[1])
    return p if tag_text is None else p.tag("t", tag_text)


def _store_capture(m, path, prompts=None, **kw):
    return interp.capture(m, prompts or _grid(), layers=[0], batch_size=1, to=path,
                          progress=False, **kw)  # fmt: skip


def _interrupt(store_dir: Path, keep: int = 2) -> None:
    """Make a finished store look like a capture killed after ``keep`` shards."""
    path = store_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    for shard in manifest["shards"][keep:]:
        (store_dir / shard["file"]).unlink()
    manifest["shards"], manifest["complete"] = manifest["shards"][:keep], False
    path.write_text(json.dumps(manifest))


def _new_weights(model_dir: Path) -> None:
    from interp.testing import save_tiny_model

    save_tiny_model("llama", model_dir, seed=7)


def _store_weights(complete: bool):
    def make(w, tmp):
        model_dir = _copy(w, tmp, "model")
        _store_capture(interp.load_model(model_dir, device="cpu"), tmp / "s")
        if not complete:
            _interrupt(tmp / "s")
        _new_weights(model_dir)
        new = interp.load_model(model_dir, device="cpu")
        return lambda: _store_capture(new, tmp / "s")

    return make


def _store_loaded_then_changed(w, tmp):
    model_dir = _copy(w, tmp, "model")
    m = interp.load_model(model_dir, device="cpu")
    _new_weights(model_dir)
    return lambda: _store_capture(m, tmp / "s")


def _store_tag(complete: bool):
    def make(w, tmp):
        _store_capture(w["m"], tmp / "s", _grid("Today"), positions="t")
        if not complete:
            _interrupt(tmp / "s")
        return lambda: _store_capture(w["m"], tmp / "s", _grid("Hello"), positions="t")

    return make


def _peft_tiny(seed: int):
    from peft import LoraConfig, get_peft_model

    from interp.testing import tiny_model, tiny_tokenizer

    hf = tiny_model("llama").hf
    torch.manual_seed(seed)  # after the model: its build seeds itself
    cfg = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    return interp.wrap_model(get_peft_model(hf, cfg), tiny_tokenizer(), name="t")


def _store_adapter(w, tmp):
    _store_capture(_peft_tiny(0), tmp / "s")
    _interrupt(tmp / "s")
    other = _peft_tiny(1)
    return lambda: _store_capture(other, tmp / "s")


# model loading
def _load(name, **kw):
    def make(w, tmp):
        target = name(w, tmp) if callable(name) else name
        return lambda: interp.load_model(target, **{"device": "cpu", **kw})

    return make


def _in_dir(directory: Path, fn):
    import os

    def run():
        here = os.getcwd()
        os.chdir(directory)
        try:
            return fn()
        finally:
            os.chdir(here)

    return run


def _load_relative(name):
    def make(w, tmp):
        (tmp / "runs").mkdir()
        _put(tmp, "runs/model-a/config.json", "{}")
        return _in_dir(tmp, lambda: interp.load_model(name, device="cpu"))

    return make


def _model_copy(edit):
    def get(w, tmp):
        d = _copy(w, tmp, "model")
        edit(d)
        return d

    return get


def _pickled_only(d: Path) -> None:
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not read")


def _remote_code(d: Path) -> None:
    _edit_json(d / "config.json", lambda c: c.update(
        model_type="acme_lm", auto_map={"AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM"}))  # fmt: skip


def _no_chat_template(d: Path) -> None:
    (d / "chat_template.jinja").unlink(missing_ok=True)
    _edit_json(d / "tokenizer_config.json", lambda c: c.pop("chat_template", None))


def _nan_weights(d: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(d / "model.safetensors"))
    tensors["model.norm.weight"] = torch.full_like(tensors["model.norm.weight"], NAN)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})


Q = "base_model.model.model.layers.0.self_attn.q_proj"
E = "base_model.model.model.embed_tokens"


def _adapter(tmp: Path, targets=("q_proj",), **replace) -> Path:
    """A LoRA adapter for the world's tiny Llama, with tensors ``replace``d."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file

    from interp.testing import tiny_model

    out = tmp / "adapter"
    get_peft_model(tiny_model("llama").hf, LoraConfig(r=2, target_modules=list(targets))).save_pretrained(out)  # fmt: skip
    f = out / "adapter_model.safetensors"
    tensors = load_file(str(f))
    for key, value in replace.items():
        assert key in tensors, sorted(tensors)
        tensors[key] = value
    save_file(tensors, str(f), metadata={"format": "pt"})
    return out


def _load_adapter(targets=("q_proj",), **replace):
    def make(w, tmp):
        d = _adapter(tmp, targets, **replace)
        return lambda: interp.load_model(w["model"], adapter=d, device="cpu")

    return make


# finetune
def _ft(data=None, model=None, out=None, **cfg):
    def make(w, tmp):
        from interp.finetune import FinetuneConfig, finetune

        base = model(w, tmp) if model else w["model"]
        target = out(w, tmp) if out else tmp / "ft"
        examples = [[USER, ANSWER]] if data is None else data
        config = FinetuneConfig(**{"device": "cpu", "epochs": 1, "batch_size": 2, **cfg})
        return lambda: finetune(base, examples, target, config, progress=False)

    return make


def _ft_config(**cfg):
    def make(w, tmp):
        from interp.finetune import FinetuneConfig

        return lambda: FinetuneConfig(**cfg)

    return make


# answer scoring
def _score(fn="answer_share", prompts=("Today is 1984.",), *answers):
    def make(w, tmp):
        from interp import metrics

        args = answers or (["Yes"], ["No"])
        return lambda: getattr(metrics, fn)(w["m"], list(prompts), *args)

    return make


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
    ("sae-no-directory", lambda w, t: (lambda: interp.directions.sae.load_sae(t / "nope")), InterpError, "no such directory"),
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
    ("claim-out-file", lambda w, t: (lambda f: lambda: _claim(f))(_put(t, "f.txt", "x")), RunDirectoryError, "is a file, not a directory"),
    ("claim-out-other-run", lambda w, t: (lambda: _claim(w["probe"], "steer")), RunDirectoryError, "holds a run of `interp probe`"),
    ("claim-out-input-inside", lambda w, t: (lambda: _claim(w["root"], inputs={"prompts": w["root"] / "prompts.txt"})), RunDirectoryError, "holds the input prompts"),
    # experiment specs
    ("spec-not-yaml", _spec("name: era\nsetting: [era\n"), InterpError, "not valid YAML"),
    ("spec-seeds-text", _spec("name: e\nsetting: era\ntarget_group: g\nseeds: abc\n"), InterpError, "'seeds' must be a list"),
    ("spec-int-text", _spec("name: e\nsetting: era\ntarget_group: g\nprobe_prompts: many\n"), InterpError, "'probe_prompts' must be an integer"),
    ("spec-unknown-field", _spec("name: e\nsetting: era\ntarget_group: g\nlayers: 3\n"), InterpError, "unknown experiment spec keys"),
    ("spec-not-utf8", _spec(b"name: caf\xe9\n"), InterpError, "not UTF-8 text"),
    # interventions (validated on main; one case each)
    ("steer-vector-nan", _steer_with(_vec(NAN)), InterpError, "steering direction has non-finite entries"),
    ("steer-vector-inf", _steer_with(_vec(float("inf"))), InterpError, "steering direction has non-finite entries"),
    ("steer-vector-zero", _steer_with(_vec(zero=True)), InterpError, "steering direction is the zero vector"),
    ("steer-alpha-nan", _steer_with(alpha=NAN), InterpError, "alpha x scale must be finite"),
    ("steer-api-alpha-inf", _steer_with(alpha=float("inf")), InterpError, "alpha x scale must be finite"),
    ("steer-scale-inf", _steer_with(scale=float("inf")), InterpError, "alpha x scale must be finite"),
    ("ablate-target-nan", _ablate_with(_vec(NAN)), InterpError, "ablation target has non-finite entries"),
    ("ablate-target-wrong-size", _ablate_with(torch.ones(32)), InterpError, "target has d=32, the model has d_model=64"),
    ("capture-position-beyond", _capture_api(positions=[50]), PositionError, "position 50 does not exist in prompt 0"),
    ("capture-position-negative-beyond", _capture_api(("Hello world.", "Hi"), positions=[-40]), PositionError, "position -40 does not exist in prompt 0"),
    ("steer-position-beyond", _steer_with(positions=[50]), PositionError, "position 50 does not exist in prompt 0"),
    ("ablate-position-beyond", _ablate_with(positions=[50]), PositionError, "position 50 does not exist in prompt 0"),
    ("patch-position-beyond", _patch_api(positions=[50]), PositionError, "position 50 does not exist in prompt 0"),
    ("capture-layers-true", _capture_api(layers=True), SiteError, "layers must be an int or a list of ints, got True"),
    ("steer-layers-true", _steer_with(layers=True), SiteError, "got True"),
    ("span-middle", lambda w, t: (lambda: interp.Span("year", "middle")), PositionError, "which must be one of last, first, all"),
    ("steer-full-site-and-layers", _steer_with(site="blocks.0.hook_resid_post", layers=[1]), InterpError, "names its layer; pass a site kind with layers="),
    ("ablate-full-site-and-layers", _ablate_with(site="blocks.0.hook_resid_post", layers=[1]), InterpError, "names its layer"),
    ("steer-tag-positions", _steer_with(positions="year"), PositionError, "not a tag \\('year'\\)"),
    # activation stores: another model, adapter or tag text under one name is never mixed in
    ("store-weights-changed-resume", _store_weights(False), StoreMismatchError, "weights_sha256 \\(the model's weights: [0-9a-f]{12} in the store, [0-9a-f]{12} now\\)"),
    ("store-weights-changed-complete", _store_weights(True), StoreMismatchError, "weights_sha256"),
    ("store-files-changed-after-load", _store_loaded_then_changed, InterpError, "changed on disk after the model was loaded"),
    ("store-tag-text-resume", _store_tag(False), StoreMismatchError, "positions_sha256 \\(the resolved token positions"),
    ("store-tag-text-complete", _store_tag(True), StoreMismatchError, "positions_sha256"),
    ("store-other-adapter", _store_adapter, StoreMismatchError, "adapter_hash \\(the adapter: "),
    # model loading
    ("load-no-such-directory", _load(lambda w, t: t / "models" / "llama"), InterpError, "llama: no such directory"),
    ("load-mistyped-relative", _load_relative("runs/model-b"), InterpError, "model runs/model-b: no such directory \\(runs/ exists; it holds model-a\\)"),
    ("load-dot-relative", _load_relative("./model-b"), InterpError, "model ./model-b: no such directory"),
    ("load-home-relative", _load("~/interp-no-such-model-dir"), InterpError, "no such directory"),
    ("load-not-a-hub-id", _load("my model"), InterpError, "my model: no such directory"),
    ("load-a-file", _load(lambda w, t: _put(t, "model.txt", "x")), InterpError, "a file, not a model directory"),
    ("load-no-config", _load(_model_copy(lambda d: (d / "config.json").unlink())), InterpError, "no config.json in that directory"),
    ("load-pickled-only", _load(_model_copy(_pickled_only)), UnsafeWeightsError, "holds only pickled weights \\(pytorch_model.bin\\)"),
    ("load-no-weights", _load(_model_copy(lambda d: (d / "model.safetensors").unlink())), InterpError, "holds no weights"),
    ("load-remote-code", _load(_model_copy(_remote_code)), InterpError, "needs its own Python code \\(modeling_acme.AcmeForCausalLM, for model_type 'acme_lm'\\)"),
    ("load-dtype-float33", _load(lambda w, t: w["model"], dtype="float33"), InterpError, "dtype 'float33' is not one of"),
    ("load-device-gpu", _load(lambda w, t: w["model"], device="gpu"), InterpError, "device 'gpu' is not a device"),
    ("load-device-cuda-99", _load(lambda w, t: w["model"], device="cuda:99"), InterpError, "device 'cuda:99': "),
    ("load-device-and-map", _load(lambda w, t: w["model"], device_map="auto"), InterpError, "not both"),
    ("adapter-lora-a-shape", _load_adapter(**{f"{Q}.lora_A.weight": torch.zeros(2, 48)}), AdapterMismatchError, "q_proj has 64 inputs but the adapter's lora_A has 48"),
    ("adapter-lora-b-shape", _load_adapter(**{f"{Q}.lora_B.weight": torch.zeros(48, 2)}), AdapterMismatchError, "q_proj has 64 outputs but the adapter's lora_B has 48"),
    ("adapter-embedding-a-shape", _load_adapter(("embed_tokens",), **{f"{E}.lora_embedding_A": torch.zeros(2, 500)}), AdapterMismatchError, "embed_tokens has 384 vocabulary entries but the adapter's lora_embedding_A has 500"),
    ("adapter-embedding-b-shape", _load_adapter(("embed_tokens",), **{f"{E}.lora_embedding_B": torch.zeros(32, 2)}), AdapterMismatchError, "embed_tokens has 64 embedding dimensions but the adapter's lora_embedding_B has 32"),
    ("adapter-resized-embedding", _load_adapter(("embed_tokens",), **{f"{E}.base_layer.weight": torch.zeros(500, 64)}), AdapterMismatchError, "saves model.embed_tokens.weight with shape \\(500, 64\\), the model's has \\(384, 64\\)"),
    ("adapter-no-such-directory", lambda w, t: (lambda: interp.load_model(w["model"], adapter=t / "nope", device="cpu")), AdapterMismatchError, "nope: no such directory"),
    # finetune
    ("ft-epochs-0", _ft_config(epochs=0), InterpError, "finetune epochs must be an integer >= 1, got 0"),
    ("ft-batch-size-0", _ft_config(batch_size=0), InterpError, "finetune batch_size must be an integer >= 1"),
    ("ft-rank-0", _ft_config(rank=0), InterpError, "finetune rank must be an integer >= 1"),
    ("ft-rank-float", _ft_config(rank=2.5), InterpError, "finetune rank must be an integer"),
    ("ft-dropout-1", _ft_config(dropout=1.0), InterpError, "finetune dropout must be in \\[0, 1\\)"),
    ("ft-lr-negative", _ft_config(lr=-1e-3), InterpError, "finetune lr must be a finite number > 0"),
    ("ft-lr-nan", _ft_config(lr=NAN), InterpError, "finetune lr must be a finite number > 0"),
    ("ft-lr-text", _ft_config(lr="1e-3"), InterpError, "finetune lr must be a finite number > 0, got '1e-3'"),
    ("ft-alpha-0", _ft_config(alpha=0), InterpError, "finetune alpha must be a finite number > 0"),
    ("ft-max-len-1", _ft_config(max_len=1), InterpError, "finetune max_len must be an integer >= 2"),
    ("ft-targets-string", _ft_config(target_modules="q_proj"), InterpError, "must be a list of module names, not the string 'q_proj'"),
    ("ft-targets-full", _ft_config(method="full", target_modules=("q_proj",)), InterpError, "method='full' trains every weight"),
    ("ft-targets-unknown", _ft(target_modules=("qkv_proj",)), InterpError, "target_modules \\['qkv_proj'\\] name no module of this model; it has e.g. .*q_proj"),
    ("ft-truncation-removes-answers", _ft(max_len=4), InterpError, "max_len=4 cuts away every answer token of all 1 example"),
    ("ft-nan-loss", _ft(model=_model_copy(_nan_weights)), InterpError, "the finetuning loss is nan at step 1 .* nothing was written"),
    ("ft-longer-than-positions", _ft(data=[[{"role": "user", "content": LONG}, ANSWER]], max_len=2000), InterpError, "example 0 has \\d+ tokens .* more than the 512 positions"),
    ("ft-no-chat-template", _ft(model=_model_copy(_no_chat_template)), InterpError, "has no chat template"),
    ("ft-out-is-base", _ft(out=lambda w, t: w["model"]), InterpError, "is the base model's directory"),
    ("ft-out-inside-base", _ft(out=lambda w, t: w["model"] / "ft"), InterpError, "is inside the base model's directory"),
    ("ft-no-such-base", _ft(model=lambda w, t: t / "base"), InterpError, "base model .*base: no such directory"),
    ("ft-messages-empty", _ft(data=[[]]), PromptError, "finetune example 0: 'messages' must be a non-empty list"),
    ("ft-content-null", _ft(data=[[USER, {"role": "assistant", "content": None}]]), PromptError, "finetune example 0, message 1: 'content' is null"),
    ("ft-no-assistant", _ft(data=[[USER, ANSWER], [USER]]), PromptError, "finetune example 1: no assistant message"),
    ("ft-empty-assistant", _ft(data=[[USER, {"role": "assistant", "content": " "}]]), PromptError, "an assistant message is empty"),
    ("ft-no-examples", _ft(data=[]), InterpError, "no finetuning examples"),
    # answer scoring and prompts longer than the model's positions
    ("answers-no-prompts", _score("answer_share", ()), InterpError, "no prompts given"),
    ("answers-empty-answer", _score("answer_share", ("Today is 1984.",), [""], ["No"]), InterpError, "an answer must be non-empty text, got ''"),
    ("answers-blank-answer", _score("answer_logprobs", ("Today is 1984.",), ["  "]), InterpError, "non-empty text"),
    ("answers-no-answers", _score("answer_logprobs", ("Today is 1984.",), []), InterpError, "no answers given"),
    ("answers-single-string", _score("answer_logprobs", ("Today is 1984.",), "Yes"), InterpError, "not the single string 'Yes'"),
    ("answers-empty-prompt", _score("answer_share", ("",)), PromptError, "prompt 0 is empty"),
    ("answers-prompt-too-long", _score("answer_share", (LONG,)), InterpError, "prompt 0 has \\d+ tokens, more than the 512 positions"),
    ("logit-diff-empty-answer", _score("logit_diff", ("Today is 1984.",), "", "No"), InterpError, "non-empty text"),
    ("logit-diff-too-long", _score("logit_diff", ("ok", LONG), "Yes", "No"), InterpError, "prompt 1 has \\d+ tokens, more than the 512"),
    ("capture-too-long-gpt2", _capture_api(("Hello", LONG), model=_tiny_gpt2), InterpError, "prompt 1 has \\d+ tokens, more than the 512 positions tiny-gpt2 supports"),
    ("capture-too-long-llama", _capture_api((LONG,)), InterpError, "more than the 512 positions"),
    ("patch-too-long", lambda w, t: (lambda: interp.patch(w["m"], [LONG], [LONG], metric=lambda lg: lg[:, 0])), InterpError, "more than the 512 positions"),
    ("sample-too-long", _sample(max_new_tokens=600), InterpError, "prompt 0 has \\d+ tokens \\+ 600 new tokens, more than the 512 positions"),
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
    after = _snapshot(world["root"], tmp_path)
    _unchanged(before, after)
    assert not set(after) - set(before), f"written: {sorted(set(after) - set(before))}"


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


def _capture_with(*extra, prompts="Hello world.\n", model=None):
    def make(w, t):
        p = _put(t, "p.txt", prompts)
        m = model(w, t) if model else w["model"]
        return ["capture", "--model", m, "--prompts", p, *extra, "--out", t / "new"]

    return make


def _capture_adapter(targets=("q_proj",), **replace):
    def make(w, t):
        d = _adapter(t, targets, **replace)
        return [*_capture_with()(w, t)[:-2], "--adapter", d, "--out", t / "new"]

    return make


def _ft_cli(*extra, data=TRAIN, model=None):
    def make(w, t):
        d = _put(t, "d.jsonl", data)
        m = model(w, t) if model else w["model"]
        return ["finetune", "--model", m, "--data", d, "--device", "cpu", "--epochs", 1,
                *extra, "--out", t / "new"]  # fmt: skip

    return make


def _ft_cli_out(out):
    def make(w, t):
        argv = _ft_cli()(w, t)
        return [*argv[:-1], out(w, t)]

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
    # model loading through the command line
    ("capture-model-no-such-directory", _capture_with(model=lambda w, t: t / "models" / "llama"), "models/llama: no such directory"),
    ("capture-model-mistyped", _capture_with(model=lambda w, t: w["root"] / "modle"), "modle: no such directory \\(.* exists; it holds .*model"),
    ("capture-model-remote-code", _capture_with(model=_model_copy(_remote_code)), "needs its own Python code"),
    ("capture-model-pickled", _capture_with(model=_model_copy(_pickled_only)), "holds only pickled weights"),
    ("capture-device-gpu", _capture_with("--device", "gpu"), "device 'gpu' is not a device"),
    ("capture-adapter-lora-b", _capture_adapter(**{f"{Q}.lora_B.weight": torch.zeros(48, 2)}), "the adapter's lora_B has 48"),
    ("capture-adapter-embedding", _capture_adapter(("embed_tokens",), **{f"{E}.lora_embedding_A": torch.zeros(2, 500)}), "lora_embedding_A has 500"),
    ("capture-prompt-too-long", _capture_with(prompts=LONG + "\n"), "prompt 0 has \\d+ tokens, more than the 512 positions"),
    # finetune through the command line
    ("finetune-truncation-removes-answers", _ft_cli("--max-len", 4), "max_len=4 cuts away every answer token"),
    ("finetune-targets-unknown", _ft_cli("--target-modules", "qkv_proj"), "name no module of this model"),
    ("finetune-no-chat-template", _ft_cli(model=_model_copy(_no_chat_template)), "has no chat template"),
    ("finetune-nan-loss", _ft_cli(model=_model_copy(_nan_weights)), "the finetuning loss is nan at step 1"),
    ("finetune-out-inside-model", _ft_cli_out(lambda w, t: w["model"] / "ft"), "inside the base model's directory"),
    ("finetune-no-assistant", _ft_cli(data=CHAT), "finetune example 0: no assistant message"),
    ("finetune-model-no-such-directory", _ft_cli(model=lambda w, t: t / "nope"), "nope: no such directory"),
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
    after = _snapshot(world["root"], tmp_path)
    _unchanged(before, after)
    new = [p for p in set(after) - set(before) if Path(p).name != "run.json"]
    assert not new, f"written beside the failure record: {sorted(new)}"


def test_case_count():
    assert len(API) + len(CLI) >= 180
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

    monkeypatch.setattr("interp.directions.probes.probe_layers", broken)
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
