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
