"""Loading: local directories, adapters on/off through one set of weights, clear errors."""

import shutil

import pytest
import torch

import interp
import interp.testing
from interp.errors import AdapterMismatchError, UnsafeWeightsError, UnsupportedArchitectureError
from interp.testing import save_tiny_model

TEXTS = ["Today is 1984-05-12. Name a bird species.", "The year is 2031."]


def _make_adapter(model_dir, out_dir, targets=("q_proj", "v_proj")):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    hf = AutoModelForCausalLM.from_pretrained(model_dir)
    # init_lora_weights=False: random A and B, so the adapter really changes the outputs
    peft_model = get_peft_model(
        hf, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    )
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def llama_with_adapter(tiny_dirs, tmp_path_factory):
    model_dir = tiny_dirs("llama")
    adapter_dir = _make_adapter(model_dir, tmp_path_factory.mktemp("adapter") / "lora")
    return model_dir, adapter_dir


def _logits(model, texts=TEXTS):
    with torch.no_grad():
        return model.forward(**model.tokenize(texts)).logits


def test_load_local_directory(tiny_dirs):
    model = interp.load_model(tiny_dirs("gpt2"), device="cpu")
    assert (model.n_layers, model.d_model) == (4, 64)
    assert model.tokenizer.padding_side == "left" and model.tokenizer.pad_token is not None
    assert model.variant == "base" and model.dtype == torch.float32


def test_adapter_on_off_equal_merged_and_bare(llama_with_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model_dir, adapter_dir = llama_with_adapter
    pair = interp.ModelPair.from_adapter(
        interp.load_model(model_dir, adapter=adapter_dir, device="cpu")
    )
    assert pair.base.hf is pair.finetuned.hf  # one set of weights, two views

    bare = interp.load_model(model_dir, device="cpu")
    merged_hf = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(model_dir), str(adapter_dir)
    ).merge_and_unload()
    merged = interp.wrap_model(merged_hf.eval(), bare.tokenizer)

    assert torch.equal(_logits(pair.base), _logits(bare))
    torch.testing.assert_close(_logits(pair.finetuned), _logits(merged), rtol=1e-4, atol=1e-5)
    assert (_logits(pair.finetuned) - _logits(pair.base)).abs().max() > 1e-3  # the adapter matters

    # capture through both views sees the same difference
    base_acts = interp.capture(pair.base, TEXTS, layers=[-1], progress=False)
    ft_acts = interp.capture(pair.finetuned, TEXTS, layers=[-1], progress=False)
    merged_acts = interp.capture(merged, TEXTS, layers=[-1], progress=False)
    torch.testing.assert_close(ft_acts.tensor, merged_acts.tensor, rtol=1e-4, atol=1e-5)
    assert ft_acts.adapter_hash and base_acts.adapter_hash is None


def test_adapter_for_another_model_is_rejected(llama_with_adapter, tmp_path):
    _, adapter_dir = llama_with_adapter
    wider = save_tiny_model("llama", tmp_path / "wide", d_model=96)
    with pytest.raises(AdapterMismatchError, match="does not fit"):
        interp.load_model(wider, adapter=adapter_dir, device="cpu")
    gpt2 = save_tiny_model("gpt2", tmp_path / "gpt2")
    with pytest.raises(AdapterMismatchError, match="does not have"):
        interp.load_model(gpt2, adapter=adapter_dir, device="cpu")
    with pytest.raises(AdapterMismatchError, match="not a PEFT adapter"):
        interp.load_model(gpt2, adapter=tmp_path, device="cpu")


