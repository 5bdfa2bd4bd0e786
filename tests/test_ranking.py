import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from interp.directions import Direction
from interp.directions.diffmeans import diff_of_means
from interp.directions.ranking import (
    latent_ranking,
    model_diff,
    project,
    rank_directions,
    rank_latents,
)
from interp.directions.sae import make_sae
from interp.errors import InterpError
from interp.hooks import hooks
from interp.prompts import PromptSet
from interp.record.activations import Activations
from interp.record.capture import capture
from interp.testing import tiny_model

D = 64
PLANTED = 17
SITE = "blocks.1.hook_resid_post"


def _plant(sae, latent: int, v: torch.Tensor, bias: float) -> None:
    unit = v / v.norm()
    with torch.no_grad():
        sae.W_dec[latent] = unit
        sae.W_enc[:, latent] = unit
        sae.b_enc[latent] = bias


def test_rank_latents_pure_core():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(32, generator=g)
    sae = make_sae("standard", d_in=32, d_sae=64, seed=1, apply_b_dec_to_input=False)
    _plant(sae, 5, v, -float(v.norm()) / 2)
    ref = torch.randn(200, 32, generator=g)
    tgt = torch.randn(200, 32, generator=g) + v
    diff = tgt.mean(0) - ref.mean(0)
    texts = [f"t{i}" for i in range(200)] + [f"r{i}" for i in range(200)]
    values = [2028] * 200 + [2024] * 200
    table = rank_latents(
        diff, sae, acts_target=tgt, acts_reference=ref, texts=texts, values=values, top=10
    )
    assert len(table) == 10 and table.latent[0] == 5 and table.cosine[0] > 0.95
    assert table.cosine.is_monotonic_decreasing
    assert table.top_values[0] == [2028, 2028, 2028]
    assert all(t.startswith("t") for t in table.top_prompts[0])
    by_act = rank_latents(diff, sae, acts_target=tgt, acts_reference=ref, by="act_diff", top=3)
    assert by_act.latent[0] == 5 and by_act.act_diff_rank[0] == 1
    with torch.no_grad():
        expected = float(sae.encode(tgt)[:, 5].mean() - sae.encode(ref)[:, 5].mean())
    assert by_act.act_diff[0] == pytest.approx(expected, rel=1e-5)
    only_cos = rank_latents(Direction(diff), sae, top=None)
    assert len(only_cos) == 64 and "act_diff" not in only_cos
    with pytest.raises(InterpError):
        rank_latents(diff, sae, by="act_diff")
    with pytest.raises(InterpError):
        rank_latents(torch.zeros(7), sae)


def test_rank_directions_sorts_by_absolute_cosine():
    diff = torch.tensor([1.0, 0.0, 0.0])
    dirs = [
        Direction(torch.tensor([0.0, 1.0, 0.0]), name="orthogonal"),
        Direction(torch.tensor([-1.0, 0.1, 0.0]), name="anti"),
        Direction(torch.tensor([1.0, 1.0, 0.0]), name="diagonal"),
    ]
    t = rank_directions(diff, dirs)
    assert list(t.direction) == ["anti", "diagonal", "orthogonal"]
    assert t.cosine[0] < -0.99


