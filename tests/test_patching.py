"""Activation patching: the fast exact engine equals one-forward-per-cell patching and
TransformerLens; attribution tracks exact where the signal is known."""

from __future__ import annotations

import pytest
import torch

from interp.causal.patching import PatchResult, patch
from interp.errors import InterpError
from interp.hooks import hook_count, hooks
from interp.sites import resolve_sites
from interp.testing import tiny_model

CLEAN = ["The year is 1984 and the bird", "Hello world"]
CORRUPT = ["The year is 2031 and the bird", "Hello there"]
KINDS = ["resid_pre", "attn_out", "mlp_out", "resid_post"]
A, B = 5, 9


def logit_diff(last_logits):  # [n, vocab] -> [n]
    return last_logits[:, A] - last_logits[:, B]


def naive_patch(model, clean, corrupt, kinds, metric):
    """Reference: each pair alone (no padding), one full corrupted forward per (site,
    position), via the hook engine. Returns site names and one [n_sites, n_i] map per pair."""
    sites = resolve_sites(kinds, model.n_layers)
    maps = []
    for c, x in zip(clean, corrupt, strict=True):
        cb, xb = model.tokenize([c]), model.tokenize([x])
        acts: dict = {}
        keep = {s: lambda a, s, acts=acts: acts.__setitem__(s, a) for s in sites}
        with torch.no_grad(), hooks(model, keep):
            model.forward(cb["input_ids"], cb["attention_mask"])
        seq = cb["input_ids"].shape[1]
        out = torch.zeros(len(sites), seq)
        for i, site in enumerate(sites):
            for p in range(seq):

                def put(a, s, p=p, site=site, acts=acts):
                    a = a.clone()
                    a[:, p] = acts[site][:, p]
                    return a

                with torch.no_grad(), hooks(model, {site: put}):
                    logits = model.forward(xb["input_ids"], xb["attention_mask"]).logits[:, -1]
                out[i, p] = metric(logits)[0]
        maps.append(out)
    return [s.name for s in sites], maps


def assert_maps_close(got, ref, **kw):
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, **kw)


@pytest.mark.parametrize(
    "family,kinds",
    [
        ("llama", KINDS),
        ("gpt2", ["resid_pre", "attn_out"]),
        ("gemma2", ["mlp_out", "resid_post"]),
        ("gpt_neox", ["resid_pre", "mlp_out"]),
    ],
)
def test_exact_equals_one_forward_per_cell(family, kinds):
    model = tiny_model(family, seed=3, n_layers=3)
    names, ref = naive_patch(model, CLEAN, CORRUPT, kinds, logit_diff)
    for chunk, reuse in ((1, True), (3, True), (100, False)):
        res = patch(
            model, CLEAN, CORRUPT, metric=logit_diff, sites=kinds, chunk=chunk, reuse_prefix=reuse
        )
        assert res.sites == names
        assert_maps_close(res.per_prompt, ref, atol=1e-5, rtol=1e-5)
        assert res.align == "end"  # the two pairs differ in length
        width = min(m.shape[1] for m in ref)  # the columns both pairs have, from the end
        both = torch.stack([m[:, -width:] for m in ref]).mean(0)
        torch.testing.assert_close(res.values[:, -width:], both, atol=1e-5, rtol=1e-5)
        assert res.counts[-width:] == [2] * width
    assert hook_count(model.hf) == 0


@pytest.mark.parametrize("n_prompts", [1, 2])
def test_exact_with_sdpa_attention(n_prompts):
    """sdpa passes no mask when nothing is padded; the suffix runs must build one."""
    model = tiny_model("llama", seed=3, n_layers=3)
    model.hf.set_attn_implementation("sdpa")
    clean, corrupt = CLEAN[:n_prompts], CORRUPT[:n_prompts]
    _, ref = naive_patch(model, clean, corrupt, ["resid_pre", "attn_out"], logit_diff)
    res = patch(model, clean, corrupt, metric=logit_diff, sites=["resid_pre", "attn_out"], chunk=2)
    assert_maps_close(res.per_prompt, ref, atol=1e-5, rtol=1e-5)


