import json

import pytest
import torch
from safetensors.torch import save_file

from interp.directions.sae import (
    ARCHITECTURES,
    BatchTopKSAE,
    JumpReLUSAE,
    ReluSAE,
    SAETrainConfig,
    TopKSAE,
    TopKSAEConfig,
    evaluate_sae,
    load_dictionary_learning,
    load_sae,
    load_sae_lens,
    make_sae,
    train_sae,
)
from interp.errors import InterpError, UnsafeWeightsError

D_IN, D_SAE = 12, 20


def _planted(n=8192, d=24, n_feat=32, p=0.08, seed=0):
    """Rows that are sparse non-negative sums of ``n_feat`` unit features."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_feat, d, generator=g)
    feats /= feats.norm(dim=1, keepdim=True)
    on = (torch.rand(n, n_feat, generator=g) < p).float()
    mags = 0.5 + torch.rand(n, n_feat, generator=g)
    return (on * mags) @ feats, feats


@pytest.mark.parametrize(
    "arch,kw,train_kw",
    [
        ("standard", {}, {"l1_coefficient": 0.1}),
        ("topk", {"k": 4}, {}),
        ("batchtopk", {"k": 4}, {}),
    ],
)
def test_training_reduces_error_and_recovers_planted_features(arch, kw, train_kw):
    x, feats = _planted()
    sae = make_sae(arch, d_in=24, d_sae=64, seed=0, **kw)
    cfg = SAETrainConfig(steps=1500, batch_size=256, lr=3e-3, **train_kw)
    sae, report = train_sae(sae, x, cfg, progress=False)
    assert report["mse"] < 0.2 * report["before"]["mse"]
    assert report["explained_variance"] > 0.85
    assert 0 <= report["dead"] <= 64 and report["l0"] > 0
    best = (feats @ sae.decoder_directions().T).max(1).values  # [n_feat]
    assert (best > 0.9).float().mean() >= 0.9, best
    if arch != "standard":
        assert report["l0"] == pytest.approx(4, abs=1.0)
    if arch == "batchtopk":
        assert float(sae.threshold) > 0


def test_evaluate_sae_counts_dead_latents_and_l0():
    sae = make_sae("topk", d_in=D_IN, d_sae=D_SAE, k=3)
    with torch.no_grad():
        sae.b_enc[5:] = -1e6  # latents 5.. can never win
    m = evaluate_sae(sae, torch.randn(100, D_IN))
    assert m["dead"] == D_SAE - 5 and m["l0"] <= 3
    assert m["dead_fraction"] == pytest.approx((D_SAE - 5) / D_SAE)


def test_config_roundtrip_and_registry():
    cfg = TopKSAEConfig(d_in=8, d_sae=16, k=2, site="blocks.1.hook_resid_post")
    assert TopKSAEConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["architecture"] == "topk"
    assert set(ARCHITECTURES) >= {"standard", "topk", "batchtopk", "jumprelu"}
    with pytest.raises(InterpError):
        make_sae("gated", d_in=8, d_sae=16)


# ---- the two published formats ----------------------------------------------------------
def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g) / 3,
        "b_enc": torch.randn(D_SAE, generator=g) / 3,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g) / 3,
        "b_dec": torch.randn(D_IN, generator=g) / 3,
    }


def _x(n=64, seed=1):
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))


def _write_sae_lens(path, arch, tensors, **cfg):
    path.mkdir()
    save_file(tensors, str(path / "sae_weights.safetensors"))
    body = {"architecture": arch, "d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": True}
    body.update(cfg)
    (path / "cfg.json").write_text(json.dumps(body))
    return path


def test_sae_lens_format_encodes_like_the_reference(tmp_path):
    w, x = _weights(), _x()
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]

    relu_dir = _write_sae_lens(
        tmp_path / "std", "standard", w, metadata={"hook_name": "blocks.3.hook_resid_post"}
    )
    sae = load_sae_lens(relu_dir)
    assert isinstance(sae, ReluSAE) and sae.cfg.site == "blocks.3.hook_resid_post"
    assert torch.allclose(sae.encode(x), torch.relu(pre), atol=1e-6)
    assert torch.allclose(sae(x), torch.relu(pre) @ w["W_dec"] + w["b_dec"], atol=1e-5)

    topk_dir = _write_sae_lens(tmp_path / "topk", "topk", w, k=3)
    sae = load_sae(topk_dir)
    vals, idx = pre.topk(3, dim=-1)
    ref = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
    assert isinstance(sae, TopKSAE) and torch.allclose(sae.encode(x), ref, atol=1e-6)
    assert ((sae.encode(x) != 0).sum(-1) <= 3).all()

    # older sae-lens schema: topk was an activation function of the "standard" architecture
    v5_dir = _write_sae_lens(
        tmp_path / "v5", "standard", w, activation_fn_str="topk", activation_fn_kwargs={"k": 3}
    )
    assert torch.allclose(load_sae(v5_dir).encode(x), ref, atol=1e-6)

    thr = torch.rand(D_SAE, generator=torch.Generator().manual_seed(2)) / 2
    jump_dir = _write_sae_lens(
        tmp_path / "jump", "jumprelu", {**w, "threshold": thr}, apply_b_dec_to_input=False
    )
    sae = load_sae(jump_dir)
    pre_nb = x @ w["W_enc"] + w["b_enc"]
    ref = pre_nb * (pre_nb > thr)
    assert isinstance(sae, JumpReLUSAE) and torch.allclose(sae.encode(x), ref, atol=1e-6)
    assert not torch.allclose(sae.encode(x), torch.relu(pre_nb))  # thresholds matter

    bad = _write_sae_lens(tmp_path / "norm", "standard", w, normalize_activations="layer_norm")
    with pytest.raises(InterpError):
        load_sae(bad)


def _dl_state(kind: str, seed=0):
    g = torch.Generator().manual_seed(seed)
    enc_w = torch.randn(D_SAE, D_IN, generator=g) / 3  # nn.Linear(d_in, d_sae).weight
    enc_b = torch.randn(D_SAE, generator=g) / 3
    dec_w = torch.randn(D_IN, D_SAE, generator=g) / 3  # nn.Linear(d_sae, d_in).weight
    b = torch.randn(D_IN, generator=g) / 3
    if kind == "AutoEncoder":
        return {"encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w, "bias": b}
    if kind in ("AutoEncoderTopK", "BatchTopKSAE"):
        return {
            "encoder.weight": enc_w,
            "encoder.bias": enc_b,
            "decoder.weight": dec_w,
            "b_dec": b,
            "k": torch.tensor(3, dtype=torch.int),
            "threshold": torch.tensor(0.4),
        }
    return {  # JumpReluAutoEncoder
        "W_enc": enc_w.T.clone(),
        "b_enc": enc_b,
        "W_dec": dec_w.T.clone(),
        "b_dec": b,
        "threshold": torch.rand(D_SAE, generator=g) / 2,
    }


def _dl_reference(kind: str, s: dict, x: torch.Tensor) -> torch.Tensor:
    """dictionary_learning's own encode(), transcribed for each class."""
    if kind == "AutoEncoder":
        return torch.relu((x - s["bias"]) @ s["encoder.weight"].T + s["encoder.bias"])
    if kind == "AutoEncoderTopK":
        post = torch.relu((x - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"])
        vals, idx = post.topk(int(s["k"]), dim=-1)
        return torch.zeros_like(post).scatter(-1, idx, vals)
    if kind == "BatchTopKSAE":  # inference uses the threshold, not top-k and not ReLU
        post = torch.relu((x - s["b_dec"]) @ s["encoder.weight"].T + s["encoder.bias"])
        return post * (post > s["threshold"])
    pre = x @ s["W_enc"] + s["b_enc"]
    return torch.relu(pre * (pre > s["threshold"])) * s["W_dec"].norm(dim=1)


def _dl_decode_reference(kind: str, s: dict, f: torch.Tensor) -> torch.Tensor:
    if kind == "AutoEncoder":
        return f @ s["decoder.weight"].T + s["bias"]
    if kind == "JumpReluAutoEncoder":
        return (f / s["W_dec"].norm(dim=1)) @ s["W_dec"] + s["b_dec"]
    return f @ s["decoder.weight"].T + s["b_dec"]


@pytest.mark.parametrize(
    "kind", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder"]
)
def test_dictionary_learning_format_encodes_like_the_reference(tmp_path, kind):
    state = _dl_state(kind)
    torch.save(state, tmp_path / "ae.pt")
    trainer = {
        "dict_class": kind,
        "layer": 5,
        "lm_name": "tiny",
        "submodule_name": "resid_post_layer_5",
    }
    (tmp_path / "config.json").write_text(json.dumps({"trainer": trainer}))
    sae = load_sae(tmp_path)
    x = 2 * _x()
    ref = _dl_reference(kind, state, x)
    assert torch.allclose(sae.encode(x), ref, atol=1e-5)
    assert torch.allclose(sae(x), _dl_decode_reference(kind, state, ref), atol=1e-5)
    assert sae.cfg.site == "blocks.5.hook_resid_post" and sae.cfg.model_name == "tiny"
    if kind == "BatchTopKSAE":
        assert isinstance(sae, BatchTopKSAE)
        post = torch.relu(sae.pre_acts(x))
        assert ((post > 0) & (post <= 0.4)).any()  # there are sub-threshold activations ...
        assert not torch.allclose(sae.encode(x), post)  # ... and they are dropped

    # the converter: save in the sae-lens layout, reload, same numbers
    out = sae.save(tmp_path / "converted")
    again = load_sae_lens(out)
    assert type(again) is type(sae)
    assert torch.allclose(again.encode(x), ref, atol=1e-5)


def test_dictionary_learning_loader_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"encoder.weight": torch.zeros(2, 2), "evil": Payload()}, tmp_path / "ae.pt")
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder"}}))
    with pytest.raises(UnsafeWeightsError):
        load_dictionary_learning(tmp_path)


