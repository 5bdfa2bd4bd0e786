"""Each ablation / steering operator against a naive computation on the captured activation
(a batch that mixes prompt lengths; only the real tokens of the reference count)."""

from __future__ import annotations

import pytest
import torch

from interp.causal.interventions import ablate, random_directions, steer
from interp.causal.operators import OPERATORS, mean, project, resample, zero
from interp.errors import InterpError
from interp.hooks import hook_count, hooks
from interp.testing import tiny_model

PROMPTS = ["The year is 1984 and the bird", "Name a bird"]
REFERENCE = ["Hello world, this is a small corpus", "The United States has 38 states."]
SITE = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=5)


@pytest.fixture(scope="module")
def basis(model):
    q, _ = torch.linalg.qr(random_directions(model.d_model, 2, seed=3).T)
    return q.T  # [2, d] orthonormal


def _act(model, prompts, site=SITE):
    """The activation at ``site`` ``[b, s, d]`` as the next hook sees it, and the mask."""
    b = model.tokenize(prompts)
    out = {}
    with torch.no_grad(), hooks(model, {site: lambda a, s: out.setdefault("a", a)}):
        model.forward(b["input_ids"], b["attention_mask"])
    return out["a"], b["attention_mask"].bool()


def _reference_coords(model, basis):
    ref, mask = _act(model, REFERENCE)
    return ref[mask] @ basis.T  # [m, 2]: real tokens only


def test_project_removes_the_subspace(model, basis):
    before, _ = _act(model, PROMPTS)
    with ablate(model, basis, layers=1, op=project):
        after, _ = _act(model, PROMPTS)
    want = before - (before @ basis.T) @ basis
    torch.testing.assert_close(after, want, atol=1e-5, rtol=0)


def test_mean_clamps_to_the_reference_mean(model, basis):
    before, _ = _act(model, PROMPTS)
    mu = _reference_coords(model, basis).double().mean(0).float()
    with ablate(model, basis, layers=1, op=mean, reference=REFERENCE):
        after, _ = _act(model, PROMPTS)
    want = before + (mu - before @ basis.T) @ basis
    torch.testing.assert_close(after, want, atol=1e-5, rtol=0)
    with ablate(model, basis, layers=1, mode="mean", reference=REFERENCE):  # the alias
        torch.testing.assert_close(_act(model, PROMPTS)[0], after, atol=0, rtol=0)


def test_resample_takes_a_random_reference_row_per_token(model, basis):
    before, _ = _act(model, PROMPTS)
    ref = _reference_coords(model, basis)
    with ablate(model, basis, layers=1, op=resample, reference=REFERENCE, seed=7):
        after, _ = _act(model, PROMPTS)
    rows = torch.randint(0, len(ref), before.shape[:-1], generator=torch.Generator().manual_seed(7))
    want = before + (ref[rows] - before @ basis.T) @ basis
    torch.testing.assert_close(after, want, atol=1e-5, rtol=0)
    assert len(set(rows.flatten().tolist())) > 1  # tokens drew different rows
    with ablate(model, basis, layers=1, op=resample, reference=REFERENCE, seed=8):
        assert not torch.allclose(_act(model, PROMPTS)[0], after)


def test_zero_zeroes_the_whole_activation_at_the_positions(model):
    before, _ = _act(model, PROMPTS, "blocks.0.hook_mlp_out")
    with ablate(model, None, site="blocks.0.hook_mlp_out", op=zero, positions="last"):
        after, _ = _act(model, PROMPTS, "blocks.0.hook_mlp_out")
    assert after[:, -1].abs().max() == 0
    torch.testing.assert_close(after[:, :-1], before[:, :-1], atol=0, rtol=0)


def test_steer_is_the_add_operator_and_a_custom_operator_runs(model, basis):
    before, _ = _act(model, PROMPTS)
    with steer(model, basis[0] * 3.0, alpha=2.0, layers=1):
        after, _ = _act(model, PROMPTS)
    torch.testing.assert_close(
        after - before, (2.0 * basis[0]).expand_as(before), atol=1e-5, rtol=0
    )

    def keep_negative(x, ctx):
        return ctx.update(x, lambda c: c.clamp(max=0))

    with ablate(model, basis[:1], layers=1, op=keep_negative):
        after, _ = _act(model, PROMPTS)
    c = before @ basis[0]
    want = before + (c.clamp(max=0) - c)[..., None] * basis[0]
    torch.testing.assert_close(after, want, atol=1e-5, rtol=0)


def test_operator_errors_are_named(model, basis):
    assert set(OPERATORS) == {"project", "mean", "resample", "zero", "add"}
    with pytest.raises(InterpError, match="resample.*needs reference"):
        with ablate(model, basis, layers=1, op=resample):
            pass
    with pytest.raises(InterpError, match="mode must be one of"):
        with ablate(model, basis, layers=1, mode="nope"):
            pass
    with pytest.raises(InterpError, match="not both"):
        with ablate(model, basis, layers=1, op=zero, mode="mean"):
            pass
    with pytest.raises(InterpError, match="needs a target"):
        with ablate(model, None, layers=1, op=project):
            _act(model, PROMPTS)
    assert hook_count(model.hf) == 0
