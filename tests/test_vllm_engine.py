"""vLLM sampling: adapter checks, request plans and the engine wiring (vLLM stood in for
on the CPU); a real-engine test runs only where vLLM and a CUDA GPU are present."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

import interp
from interp.errors import InterpError, UnsupportedAdapterError
from interp.metrics import sample
from interp.metrics.vllm_engine import (
    VLLMEngine,
    check_adapter,
    max_lora_rank,
    merge_adapter,
    plan_requests,
    prompt_seed,
    vllm_available,
)


def _adapter(base_dir, out, **lora):
    from peft import LoraConfig, get_peft_model

    model = interp.load_model(base_dir, device="cpu")
    torch.manual_seed(0)
    cfg = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model.hf, LoraConfig(**{**cfg, **lora}))
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def base_dir(tiny_dirs):
    return tiny_dirs("llama")


@pytest.fixture(scope="module")
def good_adapter(base_dir, tmp_path_factory):
    return _adapter(base_dir, tmp_path_factory.mktemp("adapters") / "qv")


def test_linear_lora_is_served(good_adapter):
    assert check_adapter(good_adapter)["r"] == 4


@pytest.mark.parametrize(
    "lora, says",
    [
        (dict(target_modules=["embed_tokens"]), "(un)embedding"),
        (dict(modules_to_save=["lm_head"]), "modules_to_save"),
        (dict(use_dora=True), "DoRA"),
        (dict(bias="lora_only"), "biases"),
    ],
)
def test_adapters_vllm_refuses_say_why_and_suggest_a_merge(base_dir, tmp_path, lora, says):
    path = _adapter(base_dir, tmp_path / "a", **lora)
    with pytest.raises(UnsupportedAdapterError, match="merge") as err:
        check_adapter(path)
    assert says in str(err.value)
    with pytest.raises(UnsupportedAdapterError):
        VLLMEngine(str(base_dir), adapters=[path])  # refused before any engine starts


def test_request_plan():
    plan = plan_requests(["a", "b"], k=5, max_new_tokens=7, temperature=0.8, top_p=0.9, seed=3)
    assert [p["n"] for p in plan.params] == [5, 5]
    assert plan.params[0] == dict(
        n=5, max_tokens=7, seed=prompt_seed(3, 0), temperature=0.8, top_p=0.9
    )
    seeds = {prompt_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150  # distinct per (seed, prompt)
    greedy = plan_requests(["a"], k=4, max_new_tokens=7, temperature=0, top_p=1.0, seed=0)
    assert greedy.params[0]["n"] == 1 and greedy.repeat == 4
    assert max_lora_rank([4]) == 8 and max_lora_rank([16, 64]) == 64 and max_lora_rank([]) == 1
    with pytest.raises(InterpError):
        max_lora_rank([1024])


# ---- the engine, with vLLM's classes stood in for ----------------------------------
@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


class FakeLLM:
    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []

    def generate(self, prompts, sampling_params, lora_request):
        self.calls.append((prompts, sampling_params, lora_request))
        out = []
        for p, sp, lr in zip(prompts, sampling_params, lora_request, strict=True):
            who = "base" if lr is None else lr.lora_name
            texts = [
                SimpleNamespace(text=f"{who}|{p[-5:]}|{sp['seed']}|{j}") for j in range(sp["n"])
            ]
            out.append(SimpleNamespace(outputs=texts))
        return out


@pytest.fixture
def fake():
    made = []

    def llm(**kwargs):
        made.append(FakeLLM(**kwargs))
        return made[-1]

    return SimpleNamespace(
        LLM=llm, SamplingParams=dict, LoRARequest=FakeLoRARequest, version="0.0-fake", made=made
    )


def test_engine_serves_base_and_adapter_views(base_dir, good_adapter, fake):
    engine = VLLMEngine(str(base_dir), adapters=[good_adapter], _backend=fake)
    pair = interp.ModelPair.load(base_dir, good_adapter, device="cpu")
    prompts = [[{"role": "user", "content": "Name a bird ."}], "The year is"]
    ft = sample(pair.finetuned, prompts, k=3, max_new_tokens=4, seed=1, engine=engine)
    base = sample(pair.base, prompts, k=3, max_new_tokens=4, seed=1, engine=engine)
    (llm,) = fake.made  # one engine for both
    assert llm.kwargs["enable_lora"] and llm.kwargs["max_lora_rank"] == 8
    assert llm.kwargs["max_loras"] == 1 and llm.kwargs["model"] == str(base_dir)
    texts, params, loras = llm.calls[0]
    assert texts[0] == pair.finetuned.chat(prompts[0]) and texts[1] == "The year is"
    assert loras[0] == FakeLoRARequest("qv-1", 1, str(good_adapter.resolve()))
    assert params[0] == dict(n=3, max_tokens=4, seed=prompt_seed(1, 0), temperature=1.0, top_p=1.0)
    assert llm.calls[1][2] == [None, None]  # the base view: no LoRA
    assert ft.completions[1] == [f"qv-1|ar is|{prompt_seed(1, 1)}|{j}" for j in range(3)]
    assert base.completions[0][0].startswith("base|")
    assert ft.config["engine"] == "vllm" and ft.config["engine_version"] == "0.0-fake"
    assert ft.config["variant"] == "finetuned" and base.config["variant"] == "base"
    # a view straight from the engine, no HF weights loaded: the same requests
    direct = sample(engine.view(good_adapter), prompts, k=3, max_new_tokens=4, seed=1)
    assert direct.completions == ft.completions and llm.calls[2][0] == texts


def test_vllm_view_refuses_to_sample_under_an_intervention(base_dir, good_adapter, fake):
    engine = VLLMEngine(str(base_dir), adapters=[good_adapter], _backend=fake)
    pair = interp.ModelPair.load(base_dir, good_adapter, device="cpu")
    vec = interp.random_directions(pair.base.d_model, 1)[0]
    with interp.steer(pair.finetuned, vec, alpha=1.0, layers=[0]):
        with pytest.raises(InterpError, match="Hugging Face engine"):
            sample(pair.finetuned, ["hi"], k=1, engine=engine)


def test_hf_engine_is_named_in_the_config(tiny_llama):
    import transformers

    s = sample(tiny_llama, ["hi"], k=1, max_new_tokens=2)
    assert s.config["engine"] == "hf" and s.config["engine_version"] == transformers.__version__


def test_merge_adapter_gives_the_adapter_model(base_dir, tmp_path):
    adapter = _adapter(base_dir, tmp_path / "emb", target_modules=["embed_tokens", "q_proj"])
    merged = merge_adapter(base_dir, adapter, tmp_path / "merged", device="cpu")
    check_texts = ["The year is 1984 .", "Name a bird"]
    with_adapter = interp.load_model(base_dir, adapter=adapter, device="cpu")
    plain = interp.load_model(merged, device="cpu")
    b = plain.tokenize(check_texts)
    with torch.no_grad():
        want = with_adapter.forward(**b).logits
        got = plain.forward(**b).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not (merged / "adapter_config.json").exists()


def test_cli_eval_records_the_engine_and_refuses_vllm_when_missing(base_dir, tmp_path, monkeypatch):
    from interp.cli import main

    questions = tmp_path / "q.yaml"
    questions.write_text(
        "- id: q1\n  paraphrases: ['Name a bird .']\n  samples_per_paraphrase: 2\n"
    )
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(base_dir), "--questions", str(questions), "--out", str(out)]
    assert main([*argv, "--max-new-tokens", "2"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["sampling"]["engine"] == "hf"
    if not vllm_available():
        monkeypatch.setitem(__import__("sys").modules, "vllm", None)  # not importable
        assert main([*argv, "--engine", "vllm"]) != 0


@pytest.mark.skipif(not vllm_available(), reason="needs vLLM and a CUDA GPU")
def test_real_vllm_engine_samples_base_and_adapter(base_dir, good_adapter):
    engine = VLLMEngine(str(base_dir), adapters=[good_adapter], gpu_memory_utilization=0.3)
    for view in (engine.view(), engine.view(good_adapter)):
        s = sample(view, ["The year is", "Name a bird"], k=4, max_new_tokens=4, seed=0)
        assert [len(c) for c in s.completions] == [4, 4]
        again = sample(view, ["The year is", "Name a bird"], k=4, max_new_tokens=4, seed=0)
        assert again.completions == s.completions
