"""The one hook engine every capture and intervention goes through.

``with hooks(model, {site: fn}):`` registers ``fn`` on the module behind each site and
removes exactly those hooks on exit, also when the body raises. Hooks belong to the view
they were entered on: on a model with a PEFT adapter, hooks entered on the base view
(:meth:`Model.as_base`) run only while the adapter is disabled and hooks entered on the
finetuned view only while it is enabled, so one view's intervention never leaks into the
other although both share the same modules. A hook function has the
signature ``fn(activation, site) -> replacement | None`` where ``activation`` is the
``[batch, seq, d_model]`` tensor at the site; returning a tensor replaces it (never edit
the input in place), returning ``None`` leaves it unchanged.

Engines that need more than a site's activation (the replay engine records each block's
call arguments; attribution patching starts gradients at the embedding) pass
:class:`ModuleHook` entries in ``modules=``: a hook with torch's own signature on a
module named by its path. ``prepend=True`` puts every hook of the call before those
already registered. This module is the only place in interp that registers hooks on the
model's modules.

:class:`StopForward` raised inside a hook ends the forward pass early; :func:`run_until`
catches it, so a capture of shallow layers never pays for the deep ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from interp.sites import Site, resolve_sites

if TYPE_CHECKING:
    from interp.models import Model

__all__ = ["HookFn", "ModuleHook", "StopForward", "hooks", "hook_count"]

HookFn = Callable[[Tensor, Site], "Tensor | None"]


@dataclass(frozen=True)
class ModuleHook:
    """A hook with torch's own signature on the module at ``path`` in the model (a dotted
    path such as ``model.family.embed`` or ``"model.layers.3"``).

    ``pre=False``: ``fn(module, args, kwargs, output) -> new output | None``;
    ``pre=True``: ``fn(module, args, kwargs) -> (args, kwargs) | None``.
    """

    path: str
    fn: Callable[..., Any]
    pre: bool = False


class StopForward(Exception):  # noqa: N818 - control flow, not an error
    """Raised by a hook to end the forward pass after the deepest site needed."""


def _replace_first(output, new: Tensor):
    if isinstance(output, Tensor):
        return new
    return (new, *output[1:])


def _view_gate(model: Model) -> Callable[[], bool] | None:
    """For a model with an adapter: a test of whether the running forward is ``model``'s view."""
    if not model.has_adapter:
        return None
    from peft.tuners.tuners_utils import BaseTunerLayer

    layer = next((m for m in model.hf.modules() if isinstance(m, BaseTunerLayer)), None)
    if layer is None:
        return None
    want = model.variant == "finetuned"
    return lambda: (not layer.disable_adapters) == want


def _gated(fn: Callable, gate: Callable[[], bool] | None) -> Callable:
    """``fn`` (any hook signature) run only while ``gate()`` holds; else a no-op."""
    if gate is None:
        return fn

    def run(*args):
        return fn(*args) if gate() else None

    return run


def _make_pre_hook(fn: HookFn, site: Site):
    def pre_hook(module, args, kwargs):
        if args:
            new = fn(args[0], site)
            if new is not None:
                return (new, *args[1:]), kwargs
        else:
            new = fn(kwargs["hidden_states"], site)
            if new is not None:
                return args, {**kwargs, "hidden_states": new}
        return None

    return pre_hook


def _make_post_hook(fn: HookFn, site: Site):
    def post_hook(module, args, kwargs, output):
        act = output if isinstance(output, Tensor) else output[0]
        new = fn(act, site)
        return None if new is None else _replace_first(output, new)

    return post_hook


@contextmanager
def hooks(
    model: Model,
    fns: Mapping[str | Site, HookFn | list[HookFn]] | None = None,
    *,
    modules: Sequence[ModuleHook] = (),
    prepend: bool = False,
) -> Iterator[list[Site]]:
    """Register ``fns`` (site -> hook function, or list of them) and ``modules`` (hooks on
    named modules) for the ``with`` body.

    Yields the resolved sites. Hooks on one site run in the order given; with ``prepend``
    they run before hooks registered earlier. Every hook this call registered is removed
    on exit, whatever happened inside.
    """
    if hasattr(model, "register_trace_hooks"):  # a backend that applies hooks in its traces
        with model.register_trace_hooks(fns) as resolved:
            yield resolved
        return
    handles: list[torch.utils.hooks.RemovableHandle] = []
    resolved: list[Site] = []
    gate = _view_gate(model)

    def register(module: torch.nn.Module, fn: Callable, pre: bool) -> None:
        fn = _gated(fn, gate)
        if pre:
            h = module.register_forward_pre_hook(fn, with_kwargs=True, prepend=prepend)
        else:
            h = module.register_forward_hook(fn, with_kwargs=True, prepend=prepend)
        handles.append(h)

    try:
        for key, value in (fns or {}).items():
            (site,) = resolve_sites(key, model.n_layers)
            resolved.append(site)
            module = model.site_module(site)
            for fn in value if isinstance(value, list) else [value]:
                if site.kind == "resid_pre":
                    register(module, _make_pre_hook(fn, site), pre=True)
                else:
                    register(module, _make_post_hook(fn, site), pre=False)
        for entry in modules:
            register(model.base_hf.get_submodule(entry.path), entry.fn, entry.pre)
        yield resolved
    finally:
        for h in handles:
            h.remove()


def hook_count(module: torch.nn.Module) -> int:
    """Number of forward (pre-)hooks left anywhere under ``module``; 0 when clean."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())
