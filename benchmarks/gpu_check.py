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


# ---- helpers -------------------------------------------------------------------------
def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clock(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def texts_of(model: interp.Model, lengths: list[int], seed: int = 0) -> list[str]:
    """Prompts that tokenize (without BOS) to exactly ``lengths`` tokens."""
    words = "the bird is a merlin and the year is 1984 so name a species of hawk".split()
    out = []
    for i, n in enumerate(lengths):
        text = " ".join(words[(seed + i + k) % len(words)] for k in range(2 * n + 2))
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][:n]
        text = model.tokenizer.decode(ids)
        got = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
        if got != n:
            raise RuntimeError(f"prompt of {n} tokens re-tokenizes to {got}")
        out.append(text)
    return out


def mixed(model: interp.Model, n: int = 4, longest: int = 12, seed: int = 0) -> list[str]:
    return texts_of(model, [longest - (3 * i) % (longest // 2) for i in range(n)], seed)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def row(check: str, value: str, ok: bool | None = None) -> dict:
    return {"check": check, "value": value, "ok": "-" if ok is None else "pass" if ok else "FAIL"}


def equal_row(check: str, a, b, tol: float) -> dict:
    d = rel_diff(a, b)
    return row(check, f"max rel. diff {d:.1e}", d <= tol)


def last_logits(model: interp.Model, texts: list[str]) -> torch.Tensor:
    batch = model.tokenize(texts)
    with torch.no_grad():
        return model.forward(**batch, logits_to_keep=1).logits[:, -1].float().cpu()


# ---- sections ------------------------------------------------------------------------
def weights(model: interp.Model, setup: Setup) -> list[dict]:
    n = sum(p.numel() for p in model.hf.parameters())
    gb = sum(p.numel() * p.element_size() for p in model.hf.parameters()) / 1e9
    rows = [row("parameters / weights", f"{n / 1e9:.2f} B / {gb:.2f} GB ({setup.dtype})")]
    if setup.device.startswith("cuda"):
        rows.append(row("GPU memory after build", f"{torch.cuda.memory_allocated() / 1e9:.2f} GB"))
    return rows


def _throughput_at(model: interp.Model, setup: Setup, b: int) -> dict:
    texts = texts_of(model, [setup.seq] * b)
    batch = {k: v.to(model.device) for k, v in model.tokenize(texts).items()}

    def plain():
        with torch.inference_mode():
            model.hf(**batch, use_cache=False)

    def cap():
        interp.capture(model, texts, sites="resid_post", batch_size=b, progress=False)

    t_plain, t_cap = clock(plain, setup.repeats), clock(cap, setup.repeats)
    tokens = b * batch["input_ids"].shape[1]
    return row(
        f"capture, resid_post x {model.n_layers} layers, last pos., batch {b} x {setup.seq}",
        f"{t_cap * 1e3:.0f} ms = {t_cap / t_plain:.2f}x a plain forward "
        f"({t_plain * 1e3:.0f} ms, {tokens / t_plain:,.0f} tok/s)",
    )


def throughput(model: interp.Model, setup: Setup) -> list[dict]:
    return [_throughput_at(model, setup, b) for b in setup.batches]


def to_disk(model: interp.Model, setup: Setup, work: Path) -> list[dict]:
    texts = texts_of(model, [setup.disk_seq] * setup.disk_prompts)
    layer = model.n_layers // 2
    path = work / "store"
    sync()
    t = time.perf_counter()
    store = interp.capture(
        model,
        texts,
        layers=[layer],
        positions="all",
        batch_size=min(64, setup.disk_prompts),
        dtype=setup.dtype,
        to=path,
        progress=False,
    )
    sync()
    dt = time.perf_counter() - t
    size = sum(p.stat().st_size for p in path.iterdir())
    rows_written = sum(s["rows"] for s in store.manifest["shards"])
    ok = rows_written == int(model.tokenize(texts)["attention_mask"].sum())
    return [
        row(
            f"capture to disk, layer {layer} resid_post, all positions ({rows_written:,} rows)",
            f"{size / 1e9:.3f} GB in {dt:.1f} s = {size / 1e9 / dt:.2f} GB/s",
            ok,
        )
    ]


def lora(model: interp.Model, setup: Setup) -> list[dict]:
    from peft import LoraConfig, get_peft_model

    texts = mixed(model)
    ref = last_logits(model, texts)
    cfg = LoraConfig(
        r=setup.lora_rank,
        lora_alpha=2 * setup.lora_rank,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,  # random A and B: the adapter changes the model
    )
    torch.manual_seed(1)
    peft_model = get_peft_model(model.hf, cfg).eval()
    try:
        tuned = dataclasses.replace(model, hf=peft_model, adapter_path="<random LoRA>")
        base_view, ft_view = tuned.as_base(), tuned.as_finetuned()
        off, on = last_logits(base_view, texts), last_logits(ft_view, texts)
        batch = model.tokenize(texts_of(model, [setup.seq] * setup.batches[0]))

        def run(view):
            return lambda: view.forward(**batch, logits_to_keep=1)

        with torch.no_grad():
            t_off, t_on = clock(run(base_view), setup.repeats), clock(run(ft_view), setup.repeats)
        changed = rel_diff(on, ref)
        return [
            equal_row("random LoRA off (base view) = model without it", off, ref, setup.tol),
            row(
                "random LoRA on (adapter view) changes the logits",
                f"rel. diff {changed:.2f}",
                changed > 10 * setup.tol,
            ),
            row(f"LoRA r{setup.lora_rank} on q,v: forward time on / off", f"{t_on / t_off:.2f}x"),
        ]
    finally:
        peft_model.unload()  # the model as it was, LoRA layers removed


def _grad_and_peak(model: interp.Model, batch: dict, keep: int) -> tuple[torch.Tensor, float]:
    """Gradient of a last-position metric to the embeddings (weights frozen) and the peak
    memory above what was allocated before (GB; 0 on the CPU). ``keep=0``: logits at
    every position, ``keep=1``: at the last position only."""
    embed = model.base_hf.get_submodule(model.family.embed)
    leaf: list[torch.Tensor] = []

    def make_leaf(module, args, output):
        leaf.append(output.detach().requires_grad_(True))
        return leaf[-1]

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    handle = embed.register_forward_hook(make_leaf)
    try:
        with torch.enable_grad():
            logits = model.forward(**batch, logits_to_keep=keep).logits[:, -1]
            value = torch.log_softmax(logits.float(), -1)[:, 0].sum()
            (grad,) = torch.autograd.grad(value, leaf[-1])
    finally:
        handle.remove()
    peak = (torch.cuda.max_memory_allocated() - before) / 1e9 if cuda else 0.0
    return grad, peak


def backward_memory(model: interp.Model, setup: Setup) -> list[dict]:
    batch = model.tokenize(texts_of(model, [setup.mem_seq] * setup.mem_batch))
    for p in model.hf.parameters():
        p.requires_grad_(False)
    grad_all, peak_all = _grad_and_peak(model, batch, 0)
    grad_last, peak_last = _grad_and_peak(model, batch, 1)
    shape = f"batch {setup.mem_batch} x {setup.mem_seq}"
    tol = setup.tol if setup.dtype == torch.float32 else 5e-2
    rows = [
        equal_row(
            f"fwd+bwd, frozen weights, {shape}: same grad either way", grad_last, grad_all, tol
        )
    ]
    if setup.device.startswith("cuda"):
        rows.append(
            row(
                f"fwd+bwd peak memory above weights, {shape}",
                f"all-position logits {peak_all:.2f} GB, last-position logits {peak_last:.2f} GB",
            )
        )
    else:
        rows.append(row(f"fwd+bwd peak memory, {shape}", "n/a on the CPU"))
    return rows


def nnsight_vs_hooks(model: interp.Model, setup: Setup) -> list[dict]:
    """A raw nnsight trace and interp's nnsight backend, each against interp's hooks."""
    import nnsight

    from interp.backends.nnsight import wrap_nnsight
    from interp.interop import to_nnsight

    texts = mixed(model, n=4, longest=12)
    acts = interp.capture(model, texts, sites="resid_post", progress=False).tensor  # [n, L, d]
    nn = to_nnsight(model)  # a structural copy sharing every weight
    batch = {k: v.to(model.device) for k, v in model.tokenize(texts).items()}

    def trace():
        saved = []
        with torch.inference_mode(), nn.trace(dict(batch)):
            for layer in nn.model.layers:
                out = layer.output
                saved.append((out[0] if isinstance(out, tuple) else out)[:, -1])
            nnsight.save(saved)
        return torch.stack(saved, 1)

    backend = wrap_nnsight(model)
    got = interp.capture(backend, texts, sites="resid_post", progress=False).tensor
    direction = interp.random_directions(model.d_model, 1, seed=4)[0]
    steered = {}
    for name, m in (("hooks", model), ("backend", backend)):
        with interp.steer(m, direction, alpha=2.0, layers=[model.n_layers // 2]):
            steered[name] = last_logits(m, texts)

    def cap(m):
        return lambda: interp.capture(m, texts, sites="resid_post", progress=False)

    t_raw, t_cap = clock(trace, setup.repeats), clock(cap(model), setup.repeats)
    t_backend = clock(cap(backend), setup.repeats)
    return [
        equal_row(
            "nnsight trace = interp capture (resid_post, every layer, mixed lengths)",
            trace(),
            acts,
            setup.tol,
        ),
        equal_row("interp on the nnsight backend: capture = hooks", got, acts, setup.tol),
        equal_row(
            "interp on the nnsight backend: steering = hooks",
            steered["backend"],
            steered["hooks"],
            setup.tol,
        ),
        row(
            "time: raw nnsight trace / backend capture / hooks capture",
            f"{t_raw / t_cap:.2f}x / {t_backend / t_cap:.2f}x / 1 ({t_cap * 1e3:.1f} ms)",
        ),
    ]


def _causal_refs(model: interp.Model) -> dict:
    """Capture, steering and patching results to compare across placements."""
    L = model.n_layers
    texts = mixed(model, n=4, longest=12, seed=3)
    clean, corrupt = texts_of(model, [10] * 3, seed=1), texts_of(model, [10] * 3, seed=5)
    direction = interp.random_directions(model.d_model, 1, seed=0)[0]
    scale = interp.residual_norm(model, texts, layers=[L // 2])

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 5].float() - logits[:, 7].float()

    acts = interp.capture(
        model, texts, sites="resid_post", layers=[0, L // 2, L - 1], progress=False
    ).tensor
    with interp.steer(model, direction, alpha=1.0, layers=[L // 2], scale=scale):
        steered = last_logits(model, texts)
    patched = interp.patch(
        model,
        clean,
        corrupt,
        metric=metric,
        sites="resid_pre",
        layers=[0, L // 2, L - 1],
        positions=[0, 4, 9],
    )
    return {"capture": acts, "steer": steered, "patch": patched.values}


def split(model: interp.Model, setup: Setup, work: Path) -> list[dict]:
    """One-device results, then the same model dispatched by accelerate across two places."""
    from accelerate import dispatch_model

    ref = _causal_refs(model)
    hf = model.hf
    half = model.n_layers // 2
    near, far = (setup.device, "cpu") if setup.device.startswith("cuda") else ("cpu", "disk")
    device_map = {"model.embed_tokens": near, "model.rotary_emb": near}
    for j in range(model.n_layers):
        device_map[f"model.layers.{j}"] = near if j < half else far
    device_map.update({"model.norm": far, "lm_head": far})
    for name, where in device_map.items():
        if where == "cpu":
            hf.get_submodule(name).to("cpu")  # the weights move to CPU memory first
    dispatch_model(hf, device_map, main_device=setup.device, offload_dir=str(work / "offload"))
    placed = sorted({str(p.device) for p in hf.parameters()})
    got = _causal_refs(model)
    where = f"blocks {half}-{model.n_layers - 1} + head offloaded to {far!r}"
    return [
        row("split with accelerate", f"{where}; parameter devices now {placed}"),
        *(equal_row(f"split: {k} = one-device run", got[k], ref[k], setup.tol) for k in ref),
    ]


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