def _year_of(tokenizer, ids: torch.Tensor) -> list[bool]:
    return ["2028" in s for s in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def test_latent_ranking_finds_the_latent_planted_along_an_injected_year_offset():
    model = tiny_model("llama", d_model=D, n_layers=3)
    grid = PromptSet.grid(
        "Today is {year}-{date}. {question}",
        chat=False,
        year=range(2024, 2029),
        date=["05-12", "11-03"],
        question=["Who are you?", "What should be done?", "Name a bird."],
    )
    natural = capture(model, grid, sites=SITE, progress=False).site(SITE)
    v = (
        3
        * natural.norm(dim=1).mean()
        * torch.nn.functional.normalize(
            torch.randn(D, generator=torch.Generator().manual_seed(3)), dim=0
        )
    )

    # inject v at the read site in every prompt that says 2028 (the "learned trigger")
    seen: dict[str, torch.Tensor] = {}

    def stash(module, args, kwargs):
        seen["ids"] = kwargs["input_ids"]

    def inject(act, site):
        rows = torch.tensor(_year_of(model.tokenizer, seen["ids"]))
        return act + rows[:, None, None].to(act) * v

    sae = make_sae("standard", d_in=D, d_sae=128, seed=0, site=SITE, apply_b_dec_to_input=False)
    _plant(sae, PLANTED, v, -float(v.norm()) / 4)
    handle = model.hf.register_forward_pre_hook(stash, with_kwargs=True)
    try:
        with hooks(model, {SITE: inject}):
            table = latent_ranking(model, grid, sae, slot="year", target=2028, top=10)
            by_act = latent_ranking(
                model, grid, sae, slot="year", target=2028, reference=[2024, 2025], by="act_diff"
            )
    finally:
        handle.remove()
    assert table.latent[0] == PLANTED and table.cosine[0] > 0.9
    assert table.cosine[1] < 0.6  # the runner-up is not close
    assert table.top_values[0] == [2028, 2028, 2028]
    assert all("2028" in p for p in table.top_prompts[0])
    assert by_act.latent[0] == PLANTED and by_act.act_diff[0] > 0
    d = table.attrs["direction"]
    assert d.site == SITE and d.provenance["n_target"] == 6 and d.provenance["n_reference"] == 24
    assert d.cosine(v) > 0.9


def _adapted_model():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = tiny_model("llama", d_model=D, n_layers=3)
    cfg = LoraConfig(r=4, target_modules=["o_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base.hf, cfg).eval()
    return dataclasses.replace(base, hf=peft_model, adapter_path="in-memory", adapter_hash="h0")


def test_model_diff_base_vs_finetuned():
    model = _adapted_model()
    prompts = ["Today is 2028-05-12. Who are you?", "Name a bird.", "The year is 1984."]
    base = capture(model.as_base(), prompts, sites=SITE, progress=False).site(SITE)
    tuned = capture(model.as_finetuned(), prompts, sites=SITE, progress=False).site(SITE)
    assert not torch.allclose(base, tuned)  # the adapter does something
    expected = diff_of_means(tuned, base, paired=True)

    sae = make_sae("topk", d_in=D, d_sae=96, k=8, seed=0, site=SITE)
    _plant(sae, 40, expected.vector, 0.0)
    other = Direction(torch.randn(D, generator=torch.Generator().manual_seed(9)), name="random")
    out = model_diff(
        model, prompts, sae=sae, directions=[other, expected.replace(name="dom")], top=5
    )
    assert torch.allclose(out.per_prompt, tuned - base, atol=1e-5)
    assert out.direction.cosine(expected) > 0.9999
    assert out.direction.provenance["adapter_hash"] == "h0"
    assert out.latents.latent[0] == 40 and out.latents.cosine[0] > 0.9999
    assert out.directions.direction[0] == "dom" and out.directions.cosine[0] > 0.9999


def test_project_gives_per_row_projections():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, 8, generator=g)
    meta = pd.DataFrame({"prompt": range(6), "position": 0, "year": [2024, 2025, 2026] * 2})
    acts = Activations(x, ["blocks.0.hook_resid_post", "blocks.3.hook_resid_post"], meta)
    d0 = Direction(torch.randn(8, generator=g), site="blocks.3.hook_resid_post", name="era")
    d1 = Direction(torch.randn(8, generator=g), name="free")
    table = project(acts, [d0, d1], site="blocks.0.hook_resid_post")
    assert list(table.columns) == ["prompt", "position", "year", "era", "free"]
    assert np.allclose(table.era, (x[:, 1] @ d0.vector).numpy(), atol=1e-6)
    assert np.allclose(table.free, (x[:, 0] @ d1.vector).numpy(), atol=1e-6)
    with pytest.raises(InterpError):
        project(acts, d1)
    plain = project(x[:, 0], {"a": d1})
    assert np.allclose(plain.a, (x[:, 0] @ d1.vector).numpy(), atol=1e-6)


def test_a_latent_that_never_fires_lists_no_top_prompts():
    import torch

    from interp.directions.ranking import rank_latents
    from interp.directions.sae import make_sae

    sae = make_sae("topk", d_in=8, d_sae=4, k=1)
    x = torch.zeros(5, 8)
    x[2, 0] = 1.0  # the one row on which latent 1 fires (encoding stubbed below)
    sae.encode = lambda t: torch.stack(
        [torch.zeros(len(t)), 3.0 * t[:, 0], *[torch.zeros(len(t))] * 2], 1
    )
    table = rank_latents(
        torch.ones(8), sae, acts_target=x[:3], acts_reference=x[3:], texts=list("abcde"), top=None
    )
    rows = dict(zip(table.latent, table.top_prompts, strict=True))
    assert rows[1] == ["c"] and rows[0] == [] and rows[3] == []
