"""Ablation, steering and random controls: hooks come off, the algebra holds exactly."""

from __future__ import annotations

import pytest
import torch

from interp.causal.interventions import (
    SAELatents,
    ablate,
    random_directions,
    random_like,
    residual_norm,
    steer,
)
from interp.directions import Direction, Subspace
from interp.errors import InterpError
from interp.hooks import hook_count, hooks
from interp.testing import tiny_model

PROMPTS = ["The year is 1984 and the bird", "Name a bird species"]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=1)


@pytest.fixture(scope="module")
def batch(model):
    return model.tokenize(PROMPTS)


def _logits(model, batch):
    with torch.no_grad():
        return model.forward(batch["input_ids"], batch["attention_mask"]).logits


def _acts(model, batch, sites):
    """Activations as seen *after* any intervention hook already on the same module."""
    out = {}
    with torch.no_grad(), hooks(model, {s: lambda a, s: out.__setitem__(s.name, a) for s in sites}):
        model.forward(batch["input_ids"], batch["attention_mask"])
    return out


def _unit(d, seed):
    return random_directions(d, 1, seed=seed)[0]


def test_hooks_removed_after_exception_and_after_generate(model, batch):
    v = Direction(_unit(model.d_model, 0), layer=1, site="blocks.1.hook_resid_post")
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(model, v):
            assert hook_count(model.hf) == 1
            raise RuntimeError("boom")
    assert hook_count(model.hf) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with steer(model, v, alpha=3.0):
            raise RuntimeError("boom")
    assert hook_count(model.hf) == 0
    with steer(model, v, alpha=3.0), ablate(model, v, layers=2):
        model.generate(
            batch["input_ids"], batch["attention_mask"], max_new_tokens=3, do_sample=False
        )
    assert hook_count(model.hf) == 0


def test_ablation_acts_on_every_generated_token(model, batch):
    v = _unit(model.d_model, 3)
    seen = []

    def record(act, site):
        seen.append(act.detach() @ v)

    with ablate(model, v, layers=2), hooks(model, {"blocks.2.hook_resid_post": record}):
        model.generate(
            batch["input_ids"], batch["attention_mask"], max_new_tokens=4, do_sample=False
        )
    assert len(seen) == 4  # the prompt pass and three cached decoding steps
    assert [s.shape[1] for s in seen] == [batch["input_ids"].shape[1], 1, 1, 1]
    for proj in seen:
        assert proj.abs().max() < 1e-5
    seen.clear()
    with hooks(model, {"blocks.2.hook_resid_post": record}):  # and without it: not zero
        model.forward(batch["input_ids"], batch["attention_mask"])
    assert seen[0].abs().max() > 1e-2


def test_ablation_zeroes_projection_and_spares_orthogonal_probe(model, batch):
    v = _unit(model.d_model, 1)
    u = _unit(model.d_model, 2)
    u = u - (u @ v) * v
    u = u / u.norm()
    sites = [f"blocks.{layer}.hook_resid_post" for layer in range(model.n_layers)]
    before = _acts(model, batch, sites)
    with ablate(model, Direction(v), layers=[1, 3]):
        after = _acts(model, batch, sites)
    for layer in (1, 3):
        s = sites[layer]
        assert (after[s] @ v).abs().max() < 1e-5
        assert (before[s] @ v).abs().max() > 1e-2
    # at the first ablated layer, nothing orthogonal to v moved; below it nothing at all
    torch.testing.assert_close(after[sites[1]] @ u, before[sites[1]] @ u, atol=1e-5, rtol=0)
    torch.testing.assert_close(after[sites[0]], before[sites[0]], atol=0, rtol=0)
    assert not torch.allclose(after[sites[2]] @ u, before[sites[2]] @ u)  # downstream changes


