"""One positions model: capture, steer and ablate read each prompt's own tokens.

Every batched check mixes prompt lengths (left padding) and compares each prompt against
the same prompt run alone; a view of a ModelPair never sees the other view's hooks.
"""

from __future__ import annotations

import pytest
import torch

from interp import Direction, Span, ablate, capture, steer
from interp.errors import PositionError
from interp.hooks import hook_count
from interp.models import Model
from interp.positions import normalize, resolve, span_tokens
from interp.testing import tiny_model

SHORT = "Name a bird"
LONG = "The year is 1984 and the assistant answers the question about birds"
FAMILIES = ("llama", "gpt2", "gpt_neox", "gemma2")


def _last_logits(model, texts):
    """Logits of every real token of each text, run as one left-padded batch: list of [n_i, V]."""
    b = model.tokenize(texts)
    with torch.no_grad():
        logits = model.forward(b["input_ids"], b["attention_mask"]).logits
    n = b["attention_mask"].sum(1).tolist()
    return [logits[i, logits.shape[1] - k :] for i, k in enumerate(n)]


def _unit(d, seed):
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


# ---- the spec ------------------------------------------------------------------------
def test_resolve_counts_in_each_prompts_own_tokens():
    assert resolve("last", [3, 5]) == [[2], [4]]
    assert resolve("all", [2, 3]) == [[0, 1], [0, 1, 2]]
    assert resolve([0, -1], [3, 5]) == [[0, 2], [0, 4]]
    assert resolve(Span("t", "first"), [4, 4], spans=[[1, 2], [2, 3]]) == [[1], [2]]
    assert resolve("t", [4, 4], spans=[[1, 2], [2, 3]]) == [[2], [3]]
    assert resolve(Span("t", "all"), [4], spans=[[1, 2]]) == [[1, 2]]
    assert span_tokens([(0, 3), (3, 7), (7, 7), (7, 9)], (4, 8)) == [1, 3]


@pytest.mark.parametrize(
    "bad, match",
    [
        (True, "ints"),
        ([], "empty"),
        ([1.5], "ints"),
        ("", "tag"),
        (object(), "positions"),
    ],
)
def test_bad_specs_are_errors(bad, match):
    with pytest.raises(PositionError, match=match):
        normalize(bad)


def test_span_which_is_checked():
    with pytest.raises(PositionError, match="which"):
        Span("year", "middle")


def test_missing_position_names_the_prompt():
    with pytest.raises(PositionError, match="prompt 1 .*3 tokens"):
        resolve([4], [6, 3])
    with pytest.raises(PositionError, match="prompt 0"):
        resolve([-7], [6])


# ---- capture -------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("positions", ["last", "all", [0], [-1, 1]])
def test_capture_batched_equals_alone(family, positions):
    model = tiny_model(family, seed=3)
    both = capture(model, [LONG, SHORT], layers=[0, 1], positions=positions, progress=False)
    for i, text in enumerate([LONG, SHORT]):
        alone = capture(model, [text], layers=[0, 1], positions=positions, progress=False)
        rows = both.meta.prompt == i
        torch.testing.assert_close(
            both.tensor[torch.from_numpy(rows.to_numpy().copy())],
            alone.tensor,
            atol=1e-5,
            rtol=1e-4,
        )
        assert both.meta.position[rows].tolist() == alone.meta.position.tolist()


def test_capture_position_beyond_a_prompt_is_an_error():
    model = tiny_model("llama", seed=3)
    n_short = int(model.tokenize([SHORT])["attention_mask"].sum())
    with pytest.raises(PositionError, match="prompt 1"):
        capture(model, [LONG, SHORT], layers=[0], positions=[n_short], progress=False)


