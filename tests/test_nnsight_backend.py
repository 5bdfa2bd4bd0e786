"""The nnsight backend equals the plain hook path: capture, steering, ablation, patching,
answer scoring, generation and adapters on / off, on nnsight's local execution and on its
simulation of a remote (NDIF) request. No remote call is ever made."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.backends.nnsight import NNsightModel, wrap_nnsight
from interp.backends.trace_patching import exact_by_traces
from interp.errors import BackendError
from interp.hooks import hook_count
from interp.metrics import answer_share, sample

TEXTS = ["The year is 1984 .", "Name a bird species", "Hello", "the year is 2031 and the bird"]
MODES = [False, "simulate"]


@pytest.fixture(scope="module")
def plain():
    from interp.testing import tiny_model

    return tiny_model("llama")


@pytest.fixture(scope="module", params=MODES, ids=["local", "simulate"])
def traced(plain, request):
    return wrap_nnsight(plain, remote=request.param)


def _logits(model, texts=TEXTS):
    batch = model.tokenize(texts)
    with torch.no_grad():
        return model.forward(**batch).logits


def _same(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_capture_equals_hooks(plain, traced):
    for positions in ("last", "all", [0]):
        want = interp.capture(
            plain,
            TEXTS,
            sites=["resid_pre", "attn_out", "mlp_out", "resid_post"],
            positions=positions,
            progress=False,
        )
        got = interp.capture(
            traced,
            TEXTS,
            sites=["resid_pre", "attn_out", "mlp_out", "resid_post"],
            positions=positions,
            progress=False,
        )
        _same(got.tensor, want.tensor)
        assert got.meta.equals(want.meta)
    shallow = interp.capture(traced, TEXTS, layers=[0], progress=False)  # stops after layer 0
    _same(shallow.tensor, interp.capture(plain, TEXTS, layers=[0], progress=False).tensor)
    assert traced.trace_hook_count() == 0 and hook_count(traced.hf) == 0
    _same(_logits(traced), _logits(plain))


def test_steering_and_ablation_equal_hooks(plain, traced):
    vec = interp.random_directions(plain.d_model, 2, seed=1)
    for positions in ("all", [0], "last"):
        with interp.steer(plain, vec[0], alpha=4.0, layers=[1], positions=positions):
            want = _logits(plain)
        with interp.steer(traced, vec[0], alpha=4.0, layers=[1], positions=positions):
            got = _logits(traced)
        _same(got, want)
    assert (want - _logits(plain)).abs().max() > 1e-2  # the steering did something
    with interp.ablate(plain, vec, layers=[0, 2], mode="mean", reference=TEXTS[:2]):
        want = _logits(plain)
    with interp.ablate(traced, vec, layers=[0, 2], mode="mean", reference=TEXTS[:2]):
        got = _logits(traced)
    _same(got, want)
    assert traced.trace_hook_count() == 0


def test_answer_scoring_equals_hooks(plain, traced):
    a, b = ["bird", "year"], ["Hello", "the"]
    _same(answer_share(traced, TEXTS, a, b), answer_share(plain, TEXTS, a, b))


def _metric(logits):
    return logits[:, 5].float() - logits[:, 7].float()


def test_patching_equals_the_replay_engine(plain, traced):
    clean = ["The year is 1984 .", "The bird is a merlin", "Today is 1984"]
    corrupt = ["The year is 2031 .", "The bird is a hawk", "Today is 2031"]
    assert all(
        len(plain.tokenizer(c)["input_ids"]) == len(plain.tokenizer(d)["input_ids"])
        for c, d in zip(clean, corrupt, strict=True)
    )
    kw = dict(metric=_metric, sites=["resid_pre", "attn_out", "mlp_out"], layers=[0, 3])
    want = interp.patch(plain, clean, corrupt, **kw)
    got = interp.patch(traced, clean, corrupt, **kw)
    _same(got.values, want.values)
    for g, w in zip(got.per_prompt, want.per_prompt, strict=True):  # each pair's own map
        _same(g, w)
    assert got.positions == want.positions and got.tokens == want.tokens
    assert got.clean_value == pytest.approx(want.clean_value, abs=1e-5)
    # the per-cell engine on the plain model too (chunk 1 and chunk > positions)
    cb, xb = plain.tokenize(clean[:1]), plain.tokenize(corrupt[:1])  # one pair: no padding
    n0 = cb["input_ids"].shape[1]
    sites = interp.resolve_sites(kw["sites"], plain.n_layers, kw["layers"])
    for chunk in (1, 64):
        _, _, raw = exact_by_traces(plain, cb, xb, sites, list(range(n0)), _metric, chunk)
        vals = torch.stack(
            [torch.stack([torch.as_tensor(raw[s, p])[0] for p in range(n0)]) for s in sites]
        )
        _same(vals, want.per_prompt[0])
    with pytest.raises(BackendError, match="exact"):
        interp.patch(traced, clean, corrupt, mode="attribution", **kw)


def test_generation_with_and_without_steering(plain, traced):
    kw = dict(k=1, max_new_tokens=5, temperature=0)
    assert sample(traced, TEXTS[:2], **kw).completions == sample(plain, TEXTS[:2], **kw).completions
    vec = interp.random_directions(plain.d_model, 1, seed=2)[0]
    with interp.steer(plain, vec, alpha=8.0, layers=[1]):
        want = sample(plain, TEXTS[:2], **kw).completions
    with interp.steer(traced, vec, alpha=8.0, layers=[1]):
        if traced.remote:  # not available on the remote path (see NNsightModel.generate)
            with pytest.raises(BackendError, match="remote=False"):
                sample(traced, TEXTS[:2], **kw)
            return
        got = sample(traced, TEXTS[:2], **kw).completions
    assert got == want
    assert want != sample(plain, TEXTS[:2], **kw).completions  # the steering did something


# ---- adapters ------------------------------------------------------------------------
def _adapter(base_dir, out, targets):
    from peft import LoraConfig, get_peft_model

    model = interp.load_model(base_dir, device="cpu")
    torch.manual_seed(3)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    get_peft_model(model.hf, cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def base_dir(tiny_dirs):
    return tiny_dirs("llama")


@pytest.mark.parametrize(
    "targets", [["q_proj", "v_proj", "down_proj"], ["embed_tokens"]], ids=["linear", "embedding"]
)
@pytest.mark.parametrize("remote", MODES, ids=["local", "simulate"])
def test_adapter_as_lora_deltas_equals_peft(base_dir, tmp_path, targets, remote):
    adapter = _adapter(base_dir, tmp_path / "lora", targets)
    peft_pair = interp.ModelPair.load(base_dir, adapter, device="cpu")
    model = interp.load_model(
        base_dir, adapter=adapter, backend="nnsight", remote=remote, device="cpu"
    )
    assert isinstance(model, NNsightModel) and model.lora is not None
    pair = interp.ModelPair.from_adapter(model)
    _same(_logits(pair.finetuned), _logits(peft_pair.finetuned))
    _same(_logits(pair.base), _logits(peft_pair.base))
    assert (_logits(pair.finetuned) - _logits(pair.base)).abs().max() > 1e-3
    want = interp.capture(peft_pair.finetuned, TEXTS, layers=[1], positions="all", progress=False)
    got = interp.capture(pair.finetuned, TEXTS, layers=[1], positions="all", progress=False)
    _same(got.tensor, want.tensor)
    # views never leak: an intervention on the base view leaves the finetuned view alone
    vec = interp.random_directions(model.d_model, 1)[0]
    with interp.steer(pair.base, vec, alpha=5.0, layers=[0]):
        _same(_logits(pair.finetuned), _logits(peft_pair.finetuned))
        with interp.steer(peft_pair.base, vec, alpha=5.0, layers=[0]):
            _same(_logits(pair.base), _logits(peft_pair.base))
    # a wrapped PEFT model gets the same deltas, and its own modules stay plain
    wrapped = wrap_nnsight(peft_pair.finetuned)
    _same(_logits(wrapped), _logits(peft_pair.finetuned))
    assert "Controller" not in type(peft_pair.finetuned.blocks[0].forward).__name__


# ---- remote errors, without any remote call --------------------------------------------
def test_remote_without_api_key_says_what_is_missing(base_dir, monkeypatch):
    from nnsight.schema.config import CONFIG

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(BackendError, match="NDIF_API_KEY"):
        interp.load_model(base_dir, backend="nnsight", remote=True)


def test_remote_without_network_is_a_clear_error(base_dir, monkeypatch):
    from nnsight.modeling.huggingface import _ID_CACHE
    from nnsight.schema.config import CONFIG

    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setattr(CONFIG.API, "HOST", "http://127.0.0.1:9")  # closed local port
    monkeypatch.setattr(CONFIG.APP, "REMOTE_LOGGING", False)
    # the model key names the Hub repo; seed nnsight's cache so the Hub is never asked
    monkeypatch.setitem(_ID_CACHE, str(base_dir), "interp-tests/tiny-llama")
    model = interp.load_model(base_dir, backend="nnsight", remote=True)
    assert model.device.type == "cpu" and next(model.hf.parameters()).device.type == "meta"
    with pytest.raises(BackendError, match="NDIF request"):
        _logits(model)


def test_unknown_backend_is_named(base_dir):
    with pytest.raises(interp.InterpError, match="unknown backend"):
        interp.load_model(base_dir, backend="jax")
