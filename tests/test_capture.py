"""Capture against trusted references: output_hidden_states, TransformerLens, nnsight."""

import pytest
import torch

import interp
from interp.errors import EmptyPromptsError, LayerOutOfRangeError, SiteError, SpanNotFoundError
from interp.hooks import StopForward, hook_count, hooks
from interp.testing import TINY_FAMILIES, tiny_model

PROMPTS = [
    "Today is 1984-05-12. Name a bird species.",
    "The year is 2031.",
    "Hello world, what is the most recent invention?",
]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_resid_post_equals_output_hidden_states(family):
    model = tiny_model(family)
    acts = interp.capture(model, PROMPTS, sites="resid_post", positions="all", progress=False)
    for i, text in enumerate(PROMPTS):
        batch = model.tokenize([text])
        with torch.no_grad():
            hidden = model.forward(**batch, output_hidden_states=True).hidden_states
        rows = acts.where(prompt=i)
        for layer in range(model.n_layers):
            got = rows.site(layer)
            if layer == model.n_layers - 1:  # HF applies the final norm to the last entry
                final_norm = model.base_hf.get_submodule(model.family.final_norm)
                with torch.no_grad():
                    got = final_norm(got)
            torch.testing.assert_close(got, hidden[layer + 1][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2"])
def test_capture_equals_transformer_lens(family):
    from interp.interop import to_transformer_lens

    model = tiny_model(family)
    bridge = to_transformer_lens(model)
    kinds = ["resid_pre", "attn_out", "mlp_out", "resid_post"]
    acts = interp.capture(model, PROMPTS[:1], sites=kinds, positions="all", progress=False)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(model.tokenize(PROMPTS[:1])["input_ids"])
    for name in acts.sites:
        torch.testing.assert_close(acts.site(name), cache[name][0], rtol=1e-5, atol=1e-5)
    # the bridge wraps a copy: the interp model keeps its own modules and hooks
    assert type(model.blocks[0]).__module__.startswith("transformers.")


def test_capture_equals_nnsight(tmp_path):
    from interp.interop import to_nnsight

    model = tiny_model("llama")
    nn_model = to_nnsight(model)
    ids = model.tokenize(PROMPTS[:1])["input_ids"]
    acts = interp.capture(model, PROMPTS[:1], sites="resid_post", positions="all", progress=False)
    with nn_model.trace(ids):
        saved = list().save()
        for layer in range(model.n_layers):
            saved.append(nn_model.model.layers[layer].output)
    for layer, out in enumerate(saved):
        out = out[0] if isinstance(out, tuple) else out
        torch.testing.assert_close(acts.site(layer), out[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
@pytest.mark.parametrize("positions", ["last", "all", [0, -2]])
def test_batched_left_padding_equals_unbatched(family, positions):
    model = tiny_model(family)
    batched = interp.capture(
        model, PROMPTS, layers=[0, -1], positions=positions, batch_size=3, progress=False
    )
    single = interp.capture(
        model, PROMPTS, layers=[0, -1], positions=positions, batch_size=1, progress=False
    )
    assert batched.meta[["prompt", "position"]].equals(single.meta[["prompt", "position"]])
    torch.testing.assert_close(batched.tensor, single.tensor, rtol=1e-5, atol=1e-5)


def test_noop_hook_changes_no_logit(tiny_llama):
    batch = tiny_llama.tokenize(PROMPTS)
    with torch.no_grad():
        ref = tiny_llama.forward(**batch).logits
        sites = interp.resolve_sites(
            ["resid_pre", "attn_out", "mlp_out", "resid_post"], tiny_llama.n_layers
        )
        with hooks(tiny_llama, {s: (lambda act, site: None) for s in sites}):
            hooked = tiny_llama.forward(**batch).logits
        with hooks(tiny_llama, {s: (lambda act, site: act.clone()) for s in sites}):
            replaced = tiny_llama.forward(**batch).logits
    assert torch.equal(ref, hooked)
    assert torch.equal(ref, replaced)


def test_no_hooks_remain_after_exception(tiny_llama):
    before = hook_count(tiny_llama.hf)

    def boom(act, site):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with hooks(tiny_llama, {"blocks.1.hook_resid_post": boom}):
            tiny_llama.forward(**tiny_llama.tokenize(PROMPTS[:1]))
    assert hook_count(tiny_llama.hf) == before
    # and inside capture itself (a tagged span that is missing fails mid-way)
    with pytest.raises(SpanNotFoundError):
        interp.capture(tiny_llama, interp.PromptSet(PROMPTS).tag("year", "1984"), positions="year")
    assert hook_count(tiny_llama.hf) == before


def test_forward_stops_after_deepest_site(tiny_llama):
    calls = []
    with hooks(tiny_llama, {"blocks.3.hook_resid_post": lambda act, site: calls.append(site)}):
        interp.capture(tiny_llama, PROMPTS, layers=[0, 1], progress=False)
        assert calls == []  # layer 3 never ran
        interp.capture(tiny_llama, PROMPTS, layers=[3], progress=False)
        assert len(calls) == 1


def test_stop_forward_leaves_model_usable(tiny_llama):
    batch = tiny_llama.tokenize(PROMPTS)
    ref = tiny_llama.forward(**batch).logits

    def stop(act, site):
        raise StopForward

    with hooks(tiny_llama, {"blocks.0.hook_resid_post": stop}), pytest.raises(StopForward):
        tiny_llama.forward(**batch)
    assert torch.equal(tiny_llama.forward(**batch).logits, ref)


def test_tagged_span_spanning_several_tokens(tiny_llama):
    # "1876" never occurs in the tiny tokenizer's corpus, so it splits into several tokens
    grid = interp.PromptSet.grid(
        "Today is {year}-05-12. {question}", year=[1876, 1984], question=["Name a bird species."]
    )
    last = interp.capture(tiny_llama, grid, layers=[1], positions="year", progress=False)
    every = interp.capture(
        tiny_llama, grid, layers=[1], positions=interp.Span("year", "all"), progress=False
    )
    texts = grid.render(tiny_llama)
    n_tokens = {}
    for i, text in enumerate(texts):
        rows = every.meta[every.meta.prompt == i]
        ids = tiny_llama.tokenize([text])["input_ids"][0]
        decoded = tiny_llama.tokenizer.decode(ids[rows.position.tolist()])
        assert decoded.strip() == str(grid.meta.year[i])  # a token may carry the space before it
        assert last.meta.position[i] == rows.position.max()
        n_tokens[int(grid.meta.year[i])] = len(rows)
    assert n_tokens[1876] > 1
    torch.testing.assert_close(
        last.where(year=1876).tensor, every.where(year=1876).select([-1]).tensor
    )


def test_metadata_indexing_and_save_load(tiny_llama, tmp_path):
    grid = interp.PromptSet.grid(
        "In {year}: {q}", year=[1984, 1999, 2031], q=["a", "b"], chat=False
    )
    acts = interp.capture(tiny_llama, grid, layers=[0, 2], progress=False)
    assert len(acts.where(year=1984)) == 2
    assert len(acts.where(year=[1984, 2031], q="a")) == 2
    acts.save(tmp_path / "acts")
    back = interp.Activations.load(tmp_path / "acts")
    assert torch.equal(back.tensor, acts.tensor)
    assert back.sites == acts.sites and back.meta.equals(acts.meta)


def test_chat_prompts_use_the_template(tiny_llama):
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    via_chat = interp.capture(tiny_llama, chats, layers=[1], progress=False)
    rendered = [tiny_llama.chat(c) for c in chats]
    assert rendered[0].endswith("<|assistant|>")
    via_text = interp.capture(
        tiny_llama, rendered, layers=[1], progress=False
    )  # the tiny tokenizer adds no special tokens, so both paths see the same ids
    torch.testing.assert_close(via_chat.tensor, via_text.tensor)


def test_bad_input_errors(tiny_llama):
    with pytest.raises(LayerOutOfRangeError):
        interp.capture(tiny_llama, PROMPTS, layers=[4])
    with pytest.raises(SiteError):
        interp.capture(tiny_llama, PROMPTS, sites="blocks.0.hook_z")
    with pytest.raises(EmptyPromptsError):
        interp.capture(tiny_llama, [])
    with pytest.raises(SpanNotFoundError, match="no tag named"):
        interp.capture(tiny_llama, PROMPTS, positions="trigger")
    with pytest.raises(interp.InterpError, match="does not exist in prompt"):
        interp.capture(tiny_llama, PROMPTS, positions=[40])