def test_last_layer_last_position_reproduces_clean(tiny_llama):
    model = tiny_llama
    last = model.n_layers - 1
    res = patch(model, CLEAN, CORRUPT, metric=logit_diff, sites=KINDS, layers=last, positions=-1)
    assert res.clean_value != pytest.approx(res.corrupt_value, abs=1e-4)
    layers, grid = res.grid("resid_post")
    assert layers == [last]
    assert float(grid[0, 0]) == pytest.approx(res.clean_value, abs=1e-5)
    torch.testing.assert_close(
        res.normalized()[res.sites.index(f"blocks.{last}.hook_resid_post")], torch.ones(1)
    )
    # with a single differing token, patching it at the embedding recovers the clean run
    ids = model.tokenize(CLEAN[:1])["input_ids"]
    other = ids.clone()
    other[0, 3] = (ids[0, 3] + 7) % 300 + 4
    mask = torch.ones_like(ids)
    one = patch(
        model,
        {"input_ids": ids, "attention_mask": mask},
        {"input_ids": other, "attention_mask": mask},
        metric=logit_diff,
        sites="resid_pre",
        layers=0,
    )
    assert float(one.values[0, 3]) == pytest.approx(one.clean_value, abs=1e-5)
    others = torch.cat([one.values[0, :3], one.values[0, 4:]])
    torch.testing.assert_close(
        others, torch.full_like(others, one.corrupt_value), atol=1e-5, rtol=0
    )


def test_exact_matches_transformer_lens():
    from transformer_lens import patching as tl_patching

    from interp.interop import to_transformer_lens

    model = tiny_model("gpt2", seed=4)
    ids = model.tokenize(["The year is 1984 and the bird", "The year is 2031 and the bird"])
    clean = {"input_ids": ids["input_ids"][:1], "attention_mask": ids["attention_mask"][:1]}
    corrupt = {"input_ids": ids["input_ids"][1:], "attention_mask": ids["attention_mask"][1:]}
    ours = patch(model, clean, corrupt, metric=logit_diff, sites="resid_pre")

    bridge = to_transformer_lens(model)
    bridge.eval()
    with torch.no_grad():
        _, cache = bridge.run_with_cache(clean["input_ids"])
        theirs = tl_patching.get_act_patch_resid_pre(
            bridge, corrupt["input_ids"], cache, lambda logits: logit_diff(logits[:, -1]).mean()
        )
    assert theirs.shape == ours.values.shape == (model.n_layers, clean["input_ids"].shape[1])
    assert (ours.values - theirs.cpu()).abs().max() < 1e-4
    assert theirs.abs().max() > 1e-3  # a real map, not all zeros


def _planted_model():
    """GPT-2 whose token 40 writes a strong logit-difference direction into the residual."""
    model = tiny_model("gpt2", seed=5)
    wte = model.hf.transformer.wte.weight
    with torch.no_grad():
        u = wte[A] - wte[B]
        wte[40] += u / u.norm() * wte.norm(dim=-1).mean()
    return model


@pytest.mark.parametrize("planted_at", [5, 2])
def test_attribution_tracks_exact_on_planted_signal(planted_at):
    """Token 40 at ``planted_at`` carries the signal; at 2 it must travel by attention."""
    model = _planted_model()
    ids = torch.tensor([[10, 11, 12, 13, 14, 15]])
    ids[0, planted_at] = 40
    other = ids.clone()
    other[0, planted_at] = 41
    mask = torch.ones_like(ids)
    clean = {"input_ids": ids, "attention_mask": mask}
    corrupt = {"input_ids": other, "attention_mask": mask}
    sites = ["resid_pre", "resid_post"]
    exact = patch(model, clean, corrupt, metric=logit_diff, sites=sites)
    attr = patch(model, clean, corrupt, metric=logit_diff, sites=sites, mode="attribution")
    assert attr.clean_value == pytest.approx(exact.clean_value, abs=1e-5)
    assert attr.corrupt_value == pytest.approx(exact.corrupt_value, abs=1e-5)
    e = exact.values.flatten() - exact.corrupt_value
    a = attr.values.flatten() - attr.corrupt_value
    assert e.abs().max() > 1e-2  # patching moves the metric: there is a signal to find
    assert torch.corrcoef(torch.stack([a, e]))[0, 1] > 0.8
    assert e.abs()[a.abs().argmax()] > e.abs().max() - 1e-5  # attribution's top cell is exact's
    assert all(p.grad is None for p in model.hf.parameters())  # no weight gradients