def test_dictionary_learning_loader_refuses_state_it_cannot_interpret(tmp_path):
    state = {**_dl_state("AutoEncoderTopK"), "act_mean": torch.zeros(D_IN)}  # whitening
    torch.save(state, tmp_path / "ae.pt")
    (tmp_path / "config.json").write_text(
        json.dumps({"trainer": {"dict_class": "AutoEncoderTopK"}})
    )
    with pytest.raises(InterpError, match="act_mean"):
        load_sae(tmp_path)


def test_save_load_roundtrip_and_direction(tmp_path):
    sae = make_sae("batchtopk", d_in=D_IN, d_sae=D_SAE, k=2, site="blocks.1.hook_resid_post")
    sae.threshold.fill_(0.25)
    sae.save(tmp_path / "s")
    back = load_sae(tmp_path / "s")
    assert isinstance(back, BatchTopKSAE) and float(back.threshold) == pytest.approx(0.25)
    assert torch.equal(back.W_dec, sae.W_dec) and back.cfg == sae.cfg
    d = back.direction(3)
    assert d.site == "blocks.1.hook_resid_post" and d.layer == 1
    assert d.cosine(sae.W_dec[3]) == pytest.approx(1.0)
    with pytest.raises(InterpError):
        load_sae(tmp_path / "missing")


