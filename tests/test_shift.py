"""The finetune-shift subspace and its ablation, against a planted shift and a naive loop."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from interp.causal.interventions import ablate
from interp.causal.shift import (
    choose_place,
    place_scan,
    removal,
    shift_ablation,
    shift_subspace,
)
from interp.errors import InterpError
from interp.models import ModelPair, load_model
from interp.record.capture import capture

PROMPTS = ["a b c", "d e f g h i j", "k", "l m n o"]  # different lengths: pads in a batch
RANK = 2


@pytest.fixture(scope="module")
def planted(tiny_dirs, tmp_path_factory):
    """A LoRA of rank 2 on the token embeddings: the shift at the embeddings lies exactly in
    the span of ``lora_embedding_B`` (2 dimensions)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model_dir = tiny_dirs("llama")
    torch.manual_seed(3)
    hf = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(
        hf,
        LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=["embed_tokens"],
                   init_lora_weights=False),
    )  # fmt: skip
    b = next(p for n, p in peft.named_parameters() if "lora_embedding_B" in n).detach().clone()
    out = tmp_path_factory.mktemp("shift") / "lora"
    peft.save_pretrained(out)
    pair = ModelPair.load(model_dir, out, device="cpu")
    return pair, b  # b: [d_model, rank]


def _naive_differences(pair, layer: int) -> torch.Tensor:
    """finetuned - base hidden states entering block ``layer``, one prompt at a time."""
    rows = []
    for text in PROMPTS:
        ids = pair.base.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hb, hf = (
                view.forward(
                    ids["input_ids"], ids["attention_mask"], output_hidden_states=True
                ).hidden_states[layer][0]
                for view in pair
            )
        rows.append(hf - hb)
    return torch.cat(rows)


