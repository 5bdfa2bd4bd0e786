"""Capture cost against a plain forward, TransformerLens and nnsight, side by side.

One random-weight Llama-style model (d_model 512, 8 layers, vocab 32000), a batch of 16
prompts of 64 tokens. Every number is the median of several runs, measured in this one
process, and reported as a ratio to the plain Hugging Face forward pass.

    python benchmarks/bench_capture.py
"""

from __future__ import annotations

import warnings

import torch
from common import markdown_table, setup_threads, timeit

import interp
from interp.interop import to_nnsight, to_transformer_lens
from interp.testing import tiny_config, tiny_tokenizer

BATCH, SEQ, D_MODEL, LAYERS, VOCAB = 16, 64, 512, 8, 32000


def build_model() -> interp.Model:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config("llama", d_model=D_MODEL, n_layers=LAYERS, n_heads=8, vocab_size=VOCAB)
    cfg._attn_implementation = "sdpa"
    return interp.wrap_model(
        AutoModelForCausalLM.from_config(cfg).eval(), tiny_tokenizer(), name="bench-llama"
    )


def prompts_of_length(model: interp.Model, n: int, length: int) -> list[str]:
    words = "the bird is a merlin and the year is 1984 so name a species of hawk".split()
    out = []
    for i in range(n):
        text = " ".join(words[(i + k) % len(words)] for k in range(length * 2))
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:length]
        text = model.tokenizer.decode(ids)
        assert len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) == length
        out.append(text)
    return out


def main() -> None:
    setup_threads()
    warnings.filterwarnings("ignore")
    model = build_model()
    texts = prompts_of_length(model, BATCH, SEQ)
    batch = model.tokenize(texts)
    ids = batch["input_ids"]

    def plain():
        with torch.inference_mode():
            model.hf(**batch, use_cache=False)

    def capture_all():
        interp.capture(model, texts, sites="resid_post", batch_size=BATCH, progress=False)

    def capture_half():
        interp.capture(
            model,
            texts,
            sites="resid_post",
            layers=range(LAYERS // 2),
            batch_size=BATCH,
            progress=False,
        )

    bridge = to_transformer_lens(model)

    def tl_all():
        with torch.inference_mode():
            bridge.run_with_cache(ids)

    def tl_resid():
        with torch.inference_mode():
            bridge.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_resid_post"))

    nn_model = to_nnsight(model)

    def nnsight_all():
        with torch.inference_mode(), nn_model.trace(ids):
            saved = list().save()
            for layer in range(LAYERS):
                saved.append(nn_model.model.layers[layer].output)

    cases = [
        ("plain HF forward", plain),
        ("interp capture, resid_post, all 8 layers, last position", capture_all),
        ("interp capture, resid_post, layers 0-3, last position", capture_half),
        ("TransformerLens run_with_cache, all hooks", tl_all),
        ("TransformerLens run_with_cache, resid_post only", tl_resid),
        ("nnsight trace, save every layer", nnsight_all),
    ]
    times = {name: timeit(fn) for name, fn in cases}
    base = times["plain HF forward"]
    rows = [
        {"case": name, "median ms": f"{t * 1e3:.1f}", "ratio to plain forward": f"{t / base:.2f}x"}
        for name, t in times.items()
    ]
    print(
        f"capture benchmark: batch {BATCH}, seq {SEQ}, d_model {D_MODEL}, {LAYERS} layers, vocab {VOCAB}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print(markdown_table(rows, ["case", "median ms", "ratio to plain forward"]))


if __name__ == "__main__":
    main()
