"""The nnsight backend: a :class:`~interp.models.Model` whose every forward is an nnsight
trace, locally or on NDIF, so capture, steering, ablation, patching and answer scoring
run unchanged on models interp never holds the weights of.

``interp.load_model("meta-llama/Llama-3.1-70B", backend="nnsight", remote=True)`` (or
:func:`load_nnsight` / :func:`wrap_nnsight` for a loaded model). How it works:

- interp's hooks (:func:`interp.hooks.hooks`, which every intervention uses) are not
  registered on modules: :meth:`NNsightModel.register_trace_hooks` keeps them, and
  :meth:`NNsightModel.forward` runs one ``nn.trace`` in which each hook function is
  applied to its site's value (:mod:`interp.backends.trace_steps`);
- an adapter is read as LoRA factors and added inside the trace (NDIF cannot load a
  local adapter directory); ``as_base()`` / ``as_finetuned()`` switch it off / on, and an
  intervention entered on one view acts only in that view;
- patching runs as batched per-cell traces (:mod:`interp.backends.trace_patching`): the
  replay engine of :mod:`interp.causal.patching` calls blocks directly, which a remote model has
  no weights for. Attribution patching is not available here.

``remote``: ``False`` (nnsight's local execution, on the weights loaded here), ``True``
(NDIF; the API key comes from nnsight's config, ``NDIF_API_KEY`` or
``nnsight.ndif.login()``), or ``"simulate"`` (nnsight serializes each request as for NDIF
and runs it here with interp hidden; the offline test of the remote path).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor

from interp.adapters import check_adapter
from interp.backends.lora_delta import LoRADelta, read_lora
from interp.backends.trace_patching import exact_by_traces
from interp.backends.trace_steps import (
    Step,
    call_order,
    order_steps,
    replay,
    run_generate,
    run_trace,
)
from interp.errors import BackendError, InterpError
from interp.fingerprint import sha256_dir
from interp.hooks import StopForward
from interp.models import Model, load_model
from interp.sites import Site, family_for, resolve_sites
from interp.tokens import position_ids, prepare_tokenizer

__all__ = ["NNsightModel", "load_nnsight", "wrap_nnsight", "ndif_api_key"]


@dataclasses.dataclass(eq=False)
class NNsightModel(Model):
    """A :class:`Model` run through nnsight traces (see the module docstring)."""

    nn: object = None  # nnsight TransformersModel
    remote: bool | str = False
    lora: LoRADelta | None = None
    trace_hooks: list = dataclasses.field(default_factory=list)  # shared by both views
    # watchers of each forward's inputs (interp.execution.track_layout): the decoder's own
    # pre-hooks do not run where the trace runs (remotely, or in nnsight's simulation)
    layout_listeners: list = dataclasses.field(default_factory=list)
    _ranks: dict = dataclasses.field(default_factory=dict)  # shared call-order cache

    # ---- structure ---------------------------------------------------------------------
    @property
    def base_hf(self) -> torch.nn.Module:
        return self.hf

    @property
    def device(self) -> torch.device:
        if self.remote is True:
            return torch.device("cpu")
        return next(self.hf.parameters()).device

    @contextlib.contextmanager
    def _adapter_mode(self) -> Iterator[None]:
        yield  # the adapter is applied (or not) inside each trace

    # ---- hooks -------------------------------------------------------------------------
    @contextlib.contextmanager
    def register_trace_hooks(self, fns: Mapping) -> Iterator[list[Site]]:
        """The :func:`interp.hooks.hooks` contract, kept for this view's traces."""
        entries, resolved = [], []
        try:
            for key, value in fns.items():
                (site,) = resolve_sites(key, self.n_layers)
                resolved.append(site)
                for fn in value if isinstance(value, list) else [value]:
                    entries.append((site, fn, self.use_adapter))
                    self.trace_hooks.append(entries[-1])
            yield resolved
        finally:
            for e in entries:
                self.trace_hooks.remove(e)

    def trace_hook_count(self) -> int:
        return len(self.trace_hooks)

    def _site_place(self, site: Site) -> tuple[str, str]:
        block = f"{self.family.layers}.{site.layer}"
        if site.kind == "resid_pre":
            return block, "input"
        if site.kind == "resid_post":
            return block, "output"
        return (
            f"{block}.{self.family.attn if site.kind == 'attn_out' else self.family.mlp}",
            "output",
        )

    def _steps(self) -> list[Step]:
        by_site: dict[Site, Step] = {}
        for site, fn, view in self.trace_hooks:
            if self.has_adapter and view != self.use_adapter:
                continue
            if site not in by_site:
                path, io = self._site_place(site)
                by_site[site] = Step("hook", path, io, site)
            by_site[site].fns.append(fn)
        steps = list(by_site.values())
        if self.lora is not None and self.use_adapter:
            steps += [Step("lora", m.path, "input", lora=m) for m in self.lora.modules]
        if not self._ranks:
            self._ranks.update(call_order(self.nn))
        return order_steps(steps, self._ranks)

    # ---- running -----------------------------------------------------------------------
    def _remote_flag(self):
        return "local" if self.remote == "simulate" else self.remote

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except (InterpError, StopForward):
            raise
        except Exception as e:
            if self.remote is True and _is_remote_failure(e):
                raise BackendError(
                    f"the NDIF request for {self.name} failed (network, NDIF_HOST or the API "
                    f"key?): {type(e).__name__}: {e}"
                ) from e
            raise

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs):
        """One traced forward; the model's output (``.logits`` ...) as HF returns it."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        pos = kwargs.pop("position_ids", None)
        pos = position_ids(attention_mask) if pos is None else pos
        kwargs.setdefault("use_cache", False)
        dev = self.device
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": pos}
        inputs = {k: v.to(dev) for k, v in inputs.items()}
        kwargs = {k: v.to(dev) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        for listen in self.layout_listeners:
            listen(None, (), inputs)
        steps = self._steps()
        remote = self._remote_flag()
        out, stopped, seen = self._call(run_trace, self.nn, inputs, steps, remote, kwargs)
        if remote and replay(steps, seen):
            stopped = True
        if stopped:
            raise StopForward
        return out

    __call__ = forward

    def exact_engine(self, clean, corrupt, sites, positions, metric, chunk):
        """:func:`interp.patch`'s exact engine for this backend: batched per-cell traces."""
        return exact_by_traces(self, clean, corrupt, sites, positions, metric, chunk)

    def generate(self, input_ids: Tensor, attention_mask: Tensor, **kwargs) -> Tensor:
        """``generate`` through nnsight; this view's hooks act on every decoding step."""
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        dev = self.device
        inputs = {"input_ids": input_ids.to(dev), "attention_mask": attention_mask.to(dev)}
        steps = self._steps()
        if steps and self.remote:
            raise BackendError(
                "generating under an intervention or an adapter is only available with "
                "remote=False on the nnsight backend: nnsight's remote path (its local "
                "simulation included) does not run the loop over decoding steps here; sample "
                "locally, or without the intervention"
            )
        return self._call(run_generate, self.nn, inputs, steps, self._remote_flag(), kwargs)


