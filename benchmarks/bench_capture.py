"""Capture cost against a plain forward, TransformerLens and nnsight, side by side.

One random-weight Llama-style model (d_model 512, 8 layers, vocab 32000), a batch of 16
prompts of 64 tokens. Every number is the median of several runs, measured in this one
process, and reported as a ratio to the plain Hugging Face forward pass and to the fair
baseline: the decoder alone (every block and the final norm, no unembedding), which is
all that a capture of the residual stream ever needs. Peers are run like for like too:
TransformerLens with ``names_filter`` and ``stop_at_layer``, nnsight stopping its trace
after the last saved layer.

    python benchmarks/bench_capture.py [--threads 1 --clock cpu]
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
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what to time")
    args = ap.parse_args()
    setup_threads(args.threads)
    warnings.filterwarnings("ignore")
    model = build_model()
    texts = prompts_of_length(model, BATCH, SEQ)
    batch = model.tokenize(texts)
    ids = batch["input_ids"]

    def plain():
        with torch.inference_mode():
            model.hf(**batch, use_cache=False)

    def decoder_only():
        with torch.inference_mode():
            model.decoder(**batch, use_cache=False)

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

    def tl_resid_stop():
        with torch.inference_mode():
            bridge.run_with_cache(
                ids,
                names_filter=lambda name: name.endswith("hook_resid_post"),
                stop_at_layer=LAYERS,
            )

    nn_model = to_nnsight(model)

    def nnsight_all():
        with torch.inference_mode(), nn_model.trace(ids):
            saved = list().save()
            for layer in range(LAYERS):
                saved.append(nn_model.model.layers[layer].output)

    def nnsight_stop():
        with torch.inference_mode(), nn_model.trace(ids) as tracer:
            saved = list().save()
            for layer in range(LAYERS):
                saved.append(nn_model.model.layers[layer].output)
            tracer.stop()

    cases = [
        ("plain HF forward", plain),
        ("decoder only (no unembedding): the fair baseline", decoder_only),
        ("interp capture, resid_post, all 8 layers, last position", capture_all),
        ("interp capture, resid_post, layers 0-3, last position", capture_half),
        ("TransformerLens run_with_cache, all hooks", tl_all),
        ("TransformerLens run_with_cache, resid_post only", tl_resid),
        ("TransformerLens run_with_cache, resid_post only, stop_at_layer", tl_resid_stop),
        ("nnsight trace, save every layer", nnsight_all),
        ("nnsight trace, save every layer, stop after the last", nnsight_stop),
    ]
    times = {name: timeit(fn, clock=args.clock) for name, fn in cases}
    base = times["plain HF forward"]
    fair = times["decoder only (no unembedding): the fair baseline"]
    rows = [
        {
            "case": name,
            "median ms": f"{t * 1e3:.1f}",
            "ratio to plain forward": f"{t / base:.2f}x",
            "ratio to decoder only": f"{t / fair:.2f}x",
        }
        for name, t in times.items()
    ]
    print(
        f"capture benchmark: batch {BATCH}, seq {SEQ}, d_model {D_MODEL}, {LAYERS} layers, vocab {VOCAB}, "
        f"{torch.get_num_threads()} threads, {args.clock} clock, torch {torch.__version__}\n"
    )
    print(
        markdown_table(
            rows, ["case", "median ms", "ratio to plain forward", "ratio to decoder only"]
        )
    )
    print(
        "\ninterp is cheaper than a plain forward because it never unembeds (the 32000-way "
        "head is most of this model's compute) and stops after the deepest site it needs."
    )


if __name__ == "__main__":
    main()
