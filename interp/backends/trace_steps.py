"""What runs inside one nnsight trace: interp's hooks and LoRA deltas, in forward order.

A *step* acts at one module's input or output: a ``"hook"`` step calls interp hook
functions ``fn(activation, site) -> replacement | None`` (see :mod:`interp.hooks`) on the
site's activation and writes a replacement back; a ``"lora"`` step adds an adapter's
low-rank delta to a module's output. nnsight serves module values in the order the model
computes them, so :func:`order_steps` sorts steps by the call order recorded once per
model (:func:`call_order`, a scan on fake tensors: no weights needed, so it works for a
remote model too).

:func:`run_trace` is the whole trace body. Locally the hook functions run in this
process and their side effects (recorded activations) are the caller's. Remotely (NDIF,
or nnsight's local simulation of it) they run on a copy shipped with the request, so the
body also returns every activation a hook was given and :func:`replay` calls the hooks
again here on those, which gives captures their values. :class:`~interp.hooks.StopForward`
from a hook ends the forward early (``tracer.stop()``) and is raised again after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from interp.backends.lora_delta import LoRAModule, embedding_delta, linear_delta
from interp.hooks import StopForward
from interp.sites import Site

__all__ = ["Step", "call_order", "order_steps", "run_trace", "run_generate", "replay"]


@dataclass
class Step:
    """One action inside the trace (see the module docstring)."""

    kind: str  # "hook" | "lora"
    path: str  # dotted module path in the HF model
    io: str  # "input" | "output": where the step acts (a LoRA step reads both)
    site: Site | None = None
    fns: list = field(default_factory=list)
    lora: LoRAModule | None = None


def call_order(nn, n_tokens: int = 3) -> dict[tuple[str, str], int]:
    """``(module path, "input"|"output") -> rank`` in the order one forward reaches them."""
    import torch

    hf = nn._module
    order: list[tuple[str, str]] = []
    handles = []
    for name, module in hf.named_modules():
        handles.append(
            module.register_forward_pre_hook(lambda m, a, n=name: order.append((n, "input")))
        )
        handles.append(
            module.register_forward_hook(lambda m, a, o, n=name: order.append((n, "output")))
        )
    ids = torch.ones(1, n_tokens, dtype=torch.long)
    try:
        with nn.scan({"input_ids": ids, "attention_mask": torch.ones_like(ids)}):
            pass
    finally:
        for h in handles:
            h.remove()
    ranks: dict[tuple[str, str], int] = {}
    for i, key in enumerate(order):
        ranks.setdefault(key, i)
    return ranks


def order_steps(steps: list[Step], ranks: dict) -> list[Step]:
    missing = [s.path for s in steps if (s.path, s.io) not in ranks]
    if missing:
        raise KeyError(f"modules not reached by a forward pass: {missing}")
    return sorted(steps, key=lambda s: ranks[s.path, s.io])


def _envoy(nn, path: str):
    env = nn
    for part in path.split(".") if path else []:
        env = env[int(part)] if part.isdigit() else getattr(env, part)
    return env


def _first(value):
    return value if isinstance(value, Tensor) else value[0]


def _with_first(value, new: Tensor):
    return new if isinstance(value, Tensor) else (new, *value[1:])


def _hook_step(env, step: Step, i: int, seen: dict | None) -> bool:
    """Run ``step``'s hook functions at ``env``; True when one raised StopForward."""
    whole = env.input if step.io == "input" else env.output
    act, changed = _first(whole), False
    for j, fn in enumerate(step.fns):
        if seen is not None:
            seen[i, j] = act
        try:
            new = fn(act, step.site)
        except StopForward:
            return True
        if new is not None:
            act, changed = new, True
    if changed:
        if step.io == "input":
            env.input = act
        else:
            env.output = _with_first(whole, act)
    return False


def _lora_step(env, step: Step) -> None:
    x = env.input
    y = env.output
    first = _first(y)
    m = step.lora
    delta = linear_delta(m, x, first) if m.kind == "linear" else embedding_delta(m, x, first)
    env.output = _with_first(y, first + delta)


def _apply(nn, steps: Sequence[Step], seen: dict | None) -> bool:
    for i, step in enumerate(steps):
        env = _envoy(nn, step.path)
        if step.kind == "lora":
            _lora_step(env, step)
        elif _hook_step(env, step, i, seen):
            return True
    return False


def run_trace(nn, inputs: dict, steps: Sequence[Step], remote, call_kwargs: dict):
    """One forward of ``inputs`` with ``steps`` applied. Returns ``(output or None,
    stopped, seen)``; ``seen`` holds the hooks' activations when ``remote``."""
    import nnsight  # the optional dependency, imported where a trace runs

    state = {"stopped": False}
    seen: dict = {}
    out: dict = {}
    with nn.trace(inputs, remote=remote, **call_kwargs) as tracer:
        nnsight.save(state)
        nnsight.save(seen)
        nnsight.save(out)
        if _apply(nn, steps, seen if remote else None):
            state["stopped"] = True
            tracer.stop()
        out["result"] = tracer.result
    return out.get("result"), state["stopped"], seen


def run_generate(nn, inputs: dict, steps: Sequence[Step], remote, gen_kwargs: dict):
    """``generate`` with ``steps`` applied on every forward of the decoding loop; the ids."""
    import nnsight  # the optional dependency, imported where a trace runs

    out: dict = {}
    if not steps:
        with nn.generate(inputs, remote=remote, **gen_kwargs) as tracer:
            nnsight.save(out)
            out["ids"] = tracer.result
        return out["ids"]
    with nn.generate(remote=remote, **gen_kwargs) as tracer:
        nnsight.save(out)
        with tracer.invoke(inputs):
            for _ in tracer.all():  # open-ended: nothing after this loop runs
                _apply(nn, steps, None)
        with tracer.invoke():  # a second block, over the whole batch, for the result
            out["ids"] = tracer.result
    return out["ids"]


def replay(steps: Sequence[Step], seen: dict) -> bool:
    """Call each hook again on the activation it was given remotely (for its side
    effects); True when one raised StopForward."""
    for i, step in enumerate(steps):
        for j, fn in enumerate(step.fns if step.kind == "hook" else []):
            if (i, j) not in seen:
                return False
            try:
                fn(seen[i, j], step.site)
            except StopForward:
                return True
    return False
