"""The patching specialisations are the generic engine at one site kind, and match a naive
one-forward-per-cell patch through the hook engine (batches that mix pair lengths)."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.causal.patching import (
    patch,
    patch_attn_out,
    patch_mlp_out,
    patch_resid_post,
    patch_resid_pre,
)
from interp.hooks import hooks
from interp.testing import tiny_model

CLEAN = ["The year is 1984 and the bird", "Hello world"]
CORRUPT = ["The year is 2031 and the bird", "Hello there"]


def logit_diff(last_logits):  # [n, vocab] -> [n]
    return last_logits[:, 5] - last_logits[:, 9]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=4, n_layers=2)


def _naive(model, site, pair, p):
    """Pair ``pair`` alone: its corrupted run with the clean activation at (site, p)."""
    cb, xb = model.tokenize([CLEAN[pair]]), model.tokenize([CORRUPT[pair]])
    kept = {}
    with torch.no_grad(), hooks(model, {site: lambda a, s: kept.setdefault("a", a)}):
        model.forward(cb["input_ids"], cb["attention_mask"])

    def put(a, s):
        a = a.clone()
        a[:, p] = kept["a"][:, p]
        return a

    with torch.no_grad(), hooks(model, {site: put}):
        logits = model.forward(xb["input_ids"], xb["attention_mask"]).logits[:, -1]
    return float(logit_diff(logits)[0])


@pytest.mark.parametrize(
    "special,kind",
    [
        (patch_resid_pre, "resid_pre"),
        (patch_attn_out, "attn_out"),
        (patch_mlp_out, "mlp_out"),
        (patch_resid_post, "resid_post"),
    ],
)
def test_each_specialisation_is_the_engine_at_its_kind(model, special, kind):
    got = special(model, CLEAN, CORRUPT, metric=logit_diff, layers=[1])
    want = patch(model, CLEAN, CORRUPT, metric=logit_diff, sites=kind, layers=[1])
    assert got.sites == want.sites == [f"blocks.1.hook_{kind}"]
    for g, w in zip(got.per_prompt, want.per_prompt, strict=True):
        torch.testing.assert_close(g, w, atol=0, rtol=0)
    for pair, p in [(0, 3), (1, -1)]:
        p = p % got.per_prompt[pair].shape[1]
        ref = _naive(model, f"blocks.1.hook_{kind}", pair, p)
        assert float(got.per_prompt[pair][0, p]) == pytest.approx(ref, abs=1e-5)
    assert special.__name__ == f"patch_{kind}" and kind in special.__doc__
    assert getattr(interp, f"patch_{kind}") is special