def test_scalar_metric_and_batches_and_errors(tiny_llama):
    model = tiny_llama
    clean, corrupt = [CLEAN[0], CLEAN[0]], [CORRUPT[0], CLEAN[0]]  # one length
    kw = dict(sites="resid_post", layers=[0, 2])
    res = patch(model, clean, corrupt, metric=lambda lg: logit_diff(lg).mean(), **kw)
    per = patch(model, clean, corrupt, metric=logit_diff, **kw)
    assert res.per_prompt is None and len(per.per_prompt) == 2
    assert per.per_prompt[0].shape == (2, res.values.shape[1])
    torch.testing.assert_close(res.values, per.values, atol=1e-5, rtol=0)
    enc = model.tokenize(CLEAN + CORRUPT)  # a padded batch: rows are stripped of padding
    batch = patch(
        model, {k: v[:2] for k, v in enc.items()}, {k: v[2:] for k, v in enc.items()},
        metric=logit_diff, **kw,
    )  # fmt: skip
    strings = patch(model, CLEAN, CORRUPT, metric=logit_diff, **kw)
    assert_maps_close(batch.per_prompt, strings.per_prompt, atol=1e-6, rtol=0)
    with pytest.raises(InterpError, match="scalar"):
        patch(model, CLEAN, CORRUPT, metric=lambda lg: logit_diff(lg).mean(), **kw)
    with pytest.raises(InterpError, match=r"pair 0: .*clean \d+ tokens, corrupt \d+ tokens"):
        patch(model, ["a b c d e f"], ["a"], metric=logit_diff)
    with pytest.raises(InterpError, match="mode"):
        patch(model, CLEAN, CORRUPT, metric=logit_diff, mode="fast")
    with pytest.raises(InterpError, match="does not exist in prompt 1"):
        patch(model, CLEAN, CORRUPT, metric=logit_diff, positions=[9])
    with pytest.raises(InterpError, match="align='start'"):
        patch(model, CLEAN, CORRUPT, metric=logit_diff, align="start")


def test_tag_alignment_lines_up_the_tag_across_pairs(tiny_llama):
    """Questions of different lengths after a tagged year: the aggregate's 'year' column is
    the mean of each pair's own year token, whatever its padded column would have been."""
    from interp.prompts import PromptSet

    model = tiny_llama
    questions = ["Name a bird", "What should be done about the weak and the strong now"]
    clean = PromptSet.grid("The year is {year} . {q}", chat=False, year=[1984], q=questions)
    corrupt = [f"The year is 2031 . {q}" for q in questions]
    res = patch(model, clean, corrupt, metric=logit_diff, sites="resid_pre", align="year")
    _, ref = naive_patch(model, clean.prompts, corrupt, ["resid_pre"], logit_diff)
    assert_maps_close(res.per_prompt, ref, atol=1e-5, rtol=1e-5)
    year = [t for t in model.tokenizer.tokenize(" 1984")]
    col = res.tokens.index(f"year[0]:{year[0]}")
    own = [res.prompt_tokens[i].index(year[0]) for i in range(2)]
    want = torch.stack([ref[i][:, own[i]] for i in range(2)]).mean(0)
    torch.testing.assert_close(res.values[:, col], want, atol=1e-5, rtol=1e-5)
    assert res.counts[col] == 2
    assert res.tokens[0].startswith("year-")  # tokens before the tag come first
    last = res.tokens[-1]
    assert last.startswith("year+") and res.counts[-1] == 1  # only the long question has it


