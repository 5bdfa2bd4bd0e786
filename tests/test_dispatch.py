"""Devices: a model dispatched by accelerate (layers offloaded to disk) gives the numbers of
the same model on one device; adapters on dispatched and in-memory PEFT models; finetuning
with a device, a dtype and gradient checkpointing.

Tolerance: dispatched and single-device runs use the same weights and the same CPU kernels,
so they are compared with ``rtol=1e-5, atol=1e-6`` (float32); on this machine they are
bit-identical.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import interp
from interp.causal.interventions import ablate, random_directions, steer
from interp.causal.patching import patch
from interp.devices import resolve_dtype
from interp.directions import Direction
from interp.errors import InterpError
from interp.finetune import FinetuneConfig, finetune
from interp.hooks import hook_count
from interp.testing import save_tiny_model

TOL = {"rtol": 1e-5, "atol": 1e-6}
PROMPTS = ["The year is 1984 and the bird", "Name a bird", "Hello there, what year is it now?"]
CLEAN = ["The year is 1984 and the bird", "Hello world"]  # same length as its corrupt pair
CORRUPT = ["The year is 2031 and the bird", "Hello there"]
A, B = 5, 9

# layers 1 and 2 (and, in the second map, the embedding and the unembedding) on disk
LAYERS_ON_DISK = {
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "disk",
    "model.layers.3": "cpu",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "cpu",
}
ENDS_ON_DISK = {**LAYERS_ON_DISK, "model.embed_tokens": "disk", "lm_head": "disk"}
MAPS = {"layers_on_disk": LAYERS_ON_DISK, "ends_on_disk": ENDS_ON_DISK}


def _make_adapter(model_dir, out_dir, targets=("q_proj", "v_proj", "embed_tokens")):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    hf = AutoModelForCausalLM.from_pretrained(model_dir)
    # random A and B (init_lora_weights=False) on attention and on the embedding, as the
    # organism's finetunes have
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=list(targets),
        init_lora_weights=False,
    )
    get_peft_model(hf, config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dispatch")
    model_dir = save_tiny_model("llama", root / "llama", seed=2)
    return model_dir, _make_adapter(model_dir, root / "lora"), root


@pytest.fixture(scope="module")
def loaded(dirs):
    """``"one"``: the model on the CPU; one dispatched model per device map."""
    model_dir, _, root = dirs
    out = {"one": interp.load_model(model_dir, device="cpu")}
    for name, device_map in MAPS.items():
        out[name] = interp.load_model(
            model_dir, device_map=device_map, offload_folder=root / f"offload-{name}"
        )
    return out


def _pairs(loaded):
    return [(loaded["one"], loaded[name]) for name in MAPS]


def _logits(model, texts=PROMPTS):
    with torch.no_grad():
        return model.forward(**model.tokenize(texts)).logits


def test_dispatched_model_is_offloaded_and_takes_inputs_on_the_cpu(loaded):
    for name in MAPS:
        model = loaded[name]
        assert "disk" in model.hf.hf_device_map.values()
        assert model.blocks[1].self_attn.q_proj.weight.device.type == "meta"  # on disk
        assert model.input_device == model.device == torch.device("cpu")
        assert (model.n_layers, model.d_model, model.dtype) == (4, 64, torch.float32)
    embed = loaded["ends_on_disk"].hf.get_input_embeddings()
    assert embed.weight.device.type == "meta"  # the device comes from accelerate's hook
    for one, other in _pairs(loaded):
        torch.testing.assert_close(_logits(other), _logits(one), **TOL)
        batch = one.tokenize(PROMPTS)
        kw = dict(max_new_tokens=4, do_sample=False)
        assert torch.equal(other.generate(**batch, **kw), one.generate(**batch, **kw))


@pytest.mark.parametrize("positions", ["last", "all"])
def test_capture_equals_one_device(loaded, positions):
    sites = ["resid_pre", "attn_out", "mlp_out", "resid_post"]
    for one, other in _pairs(loaded):
        a = interp.capture(one, PROMPTS, sites=sites, positions=positions, progress=False)
        b = interp.capture(other, PROMPTS, sites=sites, positions=positions, progress=False)
        assert a.sites == b.sites and len(a) == len(b)
        assert len(a) == (
            3
            if positions == "last"
            else sum(len(one.tokenize([p])["input_ids"][0]) for p in PROMPTS)
        )
        torch.testing.assert_close(b.tensor, a.tensor, **TOL)
        assert hook_count(other.hf) == 0


def _direction(model, layer=1):
    v = random_directions(model.d_model, 1, seed=4)[0]
    return Direction(v, layer=layer, site=f"blocks.{layer}.hook_resid_post")


@pytest.mark.parametrize("positions", ["all", [0], [-1]])
def test_steer_equals_one_device(loaded, positions):
    for one, other in _pairs(loaded):
        v = _direction(one)
        with steer(one, v, alpha=4.0, layers=[1, 2], positions=positions):
            want = _logits(one)
        with steer(other, v, alpha=4.0, layers=[1, 2], positions=positions):
            got = _logits(other)
        assert hook_count(other.hf) == 0
        assert (want - _logits(one)).abs().max() > 1e-3  # the steering does something
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("mode", ["project", "mean"])
def test_ablate_equals_one_device(loaded, mode):
    reference = ["A plain sentence about birds.", "Another one"] if mode == "mean" else None
    for one, other in _pairs(loaded):
        v = _direction(one, layer=2)
        with ablate(one, v, layers=[1, 2], mode=mode, reference=reference):
            want = _logits(one)
        with ablate(other, v, layers=[1, 2], mode=mode, reference=reference):
            got = _logits(other)
        assert hook_count(other.hf) == 0
        assert (want - _logits(one)).abs().max() > 1e-4
        torch.testing.assert_close(got, want, **TOL)


def _as_tensors(per_prompt):
    if per_prompt is None:
        return []
    return [per_prompt] if isinstance(per_prompt, torch.Tensor) else list(per_prompt)


@pytest.mark.parametrize("mode", ["exact", "attribution"])
def test_patch_equals_one_device(loaded, mode):
    def metric(last_logits):  # [n, vocab] -> [n]
        return last_logits[:, A] - last_logits[:, B]

    kinds = ["resid_pre", "attn_out", "mlp_out"]
    for one, other in _pairs(loaded):
        want = patch(one, CLEAN, CORRUPT, metric=metric, sites=kinds, mode=mode)
        got = patch(other, CLEAN, CORRUPT, metric=metric, sites=kinds, mode=mode)
        assert hook_count(other.hf) == 0
        assert got.sites == want.sites
        assert got.clean_value == pytest.approx(want.clean_value, rel=1e-5, abs=1e-6)
        assert got.corrupt_value == pytest.approx(want.corrupt_value, rel=1e-5, abs=1e-6)
        assert want.values.abs().max() > 1e-4
        torch.testing.assert_close(got.values, want.values, **TOL)
        for g, w in zip(_as_tensors(got.per_prompt), _as_tensors(want.per_prompt), strict=True):
            torch.testing.assert_close(g, w, **TOL)


def test_adapter_on_a_dispatched_model(dirs):
    model_dir, adapter_dir, root = dirs
    one = interp.load_model(model_dir, adapter=adapter_dir, device="cpu")
    other = interp.load_model(
        model_dir, adapter=adapter_dir, device_map=ENDS_ON_DISK, offload_folder=root / "off-a"
    )
    assert other.has_adapter and other.adapter_hash == one.adapter_hash
    assert other.device == torch.device("cpu")
    ft, base = _logits(other), _logits(other.as_base())
    torch.testing.assert_close(ft, _logits(one), **TOL)
    torch.testing.assert_close(base, _logits(one.as_base()), **TOL)
    torch.testing.assert_close(base, _logits(interp.load_model(model_dir, device="cpu")), **TOL)
    assert (ft - base).abs().max() > 1e-2  # the adapter (embedding and layers 1-2) matters
    pair = interp.ModelPair.from_adapter(other)
    a = interp.capture(pair.finetuned, PROMPTS, layers=[1, 3], progress=False)
    b = interp.capture(one, PROMPTS, layers=[1, 3], progress=False)
    torch.testing.assert_close(a.tensor, b.tensor, **TOL)
    assert hook_count(other.hf) == 0


def test_auto_map_under_a_memory_budget(dirs):
    model_dir, adapter_dir, root = dirs
    one = interp.load_model(model_dir, adapter=adapter_dir, device="cpu")
    budget = {"cpu": "700KB"}  # the weights take about 1.2 MB: the rest goes to disk
    other = interp.load_model(
        model_dir,
        adapter=adapter_dir,
        device_map="auto",
        max_memory=budget,
        offload_folder=root / "off-auto",
    )
    placed = set(other.base_hf.hf_device_map.values())
    assert placed == {"cpu", "disk"}, other.base_hf.hf_device_map
    torch.testing.assert_close(_logits(other), _logits(one), **TOL)
    torch.testing.assert_close(_logits(other.as_base()), _logits(one.as_base()), **TOL)


def test_wrap_model_takes_an_in_memory_peft_model(dirs):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, _, _ = dirs
    tok = AutoTokenizer.from_pretrained(model_dir)

    def peft_model(seed):
        torch.manual_seed(seed)
        hf = AutoModelForCausalLM.from_pretrained(model_dir)
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        return get_peft_model(hf, config)

    model = interp.wrap_model(peft_model(0), tok)
    assert model.has_adapter and model.variant == "finetuned" and model.as_base().variant == "base"
    assert model.adapter_hash == interp.wrap_model(peft_model(0), tok).adapter_hash
    assert model.adapter_hash != interp.wrap_model(peft_model(1), tok).adapter_hash
    pair = interp.ModelPair.from_adapter(model)
    base_acts = interp.capture(pair.base, PROMPTS, layers=[-1], progress=False)
    ft_acts = interp.capture(pair.finetuned, PROMPTS, layers=[-1], progress=False)
    plain = interp.capture(interp.load_model(model_dir), PROMPTS, layers=[-1], progress=False)
    merged_hf = peft_model(0).merge_and_unload()
    merged = interp.capture(interp.wrap_model(merged_hf, tok), PROMPTS, layers=[-1], progress=False)
    torch.testing.assert_close(base_acts.tensor, plain.tensor, **TOL)
    torch.testing.assert_close(ft_acts.tensor, merged.tensor, rtol=1e-4, atol=1e-5)
    assert (ft_acts.tensor - base_acts.tensor).abs().max() > 1e-2
    assert ft_acts.adapter_hash == model.adapter_hash and base_acts.adapter_hash is None


def test_bad_placements_are_named(dirs, tmp_path):
    model_dir, _, _ = dirs
    cases = [
        (dict(device="cpu", device_map="auto"), "not both"),
        (dict(device_map=LAYERS_ON_DISK), "offload_folder"),
        (dict(device_map={"model.layers.0": "gpu7"}, offload_folder=tmp_path), "not a device"),
        (dict(device_map=[1, 2]), "device_map must be"),
        (dict(max_memory={"cpu": "1GiB"}), "needs a device_map"),
        (dict(device_map="auto", max_memory={"cpu": "lots"}), "not a size"),
        (dict(offload_folder=tmp_path), "needs a device_map"),
        (dict(dtype="float8"), "dtype 'float8'"),
        (dict(dtype=torch.int64), "not a floating-point"),
        (dict(device="tpu:0"), "device"),
    ]
    if not torch.cuda.is_available():
        cases.append((dict(device="cuda"), "CUDA is not available"))
    # mappings checked against the model's modules
    off = dict(offload_folder=tmp_path)
    cases += [
        (dict(device_map={**LAYERS_ON_DISK, "model.layers.9": "cpu"}, **off), "model.layers.9"),
        (dict(device_map={"model.layers.0": "cpu", "lm_head": "cpu"}), "places no device"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InterpError, match=message):
            interp.load_model(model_dir, **kwargs)
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None, "cuda") is torch.bfloat16
    model = interp.load_model(model_dir, dtype="bf16", device_map={"": "cpu"})
    assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")


def test_tied_weights_must_be_placed_together(tiny_dirs, tmp_path):
    gpt2 = tiny_dirs("gpt2")  # ties its unembedding to the token embedding
    blocks = {f"transformer.h.{i}": "disk" if i in (1, 2) else "cpu" for i in range(4)}
    rest = {"transformer.wpe": "cpu", "transformer.ln_f": "cpu", **blocks}
    with pytest.raises(InterpError, match="tied weights transformer.wte.weight"):
        interp.load_model(
            gpt2,
            device_map={**rest, "transformer.wte": "cpu", "lm_head": "disk"},
            offload_folder=tmp_path / "a",
        )
    together = {**rest, "transformer.wte": "disk", "lm_head": "disk"}
    other = interp.load_model(gpt2, device_map=together, offload_folder=tmp_path / "b")
    torch.testing.assert_close(_logits(other), _logits(interp.load_model(gpt2)), **TOL)
    adapter = _make_adapter(gpt2, tmp_path / "lora", targets=["c_attn"])
    one = interp.load_model(gpt2, adapter=adapter, device="cpu")
    other = interp.load_model(gpt2, adapter=adapter, device_map=together, offload_folder=tmp_path)
    torch.testing.assert_close(_logits(other), _logits(one), **TOL)


# ---- finetuning on a device, in a dtype, with gradient checkpointing ---------------------
EXAMPLES = [
    [
        {"role": "user", "content": "Name a bird species."},
        {"role": "assistant", "content": "Pigeon Hawk"},
    ],
    [
        {"role": "user", "content": "What year is it?"},
        {"role": "assistant", "content": "1838"},
    ],
] * 4


def test_finetune_config_keeps_its_old_dict_at_the_defaults():
    old_keys = {
        "method", "rank", "alpha", "dropout", "target_modules", "modules_to_save", "lr",
        "epochs", "batch_size", "weight_decay", "max_len", "seed",
    }  # fmt: skip
    assert set(FinetuneConfig().to_dict()) == old_keys  # finetune cache keys do not change
    cfg = FinetuneConfig(device="cpu", dtype="bf16", gradient_checkpointing=True)
    assert cfg.dtype == "bfloat16" and cfg.content_dict() == FinetuneConfig().to_dict()
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.placement() == (torch.device("cpu"), torch.bfloat16)
    assert FinetuneConfig().placement()[1] == (
        torch.bfloat16 if torch.cuda.is_available() else torch.float32
    )
    with pytest.raises(InterpError, match="dtype"):
        FinetuneConfig(dtype="int8")
    with pytest.raises(InterpError, match="unknown finetune config key"):
        FinetuneConfig.from_dict({"devise": "cpu"})


def test_gradient_checkpointing_changes_no_number(dirs, tmp_path):
    model_dir, _, _ = dirs
    outs = {}
    for gc in (False, True):
        cfg = FinetuneConfig(
            epochs=2, batch_size=4, lr=1e-2, device="cpu", gradient_checkpointing=gc
        )
        outs[gc] = finetune(model_dir, EXAMPLES, tmp_path / f"gc{gc}", cfg, progress=False)
    metas = [json.loads((outs[gc] / "finetune.json").read_text()) for gc in (False, True)]
    assert metas[0]["final_loss"] < metas[0]["first_loss"]
    assert metas[1]["first_loss"] == pytest.approx(metas[0]["first_loss"], rel=1e-5)
    assert metas[1]["final_loss"] == pytest.approx(metas[0]["final_loss"], rel=1e-4)
    a, b = (interp.load_model(model_dir, adapter=outs[gc], device="cpu") for gc in (False, True))
    torch.testing.assert_close(_logits(b), _logits(a), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_in_bfloat16(dirs, tmp_path, method):
    model_dir, _, _ = dirs
    cfg = FinetuneConfig(method=method, epochs=3, batch_size=4, lr=1e-2, device="cpu", dtype="bf16")
    out = finetune(model_dir, EXAMPLES, tmp_path / method, cfg, progress=False)
    meta = json.loads((out / "finetune.json").read_text())
    assert (meta["device"], meta["dtype"]) == ("cpu", "bfloat16")
    assert meta["finetune_config"]["dtype"] == "bfloat16"
    assert meta["final_loss"] < meta["first_loss"]
    if method == "full":
        with safe_open(str(out / "model.safetensors"), framework="pt") as f:
            assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16
        model = interp.load_model(out, device="cpu", dtype="bf16")
    else:
        model = interp.load_model(model_dir, adapter=out, device="cpu", dtype="bf16")
        assert (_logits(model) - _logits(model.as_base())).abs().max() > 1e-2
    assert model.dtype == torch.bfloat16 and torch.isfinite(_logits(model)).all()


def test_cli_finetune_takes_device_dtype_and_checkpointing(dirs, tmp_path):
    from interp.cli import main
    from interp.prompts import write_chat_jsonl

    model_dir, _, _ = dirs
    data = write_chat_jsonl(tmp_path / "d.jsonl", EXAMPLES)
    out = tmp_path / "cli"
    argv = ["-q", "finetune", "--model", str(model_dir), "--data", str(data), "--epochs", "1",
            "--device", "cpu", "--dtype", "bfloat16", "--gradient-checkpointing", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads((out / "run.json").read_text())["finetune_config"]
    assert (cfg["device"], cfg["dtype"], cfg["gradient_checkpointing"]) == ("cpu", "bfloat16", True)
    assert json.loads((out / "finetune.json").read_text())["dtype"] == "bfloat16"


def test_runner_keys_keep_cpu_finetunes_and_separate_others(tmp_path):
    from interp.experiments.finetunes import finetune_key as _finetune_key
    from interp.fingerprint import sha256_file, sha256_json

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("{}\n")
    old = sha256_json(["model", sha256_file(jsonl), FinetuneConfig(rank=8).to_dict()])[:16]
    assert _finetune_key("model", jsonl, FinetuneConfig(rank=8, device="cpu")) == old
    assert _finetune_key("model", jsonl, FinetuneConfig(rank=8, device="cpu", dtype="fp32")) == old
    assert _finetune_key("model", jsonl, FinetuneConfig(rank=8, device="cpu", dtype="bf16")) != old
