"""The sections of ``gpu_check.py``: each takes the model and a ``Setup`` (sizes, device,
dtype, tolerance) and returns table rows ``{"check", "value", "ok"}``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

import interp

__all__ = [
    "weights",
    "throughput",
    "to_disk",
    "lora",
    "backward_memory",
    "nnsight_vs_hooks",
    "split",
    "row",
]


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
def weights(model: interp.Model, setup) -> list[dict]:
    n = sum(p.numel() for p in model.hf.parameters())
    gb = sum(p.numel() * p.element_size() for p in model.hf.parameters()) / 1e9
    rows = [row("parameters / weights", f"{n / 1e9:.2f} B / {gb:.2f} GB ({setup.dtype})")]
    if setup.device.startswith("cuda"):
        rows.append(row("GPU memory after build", f"{torch.cuda.memory_allocated() / 1e9:.2f} GB"))
    return rows


def _throughput_at(model: interp.Model, setup, b: int) -> dict:
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


def throughput(model: interp.Model, setup) -> list[dict]:
    return [_throughput_at(model, setup, b) for b in setup.batches]


def to_disk(model: interp.Model, setup, work: Path) -> list[dict]:
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


def lora(model: interp.Model, setup) -> list[dict]:
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


def backward_memory(model: interp.Model, setup) -> list[dict]:
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


def nnsight_vs_hooks(model: interp.Model, setup) -> list[dict]:
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


def split(model: interp.Model, setup, work: Path) -> list[dict]:
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
