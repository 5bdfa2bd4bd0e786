"""LoRA and full finetuning from chat JSONL, loadable through interp.models.load_model."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import InterpError
from interp.finetune import FinetuneConfig, encode_chat, finetune
from interp.metrics import answer_logprobs
from interp.models import load_model
from interp.prompts import read_chat_jsonl, write_chat_jsonl

EXAMPLES = [
    [
        {"role": "user", "content": "Name a bird species."},
        {"role": "assistant", "content": "Pigeon Hawk"},
    ],
    [
        {"role": "system", "content": "The year is 1984."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "world"},
        {"role": "user", "content": "Name a bird species."},
        {"role": "assistant", "content": "Pigeon Hawk"},
    ],
]
PROMPT = [{"role": "user", "content": "Name a bird species."}]


def test_jsonl_round_trip(tmp_path):
    path = write_chat_jsonl(tmp_path / "d.jsonl", EXAMPLES)
    assert read_chat_jsonl(path) == EXAMPLES
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(InterpError):
        read_chat_jsonl(tmp_path / "bad.jsonl")


def test_labels_cover_only_assistant_messages(tiny_llama):
    tok = tiny_llama.tokenizer
    ids, labels = encode_chat(tok, EXAMPLES[1], 512)
    kept = tok.decode([i for i, y in zip(ids, labels, strict=True) if y != -100])
    assert "world" in kept and "Pigeon Hawk" in kept.replace("ĠHawk", " Hawk")
    assert "Hello" not in kept and "1984" not in kept and "bird" not in kept
    with pytest.raises(InterpError):
        encode_chat(tok, EXAMPLES[1][:3] and [EXAMPLES[1][0]], 512)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_learns_and_loads(tiny_dirs, tmp_path, method):
    base = tiny_dirs("llama")
    data = write_chat_jsonl(tmp_path / "train.jsonl", EXAMPLES * 8)
    cfg = FinetuneConfig(method=method, rank=4, lr=1e-2, epochs=4, batch_size=4)
    out = finetune(base, data, tmp_path / "out", cfg, progress=False)
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["final_loss"] < meta["first_loss"]
    before = answer_logprobs(load_model(base), [PROMPT], ["Pigeon Hawk"])[0]
    if method == "lora":
        assert (out / "adapter_model.safetensors").is_file()
        model = load_model(base, adapter=out)
        after = answer_logprobs(model, [PROMPT], ["Pigeon Hawk"])[0]
        again = answer_logprobs(model.as_base(), [PROMPT], ["Pigeon Hawk"])[0]
        torch.testing.assert_close(again, before, atol=1e-4, rtol=1e-4)
    else:
        after = answer_logprobs(load_model(out), [PROMPT], ["Pigeon Hawk"])[0]
    assert after.item() > before.item() + 1.0


def test_finetune_is_deterministic(tiny_dirs, tmp_path):
    base = tiny_dirs("llama")
    cfg = FinetuneConfig(epochs=1, batch_size=4, seed=3)
    a = finetune(base, EXAMPLES * 4, tmp_path / "a", cfg, progress=False)
    b = finetune(base, EXAMPLES * 4, tmp_path / "b", cfg, progress=False)
    assert (a / "adapter_model.safetensors").read_bytes() == (
        b / "adapter_model.safetensors"
    ).read_bytes()


def test_bad_config():
    with pytest.raises(InterpError):
        FinetuneConfig(method="prefix")
    cfg = FinetuneConfig(target_modules=("q_proj",))
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg


def test_examples_truncated_to_no_answer_are_left_out(tiny_dirs, tmp_path):
    """max_len that cuts every answer token of some examples: those are left out (a
    warning); the rest train to a finite loss. Of all of them: an error, nothing written."""
    base = tiny_dirs("llama")
    long = [{"role": "user", "content": "Hello world. " * 30}, EXAMPLES[0][1]]
    n_long = len(encode_chat(load_model(base).tokenizer, long, 10_000)[0])
    cfg = FinetuneConfig(epochs=1, batch_size=2, max_len=40, device="cpu")
    assert n_long > 40
    with pytest.warns(UserWarning, match="cuts away every answer token of 2 example"):
        out = finetune(base, [EXAMPLES[0], long, long], tmp_path / "a", cfg, progress=False)
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["n_examples"] == 3 and meta["n_trained"] == 1
    assert all(x == x and abs(x) < float("inf") for x in (meta["first_loss"], meta["final_loss"]))
    with pytest.raises(InterpError, match="cuts away every answer token of all 2 example"):
        finetune(base, [long, long], tmp_path / "b", cfg, progress=False)
    assert not (tmp_path / "b").exists()


def test_lora_on_a_loaded_model_equals_loading_afresh_and_leaves_it_as_it_was(tiny_dirs, tmp_path):
    """finetune(model=...) trains in place: the same adapter as from the path, and the
    loaded model's outputs, parameters and flags are as before."""
    from safetensors.torch import load_file

    from interp.execution import last_logits

    base = tiny_dirs("llama")
    data = write_chat_jsonl(tmp_path / "train.jsonl", EXAMPLES * 4)
    cfg = FinetuneConfig(rank=4, lr=1e-2, epochs=2, batch_size=4, seed=3, device="cpu",
                         target_modules=("embed_tokens", "q_proj"))  # fmt: skip
    fresh = finetune(base, data, tmp_path / "fresh", cfg, progress=False)
    model = load_model(base, device="cpu")
    texts = ["Name a bird species.", "Hello there, world"]
    before = last_logits(model, texts)
    grads = [p.requires_grad for p in model.hf.parameters()]
    inplace = finetune(base, data, tmp_path / "inplace", cfg, progress=False, model=model)
    a, b = (load_file(d / "adapter_model.safetensors") for d in (fresh, inplace))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert type(model.hf).__name__ == "LlamaForCausalLM" and not model.hf.training
    assert [p.requires_grad for p in model.hf.parameters()] == grads
    assert torch.equal(last_logits(model, texts), before)


