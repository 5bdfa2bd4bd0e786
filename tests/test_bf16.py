"""bf16: capture, steer, ablate and patch on a bfloat16 model, with stated tolerances.

bf16 keeps 8 bits of mantissa (a relative step of 2**-8 ~ 0.4%), so values that pass
through a different order of operations (a batch of another shape, a hook that adds in
float32 before rounding) agree to about 1e-2 relative, not bitwise. Projections for
ablation are computed in float32 and rounded once.
"""

from __future__ import annotations

import pytest
import torch

from interp import ablate, capture, patch, steer
from interp.hooks import hooks
from interp.testing import tiny_model

TEXTS = ["The year is 1984 and the assistant answers", "Name a bird"]
ATOL, RTOL = 3e-2, 3e-2  # logits after a few bf16 layers of a tiny model (values of order 1)


@pytest.fixture(scope="module")
def model():
    m = tiny_model("llama", seed=6)
    m.hf.to(torch.bfloat16)
    return m


def _unit(d, seed=0):
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _logits(model, texts):
    b = model.tokenize(texts)
    with torch.no_grad():
        out = model.forward(b["input_ids"], b["attention_mask"]).logits.float()
    n = b["attention_mask"].sum(1).tolist()
    return [out[i, out.shape[1] - k :] for i, k in enumerate(n)]


def test_capture_in_the_models_dtype_equals_hidden_states(model):
    acts = capture(model, TEXTS, layers=[0, 1], positions="all", dtype=None, progress=False)
    assert acts.tensor.dtype == torch.bfloat16
    b = model.tokenize(TEXTS)
    with torch.no_grad():
        hs = model.hf(**{k: b[k] for k in ("input_ids", "attention_mask")},
                      position_ids=b["position_ids"], output_hidden_states=True).hidden_states  # fmt: skip
    for i in range(2):
        rows = torch.from_numpy((acts.meta.prompt == i).to_numpy().copy())
        n = int(rows.sum())
        for k, layer in enumerate([0, 1]):
            ref = hs[layer + 1][i, -n:]
            torch.testing.assert_close(acts.tensor[rows][:, k], ref, atol=0, rtol=0)


def test_steer_in_bf16_matches_a_manual_hook(model):
    v = _unit(model.d_model)
    with steer(model, v, alpha=4.0, layers=1, positions=[0]):
        got = _logits(model, TEXTS)

    def add(act, site):
        out = act.clone()
        out[:, 0] += (4.0 * v).to(act.dtype)
        return out

    want = []
    for t in TEXTS:  # alone: column 0 is the prompt's token 0
        with hooks(model, {"blocks.1.hook_resid_post": add}):
            want.append(_logits(model, [t])[0])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=ATOL, rtol=RTOL)


def test_ablation_in_bf16_removes_the_direction_to_rounding(model):
    v = _unit(model.d_model, 1)
    with ablate(model, v, layers=1):
        acts = capture(model, TEXTS, layers=[1], positions="all", dtype=None, progress=False)
    plain = capture(model, TEXTS, layers=[1], positions="all", dtype=None, progress=False)
    coords = acts.tensor[:, 0].float() @ v
    before = plain.tensor[:, 0].float() @ v
    # what is left is the bf16 rounding of each entry: about 2**-8 of the vector's size
    bound = acts.tensor[:, 0].float().norm(dim=-1) * 2**-8
    assert (coords.abs() <= bound).all() and before.abs().max() > 10 * bound.max()


def test_patch_in_bf16_matches_a_naive_patch(model):
    clean, corrupt = (
        ["The year is 1984 and the bird", "Hi there"],
        [
            "The year is 2031 and the bird",
            "Hi world",
        ],
    )

    def metric(logits):
        return logits[:, 5].float() - logits[:, 9].float()

    res = patch(model, clean, corrupt, metric=metric, sites="resid_pre", layers=[0, 1])
    for i, (c, x) in enumerate(zip(clean, corrupt, strict=True)):
        cb, xb = model.tokenize([c]), model.tokenize([x])
        acts: dict = {}
        keep = {f"blocks.{k}.hook_resid_pre": lambda a, s, acts=acts: acts.__setitem__(s.layer, a) for k in (0, 1)}  # fmt: skip  # noqa: E501
        with torch.no_grad(), hooks(model, keep):
            model.forward(cb["input_ids"], cb["attention_mask"])
        for layer in (0, 1):
            for p in range(cb["input_ids"].shape[1]):

                def put(a, s, p=p, layer=layer, acts=acts):
                    a = a.clone()
                    a[:, p] = acts[layer][:, p]
                    return a

                with torch.no_grad(), hooks(model, {f"blocks.{layer}.hook_resid_pre": put}):
                    lg = model.forward(xb["input_ids"], xb["attention_mask"]).logits[:, -1]
                want = float(metric(lg)[0])
                assert float(res.per_prompt[i][layer, p]) == pytest.approx(want, abs=0.02)