def _is_remote_failure(e: Exception) -> bool:
    """A failure to reach or use NDIF (or the Hub, which names the model), not a bug."""
    for c in (e, e.__cause__, e.__context__):
        if c is None:
            continue
        root = type(c).__module__.split(".")[0]
        if isinstance(c, OSError) or type(c).__name__ == "RemoteError":
            return True
        if root in ("httpx", "httpcore", "huggingface_hub", "requests", "websocket", "websockets"):
            return True
    return False


# ---- building ----------------------------------------------------------------------------
def ndif_api_key() -> str | None:
    """The NDIF API key nnsight would send: its config file, or ``NDIF_API_KEY``."""
    import os

    from nnsight.schema.config import CONFIG

    return os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY or None


def _weight_sharing_copy(hf: torch.nn.Module) -> torch.nn.Module:
    """A structural copy whose parameters are ``hf``'s own tensors: nnsight instruments
    the modules it wraps for good, and the caller's model should stay plain."""
    return copy.deepcopy(hf, memo={id(p): p for p in hf.parameters()})


def _build(nn, hf, tokenizer, name: str, remote, adapter) -> NNsightModel:
    import nnsight

    nnsight.register("interp")  # hook functions travel to the server by value
    prepare_tokenizer(tokenizer)
    family = family_for(hf.config.get_text_config().model_type)
    model = NNsightModel(hf=hf, tokenizer=tokenizer, name=name, family=family, nn=nn, remote=remote)
    if adapter is None:
        return model
    adapter = Path(adapter)
    check_adapter(adapter, hf)
    return dataclasses.replace(
        model, adapter_path=str(adapter), adapter_hash=sha256_dir(adapter), lora=read_lora(adapter)
    )


def wrap_nnsight(model: Model, *, remote: bool | str = False) -> NNsightModel:
    """The nnsight backend over an interp model's weights (shared, not copied); an
    adapter the model carries is applied as LoRA deltas in each trace."""
    from nnsight import TransformersModel

    if remote is True:
        raise InterpError("wrap_nnsight runs on local weights; use load_nnsight(..., remote=True)")
    hf = _weight_sharing_copy(model.base_hf if model.has_adapter else model.hf)
    if model.has_adapter:  # the copy of a PEFT-injected model still holds LoRA layers
        hf = _unload(hf)
    nn = TransformersModel(hf, tokenizer=model.tokenizer, task="text-generation")
    return _build(nn, nn._module, model.tokenizer, model.name, remote, model.adapter_path)


def _unload(hf):
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(hf.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent = hf.get_submodule(name.rsplit(".", 1)[0]) if "." in name else hf
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
    return hf


def load_nnsight(
    name_or_path: str | Path,
    *,
    remote: bool | str = False,
    adapter: str | Path | None = None,
    dtype=None,
    device=None,
    trust_remote_code: bool = False,
) -> NNsightModel:
    """Load ``name_or_path`` for the nnsight backend (see the module docstring).

    Locally the weights load as :func:`interp.load_model` loads them (safetensors only);
    with ``remote=True`` nothing is downloaded but the config and tokenizer, and NDIF runs
    the model named ``name_or_path``.
    """
    if remote is True:
        return _load_remote(name_or_path, adapter, trust_remote_code)
    plain = load_model(
        name_or_path, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    from nnsight import TransformersModel

    nn = TransformersModel(plain.hf, tokenizer=plain.tokenizer, task="text-generation")
    return _build(nn, nn._module, plain.tokenizer, str(name_or_path), remote, adapter)


def _load_remote(name, adapter, trust_remote_code: bool) -> NNsightModel:
    if not ndif_api_key():
        raise BackendError(
            "remote=True runs on NDIF and needs an API key: set NDIF_API_KEY, or run "
            "nnsight.ndif.login() once (it stores the key in nnsight's config); get a key "
            "at https://login.ndif.us"
        )
    from nnsight import TransformersModel
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name), trust_remote_code=trust_remote_code)
        nn = TransformersModel(
            str(name),
            tokenizer=tokenizer,
            task="text-generation",
            trust_remote_code=trust_remote_code,
        )
    except OSError as e:
        raise BackendError(f"cannot read the config of {name!r} for NDIF ({e})") from None
    return _build(nn, nn._module, tokenizer, str(name), True, adapter)