def test_subspace_ablation_is_order_independent_and_not_sequential(model, batch):
    a = _unit(model.d_model, 4)
    b = 0.6 * a + 0.8 * _unit(model.d_model, 5)  # far from orthogonal to a
    site = "blocks.2.hook_resid_post"
    runs = []
    for target in ([Direction(a), Direction(b)], [Direction(b), Direction(a)], torch.stack([b, a])):
        with ablate(model, target, layers=2):
            runs.append((_logits(model, batch), _acts(model, batch, [site])[site]))
    for logits, _ in runs[1:]:
        torch.testing.assert_close(logits, runs[0][0], atol=1e-5, rtol=0)
    for vec in (a, b):
        assert (runs[0][1] @ vec).abs().max() < 1e-5
    # projecting a out and then b out (sequentially) leaves a component along a
    with ablate(model, a, layers=2), ablate(model, b, layers=2):
        seq = _acts(model, batch, [site])[site]
    assert (seq @ a).abs().max() > 1e-3


def test_mean_ablation_sets_projection_to_reference_mean(model, batch):
    v = _unit(model.d_model, 6)
    site = "blocks.1.hook_resid_post"
    ref = ["Hello world, this is a small corpus", "The United States has 38 states."]
    ref_acts = _acts(model, model.tokenize(ref), [site])[site]
    ref_mask = model.tokenize(ref)["attention_mask"].bool()
    mean = (ref_acts[ref_mask] @ v).mean()
    with ablate(model, v, layers=1, mode="mean", reference=ref):
        after = _acts(model, batch, [site])[site]
    torch.testing.assert_close(
        after @ v, torch.full_like(after @ v, float(mean)), atol=1e-5, rtol=0
    )
    with pytest.raises(InterpError, match="reference"):
        with ablate(model, v, layers=1, mode="mean"):
            pass


class _TinySAE(torch.nn.Module):
    def __init__(self, d, n, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.nn.Parameter(torch.randn(d, n, generator=g) / d**0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(n))
        self.W_dec = torch.nn.Parameter(torch.randn(n, d, generator=g) / n**0.5)
        self.b_dec = torch.nn.Parameter(torch.randn(d, generator=g) * 0.1)

    def encode(self, x):
        return torch.relu(x @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_dec + self.b_dec


def test_sae_latent_ablation_keeps_error_term(model, batch):
    sae = _TinySAE(model.d_model, 32)
    site = "blocks.2.hook_mlp_out"
    before = _acts(model, batch, [site])[site]
    with torch.no_grad():
        z = sae.encode(before)
        latents = [int(i) for i in z.reshape(-1, 32).sum(0).topk(3).indices]
        with ablate(model, SAELatents(sae, latents), layers=2, site="mlp_out"):
            after = _acts(model, batch, [site])[site]
        expected = before - z[..., latents] @ sae.W_dec[latents]
        torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)
        # error term x - decode(encode(x)) relative to the *original* code is unchanged
        z_kept = z.clone()
        z_kept[..., latents] = 0
        torch.testing.assert_close(
            after - sae.decode(z_kept), before - sae.decode(z), atol=1e-5, rtol=1e-5
        )


def test_sae_latent_mean_ablation_sets_latents_to_reference_mean(model, batch):
    sae = _TinySAE(model.d_model, 32)
    site = "blocks.2.hook_mlp_out"
    before = _acts(model, batch, [site])[site]
    with torch.no_grad():
        z = sae.encode(before)
        latents = [int(i) for i in z.reshape(-1, 32).sum(0).topk(2).indices]
        reference = torch.randn(40, model.d_model, generator=torch.Generator().manual_seed(3))
        mean = sae.encode(reference)[:, latents].mean(0)
        with ablate(
            model,
            SAELatents(sae, latents),
            layers=2,
            site="mlp_out",
            mode="mean",
            reference=reference,
        ):
            after = _acts(model, batch, [site])[site]
        # only the chosen latents' decoder contribution moves, to the reference mean
        expected = before + (mean - z[..., latents]) @ sae.W_dec[latents]
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)