def test_pickled_weights_are_refused(tiny_dirs, tmp_path, llama_with_adapter):
    src = tiny_dirs("llama")
    bad = tmp_path / "pickled"
    shutil.copytree(src, bad)
    (bad / "model.safetensors").unlink()
    (bad / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(UnsafeWeightsError, match="safetensors"):
        interp.load_model(bad, device="cpu")

    _, adapter_dir = llama_with_adapter
    bad_adapter = tmp_path / "pickled_adapter"
    shutil.copytree(adapter_dir, bad_adapter)
    (bad_adapter / "adapter_model.safetensors").rename(bad_adapter / "adapter_model.bin")
    with pytest.raises(UnsafeWeightsError, match="never unpickles"):
        interp.load_model(src, adapter=bad_adapter, device="cpu")


def test_unsupported_family_is_named(tmp_path):
    from transformers import BloomConfig, BloomForCausalLM

    hf = BloomForCausalLM(BloomConfig(hidden_size=32, n_layer=2, n_head=2, vocab_size=384))
    from interp.testing import tiny_tokenizer

    with pytest.raises(UnsupportedArchitectureError, match="bloom"):
        interp.wrap_model(hf, tiny_tokenizer())


def test_chat_template_and_generate_keep_left_padding(tiny_llama):
    text = tiny_llama.chat([{"role": "user", "content": "Name a bird."}])
    assert text.startswith("<s>") and text.endswith("<|assistant|>")
    batch = tiny_llama.tokenize(TEXTS)
    assert batch["attention_mask"][1, 0] == 0  # the shorter prompt is padded on the left
    out = tiny_llama.generate(
        batch["input_ids"], batch["attention_mask"], max_new_tokens=3, do_sample=False
    )
    single = tiny_llama.tokenize(TEXTS[1:])
    out1 = tiny_llama.generate(
        single["input_ids"], single["attention_mask"], max_new_tokens=3, do_sample=False
    )
    assert torch.equal(out[1, -3:], out1[0, -3:])


def test_interop_with_adapter_matches_each_view(llama_with_adapter):
    from interp.interop import to_nnsight, to_transformer_lens

    model_dir, adapter_dir = llama_with_adapter
    pair = interp.ModelPair.from_adapter(
        interp.load_model(model_dir, adapter=adapter_dir, device="cpu")
    )
    ids = pair.base.tokenize(TEXTS[:1])["input_ids"]
    for view in pair:
        acts = interp.capture(view, TEXTS[:1], layers=[2], positions="all", progress=False)
        with torch.no_grad():
            _, cache = to_transformer_lens(view).run_with_cache(ids)
        torch.testing.assert_close(
            cache["blocks.2.hook_resid_post"][0], acts.site(2), rtol=1e-4, atol=1e-5
        )
        nn_model = to_nnsight(view)
        with nn_model.trace(ids):
            out = nn_model.model.layers[2].output.save()
        out = out[0] if isinstance(out, tuple) else out
        torch.testing.assert_close(out[0], acts.site(2), rtol=1e-4, atol=1e-5)


def test_chat_rendered_text_gets_one_bos():
    from tokenizers import processors

    model = interp.testing.tiny_model("llama")
    tok = model.tokenizer
    # like Llama 3 / Gemma: the tokenizer adds BOS *and* the chat template renders it
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    bos = tok.bos_token_id
    chat = model.chat([{"role": "user", "content": "Today is 1984."}])
    ids = model.tokenize([chat])["input_ids"][0].tolist()
    assert ids[0] == bos and ids[1] != bos
    plain = model.tokenize(["Today is 1984."])["input_ids"][0].tolist()
    assert plain[0] == bos and plain[1] != bos
    mixed = model.tokenize([chat, "Today is 1984."])["input_ids"]
    real = [row[row != tok.pad_token_id].tolist() for row in mixed]
    assert real[0] == ids and real[1] == plain
    acts = interp.capture(
        model,
        [[{"role": "user", "content": "Today is 1984."}]],
        positions="all",
        layers=[0],
        progress=False,
    )
    assert acts.meta.token_id.tolist() == ids


def test_model_pair_load_adapter_or_full_finetune(llama_with_adapter, tmp_path):
    model_dir, adapter_dir = llama_with_adapter
    views = interp.ModelPair.load(model_dir, adapter_dir, device="cpu")
    assert views.base.hf is views.finetuned.hf and views.finetuned.has_adapter
    full_dir = save_tiny_model("llama", tmp_path / "full", seed=7)  # a "full finetune"
    two = interp.ModelPair.load(model_dir, full_dir, device="cpu")
    assert two.base.hf is not two.finetuned.hf and not two.finetuned.has_adapter
    assert not torch.equal(_logits(two.base), _logits(two.finetuned))
    assert torch.equal(_logits(two.base), _logits(views.base))


def test_path_like_names_never_reach_the_hub(tmp_path, monkeypatch):
    """A name that can only be a path is checked on disk; transformers is never asked."""
    import transformers

    from interp.errors import InterpError
    from interp.sources import is_path_like

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ["./m", "../m", "~/m", "/abs/m", "a/b/c", "runs/modle", "my model", "a--b", "m/"]:
        assert is_path_like(name), name
    for name in ["gpt2", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-0.5B-Instruct", "org/name"]:
        assert not is_path_like(name), name

    def hub(*args, **kwargs):
        raise AssertionError(f"the hub was asked about {args[0]!r}")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", hub)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", hub)
    for name in ["./m", "runs/modle", "~/interp-no-such-model", "a/b/c"]:
        with pytest.raises(InterpError, match="no such directory"):
            interp.load_model(name, device="cpu")
    with pytest.raises(AssertionError, match="the hub was asked about 'org/name'"):
        interp.load_model("org/name", device="cpu")  # a hub id does go to transformers
