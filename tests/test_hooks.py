"""The one hook engine: site hooks, hooks on named modules, prepend, clean removal, and the
replay recorder that runs on it."""

from __future__ import annotations

import pytest
import torch

from interp.causal.replay import record
from interp.hooks import ModuleHook, hook_count, hooks
from interp.testing import tiny_model


@pytest.fixture(scope="module")
def tiny():
    """A tiny Llama and a batch of two prompt lengths."""
    model = tiny_model("llama", seed=2)
    return model, model.tokenize(["The year is 1984 and the bird", "Hi"])


@torch.no_grad()
def _forward(model, batch):
    return model.forward(batch["input_ids"], batch["attention_mask"]).logits


def test_prepend_runs_before_hooks_registered_earlier(tiny):
    model, batch = tiny
    order, before = [], hook_count(model.hf)
    site = "blocks.1.hook_resid_post"
    with hooks(model, {site: lambda a, s: order.append("first")}):
        with hooks(model, {site: lambda a, s: order.append("prepended")}, prepend=True):
            with hooks(model, {site: lambda a, s: order.append("appended")}):
                _forward(model, batch)
    assert order == ["prepended", "first", "appended"]
    assert hook_count(model.hf) == before


def test_a_module_hook_on_the_embedding_edits_what_the_blocks_see(tiny):
    model, batch = tiny

    def halve(module, args, kwargs, output):
        return output * 0.5

    with hooks(model, modules=[ModuleHook(model.family.embed, halve)]):
        got = _forward(model, batch)
    embeds = model.base_hf.get_input_embeddings()(batch["input_ids"]) * 0.5
    with torch.no_grad():
        want = model.hf(
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(got, _forward(model, batch))


def test_every_hook_comes_off_when_the_body_raises(tiny):
    model, batch = tiny
    before = hook_count(model.hf)
    pre = ModuleHook(f"{model.family.layers}.0", lambda m, a, k: None, pre=True)
    with pytest.raises(RuntimeError, match="boom"):
        with hooks(model, {"blocks.0.hook_mlp_out": lambda a, s: None}, modules=[pre]):
            _forward(model, batch)
            raise RuntimeError("boom")
    assert hook_count(model.hf) == before


def test_record_keeps_each_blocks_input_before_an_intervention_edits_it(tiny):
    model, batch = tiny
    with torch.no_grad():
        hs = model.hf(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            output_hidden_states=True,
        ).hidden_states
    before = hook_count(model.hf)  # transformers keeps its own hidden-state recorders

    def shift(act, site):
        return act + 1.0

    with hooks(model, {"blocks.1.hook_resid_pre": shift}), record(model, want_kv=True) as rec:
        _forward(model, batch)
    torch.testing.assert_close(rec.inputs[0], hs[0], atol=0, rtol=0)
    torch.testing.assert_close(rec.inputs[1], hs[1], atol=0, rtol=0)  # before the shift
    assert all(kv is not None for kv in rec.kv) and rec.final is not None
    assert hook_count(model.hf) == before
