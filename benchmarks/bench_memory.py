"""Peak memory of answer scoring and activation patching at a large vocabulary, before vs after.

A random-weight Llama-style model with a 128k vocabulary and d_model 1024 (2 layers: the
vocabulary, not depth, is what made answer scoring blow up). Each case runs in a fresh
process; its number is the growth of the process's peak resident memory (Linux VmHWM,
reset just before the case) while the case runs, so the model's own weights are not
counted.

- answer scoring, 32 (prompt, answer) pairs of 128 tokens: *before* is the former
  algorithm, a full-vocabulary log-softmax at every position of every row, written out
  here; *after* is :func:`interp.metrics.answer_logprobs` (log-probs gathered at the
  answer positions only, rows per forward bounded by a logits budget). Both give the
  same scores (checked).
- exact patching, 32 pairs of 96 tokens, resid_pre + attn_out + mlp_out at every layer:
  *before* is the former rule (every pair in one batch, 8 rows per site on CPU whatever
  the number of sites and the sequence: ``chunk=1, memory=`` unlimited), *after* pairs and
  positions split by a memory budget (``memory=``, 64 MiB here).

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from common import markdown_table

VOCAB, D_MODEL, LAYERS = 128_256, 1024, 2
N_ANSWERS, ANSWER_LEN, N_PAIRS, PAIR_LEN = 32, 128, 32, 96


def build():
    from transformers import AutoModelForCausalLM

    import interp
    from interp.testing import tiny_config, tiny_tokenizer

    torch.manual_seed(0)
    cfg = tiny_config("llama", d_model=D_MODEL, n_layers=LAYERS, n_heads=8, vocab_size=VOCAB)
    return interp.wrap_model(AutoModelForCausalLM.from_config(cfg).eval(), tiny_tokenizer())


def texts(model, n: int, length: int, seed: int) -> list[str]:
    """``n`` texts of about ``length`` tokens (words of the tokenizer's small corpus)."""
    words = "the bird is a merlin and the year is 1984 so name a species of hawk".split()
    out = []
    for i in range(n):
        text = " ".join(words[(seed + i + k) % len(words)] for k in range(length * 2))
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:length]
        out.append(model.tokenizer.decode(ids))
    return out


def pairs(n: int, length: int) -> tuple[dict, dict]:
    """Clean and corrupt token batches: random ids, each corrupt row differs in 3 tokens."""
    gen = torch.Generator().manual_seed(3)
    clean = torch.randint(4, 380, (n, length), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 5:8] = torch.randint(4, 380, (n, 3), generator=gen)
    ones = torch.ones(n, length, dtype=torch.long)
    return {"input_ids": clean, "attention_mask": ones}, {
        "input_ids": corrupt,
        "attention_mask": ones,
    }


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return _peak()


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _old_answer_logprobs(model, prompts, answers, batch_size=64):
    """The former algorithm: full logits and a log-softmax copy at every position."""
    from interp.metrics.answers import _join, _n_answer_tokens

    fulls = [_join(p, a) for p, a in zip(prompts, answers, strict=True)]
    n_ans = _n_answer_tokens(model.tokenizer, prompts, fulls)
    scores = torch.empty(len(fulls))
    with torch.no_grad():
        for s in range(0, len(fulls), batch_size):
            batch = model.tokenize(fulls[s : s + batch_size])
            logits = model.forward(batch["input_ids"], batch["attention_mask"]).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            target = batch["input_ids"][:, 1:]
            tok = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            for j, n in enumerate(n_ans[s : s + batch_size]):
                scores[s + j] = tok[j, -n:].sum()
    return scores


def run_case(name: str) -> dict:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    import interp
    from interp.metrics import answer_logprobs

    model = build()
    if name.startswith("answers"):
        prompts = texts(model, N_ANSWERS, ANSWER_LEN - 4, seed=1)
        answers = texts(model, N_ANSWERS, 3, seed=2)
        start = _reset_peak()
        if name == "answers-before":
            scores = _old_answer_logprobs(model, prompts, answers)
        else:
            per = answer_logprobs(model, prompts, [[a] for a in answers])
            scores = torch.cat(per)
        return {"peak_mb": (_peak() - start) / 2**20, "checksum": float(scores.sum())}
    clean, corrupt = pairs(N_PAIRS, PAIR_LEN)

    def metric(logits):
        return logits[:, 5] - logits[:, 9]

    kw = dict(metric=metric, sites=["resid_pre", "attn_out", "mlp_out"], positions=[-3, -2, -1])
    start = _reset_peak()
    if name == "patch-before":
        # the former rule: every pair in one batch, 8 rows per site whatever the sites
        res = interp.patch(model, clean, corrupt, chunk=max(1, 8 // N_PAIRS), memory=1 << 50, **kw)
    else:
        res = interp.patch(model, clean, corrupt, memory=64 * 2**20, **kw)
    return {"peak_mb": (_peak() - start) / 2**20, "checksum": float(res.values.sum())}


def main() -> None:
    cases = ["answers-before", "answers-after", "patch-before", "patch-after"]
    results = {}
    for case in cases:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True
        )
        results[case] = json.loads(out.stdout.strip().splitlines()[-1])
    for a, b in (("answers-before", "answers-after"), ("patch-before", "patch-after")):
        x, y = results[a]["checksum"], results[b]["checksum"]
        assert abs(x - y) <= 1e-3 * max(1.0, abs(x)), (a, x, b, y)
    rows = []
    for kind, label in (("answers", "answer scoring"), ("patch", "exact patching")):
        before, after = results[f"{kind}-before"]["peak_mb"], results[f"{kind}-after"]["peak_mb"]
        rows.append(
            {
                "case": label,
                "before MiB": f"{before:.0f}",
                "after MiB": f"{after:.0f}",
                "ratio": f"{before / max(after, 1e-9):.1f}x less",
            }
        )
    print(
        f"peak memory growth: vocab {VOCAB}, d_model {D_MODEL}, {LAYERS} layers; answers "
        f"{N_ANSWERS} x {ANSWER_LEN} tokens; patching {N_PAIRS} pairs x {PAIR_LEN} tokens, 3 site "
        f"kinds, 3 positions; torch {torch.__version__}\n"
    )
    print(markdown_table(rows, ["case", "before MiB", "after MiB", "ratio"]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(run_case(sys.argv[2])))
    else:
        main()
