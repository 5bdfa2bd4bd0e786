"""Dose-response and ablation effects against random controls, on a direction whose effect
is known: the unembedding difference of two tokens, steered at the last layer."""

from __future__ import annotations

import json

import pytest
import torch

from interp.causal.dose import ablation_effect, as_estimate, dose_response, reference_logprob
from interp.causal.interventions import residual_norm
from interp.directions import Direction
from interp.metrics.stats import Estimate, mean_ci
from interp.testing import tiny_model

PROMPTS = ["The year is 1984 and the bird", "Name a bird species", "Hello world"]
FLUENT = ["Hello world, this is a small corpus for a small tokenizer used in tests."]
A, B = 5, 9


@pytest.fixture(scope="module")
def setup():
    model = tiny_model("llama", seed=6)
    w = model.hf.get_output_embeddings().weight.detach()
    last = model.n_layers - 1
    u = Direction(w[A] - w[B], layer=last, site=f"blocks.{last}.hook_resid_post", name="a-minus-b")
    batch = model.tokenize(PROMPTS)

    @torch.no_grad()
    def metric(m):  # per-prompt next-token logit difference -> mean with t interval
        logits = m.forward(batch["input_ids"], batch["attention_mask"]).logits[:, -1]
        return logits[:, A] - logits[:, B]

    return model, u, metric


def test_dose_response_curve_band_and_guard(setup, tmp_path):
    model, u, metric = setup
    norms = residual_norm(model, PROMPTS, layers=u.layer)
    alphas = [-1.0, 0.0, 1.0]
    res = dose_response(
        model,
        u,
        alphas,
        metric,
        scale=norms,
        coherence=reference_logprob(FLUENT),
        n_random=3,
        seed=10,
    )
    curve = res.curve()
    assert [p.alpha for p in curve] == alphas
    base = as_estimate(metric(model))
    assert curve[1].value == base.value  # alpha 0: exactly the unsteered model
    assert curve[0].value < base.value < curve[2].value  # steering along a-b raises a over b
    band = res.band()
    assert set(band) == set(alphas) and all(lo <= mid <= hi for lo, mid, hi in band.values())
    assert band[0.0][0] == band[0.0][2] == base.value
    # the direction moves the metric more than any of the norm-matched random directions
    assert curve[2].value - base.value > band[1.0][2] - base.value
    assert curve[0].value - base.value < band[-1.0][0] - base.value
    guard0 = as_estimate(reference_logprob(FLUENT)(model))
    assert curve[1].coherence == guard0.value and all(p.coherence is not None for p in res.points)
    assert all(p.lo <= p.value <= p.hi for p in res.points)
    out = res.save(tmp_path / "dose", config={"note": "test"})
    frame = res.to_frame()
    assert len(frame) == 3 * 4 and set(frame["kind"]) == {"direction", "random"}
    meta = json.loads((out / "dose_response.json").read_text())
    assert meta["config"]["n_random"] == 3 and meta["config"]["note"] == "test"
    assert (out / "dose_response.csv").exists()


def test_ablation_effect_beats_random_controls(setup, tmp_path):
    model, u, metric = setup
    rows = ablation_effect(model, u, metric, n_random=4, seed=0)
    out = rows.save(tmp_path / "ablation", config={"note": "x"})
    assert json.loads((out / "ablation.json").read_text())["config"]["n_random"] == 4
    assert len(rows.to_frame()) == 6 == len(rows)
    assert [r.condition for r in rows] == ["none", "ablated"] + ["random"] * 4
    none = rows[0].value
    change = abs(rows[1].value - none)
    assert change > 0
    assert all(abs(r.value - none) < change for r in rows[2:])


def test_as_estimate_and_reference_logprob(tiny_llama):
    assert as_estimate(2.0) == Estimate(2.0, 2.0, 2.0, 1)
    assert as_estimate(torch.tensor([1.0, 2.0, 3.0])) == mean_ci([1.0, 2.0, 3.0])
    e = Estimate(0.5, 0.4, 0.6, 10)
    assert as_estimate(e) is e
    lp = reference_logprob(FLUENT + ["Hello"])(tiny_llama)
    assert lp.shape == (2,) and (lp < 0).all()
    # one text alone gives the same value as in a padded batch
    alone = reference_logprob(FLUENT)(tiny_llama)
    torch.testing.assert_close(alone[0], lp[0], atol=1e-5, rtol=0)