def test_sae_latent_ablation_with_interp_sae(model, batch):
    from interp.directions.sae import make_sae

    sae = make_sae("topk", d_in=model.d_model, d_sae=48, k=6, seed=1)
    site = "blocks.1.hook_resid_post"
    before = _acts(model, batch, [site])[site]
    with torch.no_grad():
        z = sae.encode(before)
        latent = int(z.reshape(-1, 48).abs().sum(0).argmax())
        with ablate(model, SAELatents(sae, latent), layers=1):
            after = _acts(model, batch, [site])[site]
        expected = before - z[..., [latent]] @ sae.W_dec[[latent]]
    assert z[..., latent].abs().max() > 0
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)


def test_steer_alpha_zero_is_exact_noop_and_alpha_adds(model, batch):
    v = Direction(_unit(model.d_model, 7) * 5.0, layer=1, site="blocks.1.hook_resid_pre")
    clean = _logits(model, batch)
    with steer(model, v, alpha=0.0, layers=[0, 1, 2, 3]):
        assert torch.equal(_logits(model, batch), clean)
    site = "blocks.1.hook_resid_pre"
    before = _acts(model, batch, [site])[site]
    with steer(model, v, alpha=2.5):
        after = _acts(model, batch, [site])[site]
        assert not torch.allclose(_logits(model, batch), clean)
    torch.testing.assert_close(
        after - before, (2.5 * v.vector).expand_as(before), atol=1e-5, rtol=0
    )


def test_steer_positions_and_norm_scale(model, batch):
    v = _unit(model.d_model, 8)
    site = "blocks.2.hook_resid_post"
    norms = residual_norm(model, PROMPTS, layers=2)
    assert set(norms) == {2} and norms[2] > 0
    before = _acts(model, batch, [site])[site]
    with steer(model, v, alpha=0.5, layers=2, positions="last", scale=norms):
        after = _acts(model, batch, [site])[site]
    diff = after - before
    assert diff[:, :-1].abs().max() == 0
    torch.testing.assert_close(
        diff[:, -1], (0.5 * norms[2] * v).expand_as(diff[:, -1]), atol=1e-4, rtol=0
    )


def test_base_and_adapter_views_are_both_steered(tmp_path):
    from peft import LoraConfig, get_peft_model

    from interp.models import Model

    base = tiny_model("llama", seed=2)
    peft = get_peft_model(
        base.hf, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    ft = Model(hf=peft, tokenizer=base.tokenizer, name="ft", family=base.family, adapter_path="x")
    b = ft.tokenize(PROMPTS)
    v = _unit(ft.d_model, 9)
    for view in (ft, ft.as_base()):
        plain = _logits(view, b)
        with steer(view, v, alpha=4.0, layers=1):
            assert not torch.allclose(_logits(view, b), plain)
        assert hook_count(view.hf) == 0
    assert not torch.allclose(_logits(ft, b), _logits(ft.as_base(), b))


def test_random_controls_match_kind_and_norm():
    d = Direction(torch.arange(1.0, 17.0), layer=3, site="blocks.3.hook_resid_post")
    r = random_like(d, seed=1)
    assert r.layer == 3 and r.site == d.site and r.scale == d.scale
    assert abs(float(r.vector.norm()) - 1) < 1e-6 and abs(r.cosine(d)) < 0.99
    assert not torch.equal(random_like(d, seed=2).vector, r.vector)
    assert torch.equal(random_like(d, seed=1).vector, r.vector)
    s = Subspace.from_tensor(torch.randn(3, 16))
    rs = random_like(s, seed=0)
    torch.testing.assert_close(rs.basis @ rs.basis.T, torch.eye(3), atol=1e-5, rtol=0)
    t = torch.randn(4, 16) * torch.arange(1.0, 5.0)[:, None]
    torch.testing.assert_close(random_like(t).norm(dim=-1), t.norm(dim=-1))


def test_errors(model):
    with pytest.raises(InterpError, match="layers"):
        with ablate(model, torch.randn(model.d_model)):
            pass
    with pytest.raises(InterpError, match="d_model"):
        with ablate(model, torch.randn(model.d_model + 1), layers=0):
            pass
    with pytest.raises(InterpError, match="mode"):
        with ablate(model, torch.randn(model.d_model), layers=0, mode="nope"):
            pass
    assert hook_count(model.hf) == 0