def test_train_on_activations_reads_the_sae_site():
    import pandas as pd

    from interp.record.activations import Activations

    x, _ = _planted(n=512, d=D_IN, n_feat=8)
    noise = torch.randn(512, D_IN)
    meta = pd.DataFrame({"prompt": range(512), "position": 0})
    acts = Activations(
        torch.stack([noise, x], 1), ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"], meta
    )
    sae = make_sae("topk", d_in=D_IN, d_sae=D_SAE, k=2, site="blocks.2.hook_resid_post")
    cfg = SAETrainConfig(steps=5, batch_size=32)
    _, report = train_sae(sae, acts, cfg, progress=False)
    assert report["before"]["mse"] == pytest.approx(
        evaluate_sae(make_sae("topk", d_in=D_IN, d_sae=D_SAE, k=2), x)["mse"], rel=1e-5
    )
    with pytest.raises(InterpError):
        train_sae(make_sae("topk", d_in=D_IN, d_sae=D_SAE, k=2), acts, cfg, progress=False)


@pytest.mark.parametrize("convention", ["scaled", "unscaled"])
def test_dictionary_learning_jumprelu_encode_conventions(tmp_path, convention):
    """The current dictionary_learning code scales latents by the decoder norms; its PyPI
    0.1.0 release does not. Both load; their reconstructions agree, their latents differ."""
    state = _dl_state("JumpReluAutoEncoder")
    state["W_dec"] = state["W_dec"] * torch.linspace(0.5, 3.0, D_SAE)[:, None]  # norms != 1
    torch.save(state, tmp_path / "ae.pt")
    trainer = {"dict_class": "JumpReluAutoEncoder", "layer": 1}
    (tmp_path / "config.json").write_text(json.dumps({"trainer": trainer}))
    sae = load_sae(tmp_path, jumprelu_encode=convention)
    x = 2 * _x()
    pre = x @ state["W_enc"] + state["b_enc"]
    unscaled = torch.relu(pre * (pre > state["threshold"]))  # dictionary_learning 0.1.0
    norms = state["W_dec"].norm(dim=1)
    want = unscaled * norms if convention == "scaled" else unscaled
    assert (unscaled > 0).any()
    assert torch.allclose(sae.encode(x), want, atol=1e-5)
    assert not torch.allclose(sae.encode(x), unscaled * norms if convention == "unscaled"
                              else unscaled, atol=1e-3)  # fmt: skip
    recon = unscaled @ state["W_dec"] + state["b_dec"]  # the same in both releases
    assert torch.allclose(sae(x), recon, atol=1e-4)
    default = load_sae(tmp_path)
    assert torch.allclose(default.encode(x), unscaled * norms, atol=1e-5)  # default: scaled
