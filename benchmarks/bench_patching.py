"""Layer x position activation patching: interp (exact, attribution) vs TransformerLens.

One run, same weights, same machine: a random-weight GPT-2-family model (8 layers,
d_model 512, 32 positions by default) is patched at every ``resid_pre`` (layer, position)
by ``interp.causal.patching.patch`` and by ``transformer_lens.patching.get_act_patch_resid_pre``
on a TransformerLens ``TransformerBridge`` over the same weights; both are also timed
against one plain forward of the clean+corrupt pair. Methods alternate within each
round and the fastest run of each is kept (the machine may be shared). Prints a
markdown table.

    .venv/bin/python benchmarks/bench_patching.py [--vocab 50257] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from interp.causal.patching import patch
from interp.interop import to_transformer_lens
from interp.testing import tiny_model


def _interleaved(fns: dict, repeats: dict, clock=time.perf_counter) -> tuple[dict, dict]:
    """Time each callable ``repeats[name]`` times, in rounds that alternate the methods (so
    a change in machine load hits all of them), and keep each one's fastest run."""
    best = {name: float("inf") for name in fns}
    out = {}
    for r in range(max(repeats.values())):
        for name, fn in fns.items():
            if r >= repeats[name]:
                continue
            t0 = clock()
            out[name] = fn()
            best[name] = min(best[name], clock() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--positions", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=1, help="prompt pairs patched together")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tl-repeats", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=None, help="positions per exact run (auto)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = tiny_model(
        "gpt2", d_model=args.d_model, n_layers=args.layers, n_heads=8, vocab_size=args.vocab
    )
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.positions)
    clean_ids = torch.randint(4, args.vocab, shape, generator=gen)
    corrupt_ids = clean_ids.clone()
    corrupt_ids[:, args.positions // 2] = torch.randint(4, args.vocab, (args.batch,), generator=gen)
    mask = torch.ones(shape, dtype=torch.long)
    clean = {"input_ids": clean_ids, "attention_mask": mask}
    corrupt = {"input_ids": corrupt_ids, "attention_mask": mask}
    a, b = 11, 17

    def metric(last_logits):  # [n, vocab] -> [n]
        return last_logits[:, a] - last_logits[:, b]

    pair = torch.cat([clean_ids, corrupt_ids])

    def plain_forward():
        with torch.no_grad():
            return model.forward(pair, torch.ones_like(pair)).logits

    def exact():
        return patch(model, clean, corrupt, metric=metric, sites="resid_pre", chunk=args.chunk)

    def attribution():
        return patch(model, clean, corrupt, metric=metric, sites="resid_pre", mode="attribution")

    from transformer_lens import patching as tl_patching

    bridge = to_transformer_lens(model)
    bridge.eval()

    def tl_sweep():
        with torch.no_grad():
            _, cache = bridge.run_with_cache(clean_ids)
            return tl_patching.get_act_patch_resid_pre(
                bridge, corrupt_ids, cache, lambda logits: metric(logits[:, -1]).mean()
            )

    plain_forward(), exact()  # warm up
    fns = {"fwd": plain_forward, "exact": exact, "attr": attribution, "tl": tl_sweep}
    fast = 3 * args.repeats  # short runs are the most exposed to load spikes: more tries
    reps = {"fwd": fast, "exact": args.repeats, "attr": fast, "tl": args.tl_repeats}
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    best, out = _interleaved(fns, reps, clock)
    t_fwd, t_exact, t_attr, t_tl = (best[k] for k in ("fwd", "exact", "attr", "tl"))
    res_exact, res_attr, res_tl = out["exact"], out["attr"], out["tl"]

    diff = (res_exact.values - res_tl.cpu()).abs().max().item()
    corr = torch.corrcoef(torch.stack([res_attr.values.flatten(), res_exact.values.flatten()]))[
        0, 1
    ]
    print(
        f"\nresid_pre sweep: {args.layers} layers x {args.positions} positions, d_model "
        f"{args.d_model}, vocab {args.vocab}, batch {args.batch}, chunk {args.chunk or 'auto'}, torch threads "
        f"{torch.get_num_threads()}, device {model.device}, {args.clock} clock, fastest of "
        f"{fast}/{args.repeats}/{fast}/{args.tl_repeats} runs\n"
    )
    print("| method | seconds | vs one forward of the pair | vs TransformerLens |")
    print("|---|---:|---:|---:|")
    rows = [
        ("one plain forward (pair)", t_fwd),
        ("interp exact sweep", t_exact),
        ("interp attribution", t_attr),
        ("TransformerLens get_act_patch_resid_pre", t_tl),
    ]
    for name, t in rows:
        print(f"| {name} | {t:.4f} | {t / t_fwd:.2f}x | {t_tl / t:.2f}x faster |")
    print(f"\nmax |interp exact - TransformerLens| = {diff:.2e}")
    print(f"corr(attribution, exact) = {corr:.3f}")


if __name__ == "__main__":
    main()