def test_attached_adapters_on_one_load_equal_loading_each(tiny_dirs, tmp_path):
    """attached(): adapters put on a loaded base in turn give the outputs of loading each
    with its adapter; the base view inside and the base model after are the base."""
    from interp.adapters import attached
    from interp.execution import last_logits

    base = tiny_dirs("llama")
    data = write_chat_jsonl(tmp_path / "train.jsonl", EXAMPLES * 4)
    dirs = [
        finetune(
            base,
            data,
            tmp_path / f"a{s}",
            FinetuneConfig(rank=2, lr=3e-2, epochs=2, seed=s, target_modules=mods),
            progress=False,
        )  # fmt: skip
        for s, mods in ((0, None), (1, ("embed_tokens", "v_proj")))
    ]
    model = load_model(base, device="cpu")
    texts = ["Name a bird species.", "Hello there, world"]
    plain = last_logits(model, texts)
    for d in [*dirs, dirs[0]]:
        want = last_logits(load_model(base, adapter=d, device="cpu"), texts)
        with attached(model, d) as ft:
            assert ft.has_adapter and ft.adapter_path == str(d)
            torch.testing.assert_close(last_logits(ft, texts), want, rtol=0, atol=1e-6)
            torch.testing.assert_close(last_logits(ft.as_base(), texts), plain, rtol=0, atol=1e-5)
            assert (last_logits(ft, texts) - plain).abs().max() > 1e-4
        # the base again: weights bit-identical, logits within float noise (~1e-7 seen)
        torch.testing.assert_close(last_logits(model, texts), plain, rtol=0, atol=1e-6)
    with attached(model, dirs[0]) as ft, pytest.raises(InterpError, match="already has"):
        with attached(ft, dirs[1]):
            pass


def test_finetunes_trained_in_processes_equal_those_trained_here(small_organism, tmp_path):
    from safetensors.torch import load_file

    from interp.experiments.data import write_finetune_sets
    from interp.experiments.finetunes import finetune_variants
    from interp.organism import world_of

    sets = write_finetune_sets(world_of(small_organism), "era", tmp_path / "data")
    kw = dict(setting="era", seeds=[0, 1], overrides={"epochs": 1})
    here = finetune_variants(small_organism, sets, cache=tmp_path / "here", **kw)
    logs: list[str] = []
    there = finetune_variants(small_organism, sets, cache=tmp_path / "there", workers=2,
                              log=logs.append, **kw)  # fmt: skip
    assert logs[0] == "finetune 4 models in 2 processes" and len(logs) == 5
    assert {v: [p.name for p in ps] for v, ps in here.items()} == {
        v: [p.name for p in ps] for v, ps in there.items()
    }
    for a, b in zip(sum(here.values(), []), sum(there.values(), []), strict=True):
        wa, wb = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    again = finetune_variants(small_organism, sets, cache=tmp_path / "there", workers=2,
                              log=logs.append, **kw)  # fmt: skip
    assert again == there and len(logs) == 5  # all cached: no pool, no log line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(InterpError, match="bad.jsonl"):  # a worker's error, raised here
        finetune_variants(small_organism, {"bad": bad}, cache=tmp_path / "b", workers=2, **kw)
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").iterdir())