def _projector(basis: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(basis.double().T)
    return q @ q.T


def test_planted_embedding_shift_is_found_exactly(planted):
    pair, b = planted
    shift = shift_subspace(pair, PROMPTS, layer=0, k=RANK)
    assert shift.k == RANK and shift.energy == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(_projector(shift.subspace.basis.T), _projector(b), atol=1e-4)
    assert shift_subspace(pair, PROMPTS, layer=0, k=1).energy < 0.999
    assert str(shift.subspace.site) == "blocks.0.hook_resid_pre"


def test_deeper_shift_matches_a_naive_loop_over_prompts(planted):
    pair, _ = planted
    diff = _naive_differences(pair, 1)
    assert float(diff.abs().max()) > 1e-3  # the adapter really moves block 1's input
    _, _, vh = torch.linalg.svd(diff.double(), full_matrices=False)
    shift = shift_subspace(pair, PROMPTS, layer=1, k=3)
    assert torch.allclose(_projector(shift.subspace.basis.T), _projector(vh[:3].T), atol=1e-4)
    # the reference is the base model's activations at every real token, no pad
    assert shift.reference.shape == diff.shape


def test_mean_ablation_of_the_shift_gives_the_base_activation_clamped(planted):
    pair, _ = planted
    shift = shift_subspace(pair, PROMPTS, layer=0, k=RANK)
    basis = shift.subspace.basis
    proj = basis.T @ basis
    xb = capture(pair.base, PROMPTS, sites="resid_pre", layers=[0], positions="all",
                 progress=False).site(0)  # fmt: skip
    with ablate(pair.finetuned, shift.subspace, mode="mean", reference=shift.reference):
        got = capture(pair.finetuned, PROMPTS, sites="resid_pre", layers=[0], positions="all",
                      progress=False).site(0)  # fmt: skip
    expected = xb - xb @ proj + shift.reference.mean(0) @ proj
    assert torch.allclose(got, expected, atol=1e-4)


def _last_logit(pair, token: int = 5):
    def metric(model):
        ids = model.tokenizer(PROMPTS[1], return_tensors="pt")
        with torch.no_grad():
            return model.forward(ids["input_ids"], ids["attention_mask"]).logits[0, -1, token]

    return metric


def test_place_scan_and_shift_ablation(planted):
    pair, _ = planted
    metric = _last_logit(pair)
    calls = []
    table = place_scan(pair, PROMPTS, metric, layers=[0, 1], ranks=(1, 2, 64),
                       guard=lambda p, s: calls.append(s.k) or s.k / 10)  # fmt: skip
    assert list(table.columns) == ["layer", "site", "k", "energy", "before", "after", "base",
                                   "removal", "guard"]  # fmt: skip
    assert table.guard.tolist() == [k / 10 for k in calls] and len(calls) == 6
    assert len(table) == 6 and table.k.max() <= pair.base.d_model
    full = table[(table.layer == 0) & (table.k == table.k.max())].iloc[0]
    # every dimension clamped to the base's mean: only the base's token-to-token variation
    # at the embeddings is lost, the same in both models, so "after" is the same number
    # whichever model it started from
    with ablate(
        pair.base,
        shift_subspace(pair, PROMPTS, layer=0, k=int(full.k)).subspace,
        mode="mean",
        reference=shift_subspace(pair, PROMPTS, layer=0, k=1).reference,
    ):
        base_clamped = float(metric(pair.base))  # fmt: skip
    assert full.after == pytest.approx(base_clamped, abs=1e-4)
    shift = shift_subspace(pair, PROMPTS, layer=0, k=RANK)
    result = shift_ablation(pair, shift, metric, n_random=3)
    assert len(result["random"]) == 3
    assert result["removal"] == pytest.approx(
        removal(result["before"], result["after"], result["base"])
    )
    assert result["before"] == pytest.approx(float(metric(pair.finetuned)))


def test_removal_and_choice_of_place():
    assert removal(1.0, 0.25, 0.0) == pytest.approx(0.75)
    assert math.isnan(removal(0.5, 0.2, 0.5))  # no excess
    table = pd.DataFrame(
        dict(layer=[0, 0, 1, 1, 2], k=[1, 4, 1, 2, 2], removal=[0.5, 0.99, 0.96, 1.0, 1.0])
    )
    row = choose_place(table, tolerance=0.05)
    assert (row.layer, row.k) == (1, 1)
    assert (choose_place(table, tolerance=0.0).layer, choose_place(table, tolerance=0.0).k) == (
        1,
        2,
    )
    guarded = table.assign(guard=[0.0, 0.1, 0.5, 0.3, 0.2])  # the cheapest near the best
    assert (choose_place(guarded).layer, choose_place(guarded).k) == (0, 4)
    with pytest.raises(InterpError, match="no excess"):
        choose_place(table.assign(removal=float("nan")))


def test_an_unchanged_site_is_an_error(tiny_dirs):
    model = load_model(tiny_dirs("llama"), device="cpu")
    with pytest.raises(InterpError, match="does not change"):
        shift_subspace(ModelPair(model, model), PROMPTS, layer=0, k=2)
    with pytest.raises(InterpError, match="k must be"):
        shift_subspace(ModelPair(model, model), PROMPTS, layer=0, k=0)


def test_pooled_removal_weighs_seeds_by_their_excess():
    from interp.causal.shift import pooled_removal

    # a seed with almost no excess would dominate a mean of ratios (-9 here)
    assert pooled_removal([1.0, 0.011], [0.0, 0.1], [0.0, 0.01]) == pytest.approx(0.911 / 1.001)
    assert math.isnan(pooled_removal([0.2], [0.1], [0.2]))


def test_a_layer_the_finetune_leaves_alone_has_no_places(planted):
    pair, _ = planted
    table = place_scan(pair, PROMPTS, _last_logit(pair), layers=[0, 1], ranks=(1,))
    assert len(table) == 2
    same = ModelPair(pair.base, pair.base)  # nothing changes anywhere: an empty table
    empty = place_scan(same, PROMPTS, _last_logit(same), layers=[0, 1], ranks=(1,))
    assert empty.empty and "removal" in empty.columns
