"""A prepared device check: interp on a real-size model with random weights, one GPU.

Built for a machine with one large CUDA GPU and no network (no weights can be downloaded
there): a Llama-3.1-8B config is built with ``from_config`` in bfloat16 on ``cuda:0`` with
random weights, and every number below is measured in this one process:

- weights memory;
- capture throughput (``resid_post`` of every layer, last position) at batch 32 and 64,
  against a plain forward of the same batch;
- all-position capture of one layer to the on-disk store, in GB/s;
- a random LoRA adapter: the base view equals the model without it, the adapter view
  differs, and what the adapter costs;
- forward + backward with frozen weights (gradient to the activations only), peak memory
  with all-position logits and with last-position logits only;
- nnsight against interp's hooks: equal activations, and the time of each;
- the model split across ``cuda:0`` and the CPU with accelerate (the second half of the
  blocks offloaded to CPU memory): capture, steering and patching equal the one-device run.

It prints a markdown table and writes it to ``--out``. Without a CUDA device it says so and
exits 0. ``--tiny`` runs the same code on a tiny Llama config on the CPU in seconds (the
split then puts the second half of the blocks on ``"disk"``, offloaded by accelerate to a
temporary folder); the test suite runs it. Exit status 1 when an equality check fails.

    python benchmarks/gpu_check.py                   # on the GPU machine (a few minutes)
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check_tiny.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's interp
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_sections import (  # noqa: E402
    backward_memory,
    lora,
    nnsight_vs_hooks,
    row,
    split,
    throughput,
    to_disk,
    weights,
)

import interp  # noqa: E402
from interp.testing import tiny_tokenizer  # noqa: E402

__all__ = ["Setup", "GPU", "TINY", "run_checks", "main"]


@dataclasses.dataclass(frozen=True)
class Setup:
    """Sizes of one check run (the GPU run and its ``--tiny`` twin differ only here)."""

    name: str
    device: str
    dtype: torch.dtype
    batches: tuple[int, ...] = (32, 64)
    seq: int = 256  # tokens per prompt for throughput
    disk_prompts: int = 1024
    disk_seq: int = 128
    mem_batch: int = 8
    mem_seq: int = 256
    lora_rank: int = 16
    repeats: int = 5
    tol: float = 1e-2  # max |a - b| / max |b| for "equal"


GPU = Setup("Llama-3.1-8B config, random weights", "cuda:0", torch.bfloat16)
TINY = Setup(
    "tiny Llama config (--tiny)",
    "cpu",
    torch.float32,
    batches=(4, 8),
    seq=16,
    disk_prompts=32,
    disk_seq=16,
    mem_batch=4,
    mem_seq=16,
    lora_rank=4,
    repeats=2,
    tol=1e-5,
)


def llama_8b_config():
    from transformers import LlamaConfig

    rope = dict(
        rope_type="llama3",
        rope_theta=500000.0,
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    )
    return LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_parameters=rope,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )


def tiny_config():
    from interp.testing import tiny_config as make

    return make("llama", d_model=64, n_layers=4, n_heads=4, vocab_size=384)


def build(setup: Setup) -> interp.Model:
    """Random weights at the setup's size, built directly on its device and dtype."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config() if setup.device == "cpu" else llama_8b_config()
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(setup.device):
        hf = AutoModelForCausalLM.from_config(cfg, dtype=setup.dtype)
    return interp.wrap_model(hf.eval(), tiny_tokenizer(), name=setup.name)


# ---- driver --------------------------------------------------------------------------
def run_checks(setup: Setup, work: Path) -> list[dict]:
    """Every section in order (the split last: it moves the weights); a section that
    raises is one FAIL row with its error, the rest still run."""
    t0 = time.perf_counter()
    model = build(setup)
    rows = [row("build (from_config, random weights)", f"{time.perf_counter() - t0:.1f} s")]
    sections = [
        ("weights", lambda: weights(model, setup)),
        ("throughput", lambda: throughput(model, setup)),
        ("to disk", lambda: to_disk(model, setup, work)),
        ("LoRA", lambda: lora(model, setup)),
        ("backward memory", lambda: backward_memory(model, setup)),
        ("nnsight", lambda: nnsight_vs_hooks(model, setup)),
        ("split", lambda: split(model, setup, work)),
    ]
    for name, fn in sections:
        t = time.perf_counter()
        try:
            rows += fn()
        except Exception as e:  # noqa: BLE001 - one failing section must not hide the others
            traceback.print_exc()
            rows.append(row(f"{name}: raised", f"{type(e).__name__}: {str(e)[:160]}", False))
        print(f"[gpu_check] {name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    rows.append(row("total wall time", f"{time.perf_counter() - t0:.1f} s"))
    return rows


def header(setup: Setup) -> str:
    dev = torch.cuda.get_device_name(0) if setup.device.startswith("cuda") else "CPU"
    return (
        f"gpu_check, {datetime.date.today().isoformat()}: {setup.name} on {dev}, {setup.dtype}, "
        f"torch {torch.__version__}, interp {interp.__version__}"
    )


def table(rows: list[dict]) -> str:
    lines = ["| check | value | ok |", "|---|---|---|"]
    lines += [f"| {r['check']} | {r['value']} | {r['ok']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny config on the CPU (seconds)")
    p.add_argument("--out", default="gpu_check.md", help="markdown file for the table")
    args = p.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device on this machine; nothing measured (use --tiny to "
            "run the same code on a tiny model on the CPU)."
        )
        return 0
    warnings.filterwarnings("ignore")
    setup = TINY if args.tiny else GPU
    if args.tiny:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        rows = run_checks(setup, Path(work))
    text = f"{header(setup)}\n\n{table(rows)}\n"
    print(text)
    Path(args.out).write_text(text)
    print(f"written to {args.out}")
    return 1 if any(r["ok"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