def test_result_table_and_save(tiny_llama, tmp_path):
    import json

    import pandas as pd

    res = patch(
        tiny_llama,
        CLEAN,
        CORRUPT,
        metric=logit_diff,
        sites=["resid_pre", "mlp_out"],
        layers=[1],
        positions=[-2, -1],
    )
    assert isinstance(res, PatchResult)
    frame = res.to_frame()
    assert len(frame) == 4 and set(frame["kind"]) == {"resid_pre", "mlp_out"}
    assert frame["token"].str.match(r"^-\d+:").all()  # pairs differ in length: from the end
    out = res.save(tmp_path / "run", config={"seed": 0})
    back = pd.read_csv(out / "patching.csv")
    assert back["value"].tolist() == pytest.approx(frame["value"].tolist())
    meta = json.loads((out / "patching.json").read_text())
    assert meta["config"]["seed"] == 0 and meta["mode"] == "exact"


def test_exact_on_adapter_views_and_under_an_intervention():
    from peft import LoraConfig, get_peft_model

    from interp.causal.interventions import random_directions, steer
    from interp.models import Model

    base = tiny_model("llama", seed=8, n_layers=3)
    lora = LoraConfig(r=2, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
    peft = get_peft_model(base.hf, lora)
    ft = Model(hf=peft, tokenizer=base.tokenizer, name="ft", family=base.family, adapter_path="x")
    kinds = ["resid_pre", "mlp_out"]
    clean, corrupt = ["Hello world, the bird"], ["Hello there, the bird"]
    results = []
    for view in (ft, ft.as_base()):
        _, ref = naive_patch(view, clean, corrupt, kinds, logit_diff)
        res = patch(view, clean, corrupt, metric=logit_diff, sites=kinds, chunk=3)
        assert_maps_close(res.per_prompt, ref, atol=1e-5, rtol=1e-5)
        results.append(res.values)
    assert not torch.allclose(results[0], results[1])  # the adapter matters
    v = random_directions(ft.d_model, 1, seed=0)[0]
    with steer(ft, v, alpha=3.0, layers=1, site="resid_pre"), steer(ft, v, alpha=2.0, layers=0):
        _, ref = naive_patch(ft, clean, corrupt, kinds, logit_diff)
        res = patch(ft, clean, corrupt, metric=logit_diff, sites=kinds, layers=[0, 2], chunk=3)
    keep = [i for i, s in enumerate(resolve_sites(kinds, 3)) if s.layer in (0, 2)]
    assert_maps_close(res.per_prompt, [m[keep] for m in ref], atol=1e-5, rtol=1e-5)
    assert hook_count(ft.hf) == 0


def test_attribution_batched_equals_one_prompt_at_a_time(tiny_llama):
    both = patch(tiny_llama, CLEAN, CORRUPT, metric=logit_diff, sites=KINDS, mode="attribution")
    for i in range(2):
        one = patch(
            tiny_llama,
            CLEAN[i : i + 1],
            CORRUPT[i : i + 1],
            metric=logit_diff,
            sites=KINDS,
            mode="attribution",
        )
        torch.testing.assert_close(both.per_prompt[i], one.per_prompt[0], atol=1e-5, rtol=1e-4)


def test_a_small_memory_budget_splits_groups_and_chunks_without_changing_values(tiny_llama):
    """Under a budget too small for one batch, every pair and position runs in its own
    piece; the maps are the same as with the default budget."""
    clean = [CLEAN[0], CLEAN[0], CLEAN[1]]
    corrupt = [CORRUPT[0], CLEAN[0], CORRUPT[1]]
    kw = dict(metric=logit_diff, sites=["resid_pre", "mlp_out"])
    big = patch(tiny_llama, clean, corrupt, **kw)
    small = patch(tiny_llama, clean, corrupt, memory=1, **kw)
    assert_maps_close(small.per_prompt, big.per_prompt, atol=1e-5, rtol=1e-5)
    with pytest.raises(InterpError, match="memory"):
        patch(tiny_llama, clean, corrupt, memory=0, **kw)