# ---- steer and ablate ----------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("positions", [[0], [2], [-1], [0, -2], "last"])
def test_steer_batched_equals_alone(family, positions):
    model = tiny_model(family, seed=4)
    v = _unit(model.d_model, 0)
    with steer(model, v, alpha=8.0, layers=0, positions=positions):
        both = _last_logits(model, [LONG, SHORT])
        alone = [_last_logits(model, [t])[0] for t in (LONG, SHORT)]
    plain = _last_logits(model, [SHORT])[0]
    for b, a in zip(both, alone, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(alone[1], plain, atol=1e-3)  # the short prompt was steered
    assert hook_count(model.hf) == 0


def test_steer_position_zero_edits_each_prompts_first_token():
    """Only token 0 of each prompt changes at the steered site; a pad column never does."""
    model = tiny_model("llama", seed=4)
    v = Direction(_unit(model.d_model, 1), layer=0, site="blocks.0.hook_resid_post")
    plain = capture(model, [LONG, SHORT], sites=v.site, positions="all", progress=False)
    with steer(model, v, alpha=3.0, positions=[0]):
        steered = capture(model, [LONG, SHORT], sites=v.site, positions="all", progress=False)
    diff = (steered.tensor - plain.tensor).norm(dim=-1)[:, 0]
    changed = steered.meta.position[(diff > 1e-5).numpy()].tolist()
    assert changed == [0, 0]
    torch.testing.assert_close(diff[diff > 1e-5], torch.full((2,), 3.0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("positions", [[1], [-1], "last"])
def test_ablate_batched_equals_alone(family, positions):
    model = tiny_model(family, seed=5)
    v = _unit(model.d_model, 2)
    with ablate(model, v, layers=[0, 1], positions=positions):
        both = _last_logits(model, [LONG, SHORT])
        alone = [_last_logits(model, [t])[0] for t in (LONG, SHORT)]
    for b, a in zip(both, alone, strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_intervention_position_beyond_a_prompt_is_an_error():
    model = tiny_model("llama", seed=4)
    with pytest.raises(PositionError, match="prompt 1 of the batch"):
        with steer(model, _unit(model.d_model, 0), alpha=1.0, layers=0, positions=[12]):
            _last_logits(model, [LONG, SHORT])
    assert hook_count(model.hf) == 0


def test_intervention_positions_in_generation():
    """Indices act on the prompt pass; 'last' acts on every new token."""
    model = tiny_model("llama", seed=4)
    b = model.tokenize([LONG, SHORT])
    kw = dict(max_new_tokens=4, do_sample=False)
    plain = model.generate(b["input_ids"], b["attention_mask"], **kw)
    with steer(model, _unit(model.d_model, 0), alpha=50.0, layers=0, positions=[0]):
        first = model.generate(b["input_ids"], b["attention_mask"], **kw)
        alone = model.generate(
            *(model.tokenize([SHORT])[k] for k in ("input_ids", "attention_mask")), **kw
        )
    assert first[1, -4:].tolist() == alone[0, -4:].tolist()
    assert plain.shape == first.shape


# ---- views ---------------------------------------------------------------------------
def _pair():
    from peft import LoraConfig, get_peft_model

    base = tiny_model("llama", seed=2)
    peft = get_peft_model(
        base.hf, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    ft = Model(hf=peft, tokenizer=base.tokenizer, name="ft", family=base.family, adapter_path="x")
    return ft.as_base(), ft


@pytest.mark.parametrize("which", ["base", "finetuned"])
@pytest.mark.parametrize("kind", ["steer", "ablate"])
def test_an_intervention_on_one_view_leaves_the_other_bit_identical(which, kind):
    base, ft = _pair()
    on, other = (base, ft) if which == "base" else (ft, base)
    v = _unit(ft.d_model, 7)
    before_other = _last_logits(other, [LONG, SHORT])
    before_on = _last_logits(on, [LONG, SHORT])
    ctx = steer(on, v, alpha=6.0, layers=1) if kind == "steer" else ablate(on, v, layers=[0, 1])
    with ctx:
        during_other = _last_logits(other, [LONG, SHORT])
        during_on = _last_logits(on, [LONG, SHORT])
    for a, b in zip(before_other, during_other, strict=True):
        assert torch.equal(a, b)
    assert not all(torch.allclose(a, b) for a, b in zip(before_on, during_on, strict=True))
    assert hook_count(ft.hf) == 0
