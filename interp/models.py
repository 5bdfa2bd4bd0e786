"""Load a causal LM (and optionally a PEFT adapter) into one handle interp works with.

:func:`load_model` serves a Hugging Face id and a local directory alike (the bundled
organism is an ordinary local directory). :class:`Model` carries the HF module, the
tokenizer, ``n_layers`` / ``d_model``, the family row that maps canonical sites to
modules, and runs forward passes with left padding and correct position ids. A model
loaded with an adapter runs as the finetuned model; :meth:`Model.as_base` gives a view of
the *same* weights with the adapter disabled, and :class:`ModelPair` holds both views.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.adapters import adapter_state_hash, attach_adapter, check_adapter, is_peft
from interp.devices import check_map_fits, default_device, input_device, placement
from interp.errors import InterpError
from interp.fingerprint import WeightsFingerprint, sha256_dir
from interp.sites import Family, Site, family_for
from interp.sources import hub_directory, load_error, model_source
from interp.tokens import position_ids, prepare_tokenizer, tokenize

__all__ = [
    "Model",
    "ModelPair",
    "load_model",
    "load_finetuned",
    "wrap_model",
    "default_device",
    "register_backend",
]


@dataclasses.dataclass(eq=False)
class Model:
    """A causal LM with its tokenizer, ready for capture and interventions.

    Do not build it by hand: use :func:`load_model` or :func:`wrap_model`.
    """

    hf: torch.nn.Module  # PreTrainedModel, or PeftModel when an adapter is loaded
    tokenizer: Any  # a transformers tokenizer (PreTrainedTokenizerBase)
    name: str
    family: Family
    adapter_path: str | None = None
    adapter_hash: str | None = None
    use_adapter: bool = True
    weights: WeightsFingerprint = dataclasses.field(default_factory=WeightsFingerprint, repr=False)

    # ---- structure -------------------------------------------------------------------
    @property
    def base_hf(self) -> torch.nn.Module:
        """The underlying transformers model (LoRA layers, if any, injected inside)."""
        return self.hf.get_base_model() if self.has_adapter else self.hf

    @property
    def has_adapter(self) -> bool:
        """Whether ``hf`` is a PEFT model (loaded from ``adapter_path`` or built in memory)."""
        return self.adapter_path is not None or is_peft(self.hf)

    @property
    def weights_sha256(self) -> str | None:
        """Content hash of the base weights, config and tokenizer files (for a model read
        from a directory; of its tensors for one built in memory), computed on first use.
        ``None`` for offloaded in-memory weights."""
        return self.weights.sha256(self.base_hf)

    @property
    def config(self):
        return self.base_hf.config

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return self.config.get_text_config().hidden_size

    @property
    def blocks(self) -> torch.nn.ModuleList:
        return self.base_hf.get_submodule(self.family.layers)

    @property
    def decoder(self) -> torch.nn.Module:
        """The module that runs the embedding and every block (the blocks' parent)."""
        return self.base_hf.get_submodule(self.family.layers.rpartition(".")[0])

    @property
    def input_device(self) -> torch.device:
        """The device the input embedding runs on: where token ids go. Under accelerate
        dispatch other layers may run elsewhere (and offloaded weights sit on ``meta``)."""
        return input_device(self.base_hf)

    @property
    def device(self) -> torch.device:
        """Alias of :attr:`input_device`."""
        return self.input_device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def variant(self) -> str:
        """``"finetuned"`` when an enabled adapter is applied, else ``"base"``."""
        return "finetuned" if self.has_adapter and self.use_adapter else "base"

    def site_module(self, site: Site) -> torch.nn.Module:
        """The module whose input (``resid_pre``) or output (others) is ``site``."""
        block = self.blocks[site.layer]
        if site.kind in ("resid_pre", "resid_post"):
            return block
        return block.get_submodule(self.family.attn if site.kind == "attn_out" else self.family.mlp)

    # ---- adapter views ---------------------------------------------------------------
    def as_base(self) -> Model:
        """The same weights with the adapter disabled (no copy)."""
        return dataclasses.replace(self, use_adapter=False)

    def as_finetuned(self) -> Model:
        if not self.has_adapter:
            raise InterpError(f"{self.name} has no adapter; load one with load_model(adapter=...)")
        return dataclasses.replace(self, use_adapter=True)

    @contextlib.contextmanager
    def _adapter_mode(self) -> Iterator[None]:
        if self.has_adapter and not self.use_adapter:
            with self.hf.disable_adapter():
                yield
        else:
            yield

    # ---- text ------------------------------------------------------------------------
    def chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """Render chat ``messages`` with the tokenizer's chat template."""
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise InterpError(
                f"the tokenizer of {self.name} has no chat template; pass plain strings instead"
            )
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def tokenize(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool | None = None,
        offsets: bool = False,
    ) -> dict[str, Tensor]:
        """Left-padded batch: ``input_ids``, ``attention_mask``, ``position_ids`` ``[b, s]``.

        ``add_special_tokens=None`` (the default) adds the tokenizer's special tokens
        (BOS) only to texts that do not already start with the BOS text, as chat templates
        render it: a chat-rendered prompt never gets a second BOS. With ``offsets=True``
        also ``offset_mapping`` ``[b, s, 2]`` (character spans).
        """
        return tokenize(
            self.tokenizer, texts, add_special_tokens=add_special_tokens, offsets=offsets
        )

    # ---- running ---------------------------------------------------------------------
    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs):
        """One forward pass with position ids derived from the (left-padded) mask."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs.setdefault("position_ids", position_ids(attention_mask))
        kwargs.setdefault("use_cache", False)
        dev = self.device
        kwargs = {k: v.to(dev) if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        with self._adapter_mode():
            return self.hf(
                input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev), **kwargs
            )

    __call__ = forward

    def generate(self, input_ids: Tensor, attention_mask: Tensor, **kwargs) -> Tensor:
        """``generate`` through the adapter view; hooks stay active on every new token."""
        kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        dev = self.device
        with self._adapter_mode():
            return self.hf.generate(
                input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev), **kwargs
            )


@dataclasses.dataclass(frozen=True)
class ModelPair:
    """Base and finetuned views of one loaded set of weights (adapter off / on)."""

    base: Model
    finetuned: Model

    @classmethod
    def from_adapter(cls, model: Model) -> ModelPair:
        return cls(model.as_base(), model.as_finetuned())

    @classmethod
    def load(cls, base: str | Path, finetuned: str | Path, **kwargs) -> ModelPair:
        """Base and finetuned models from a base path and a finetune directory: views of
        one set of weights for an adapter, two loaded models for a full finetune."""
        model = load_finetuned(base, finetuned, **kwargs)
        if model.has_adapter:
            return cls.from_adapter(model)
        return cls(load_model(base, **kwargs), model)

    def __iter__(self):
        return iter((self.base, self.finetuned))


# ---- loading -------------------------------------------------------------------------
# loaders of the backends beyond plain Hugging Face modules, by name: interp.backends
# registers "nnsight" when it is imported (interp imports it, so every session has it)
_BACKENDS: dict[str, Callable[..., Model]] = {}


def register_backend(name: str, loader: Callable[..., Model]) -> None:
    """Make ``load_model(..., backend=name)`` return ``loader(name_or_path, adapter=...,
    dtype=..., device=..., trust_remote_code=..., remote=...)``."""
    _BACKENDS[name] = loader


def wrap_model(hf: torch.nn.Module, tokenizer, *, name: str | None = None) -> Model:
    """A :class:`Model` around an already-built transformers model, or around a
    :class:`~peft.PeftModel` (then it runs as the finetuned model; ``as_base()`` disables the
    adapter, and ``adapter_hash`` is a hash of the adapter's weights)."""
    prepare_tokenizer(tokenizer)
    hf.eval()
    peft = is_peft(hf)
    base = hf.get_base_model() if peft else hf
    family = family_for(base.config.get_text_config().model_type)
    return Model(
        hf=hf,
        tokenizer=tokenizer,
        name=name or base.config.name_or_path or "model",
        family=family,
        adapter_hash=adapter_state_hash(hf) if peft else None,
    )


def load_model(
    name_or_path: str | Path,
    *,
    adapter: str | Path | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    max_memory: dict | None = None,
    offload_folder: str | Path | None = None,
    trust_remote_code: bool = False,
    backend: str = "hf",
    remote: bool | str = False,
) -> Model:
    """Load a causal LM from a Hugging Face id or a local directory, with an optional adapter.

    On one ``device`` (default: CUDA when there is one), or placed by accelerate with
    ``device_map`` (``"auto"``, or module name -> device / ``"disk"``), ``max_memory``
    (device -> size) and ``offload_folder`` (for ``"disk"`` entries); the rest of the API
    is the same either way (inputs go to :attr:`Model.input_device`). ``dtype`` defaults to
    float32 on CPU and bfloat16 on GPU. Weights must be safetensors. With ``adapter`` (a
    PEFT adapter directory) the returned model runs as the finetuned model;
    ``model.as_base()`` / :class:`ModelPair` run the same weights without it. A path
    that does not exist is "no such directory" and never goes to the hub
    (:func:`interp.sources.model_source`).
    ``backend="nnsight"`` runs every forward as an nnsight trace, on NDIF with
    ``remote=True`` (:mod:`interp.backends.nnsight`).
    """
    if backend != "hf" or remote:
        name = "nnsight" if backend == "hf" else backend
        if name not in _BACKENDS:
            raise InterpError(f"unknown backend {backend!r}; expected one of {('hf', *_BACKENDS)}")
        return _BACKENDS[name](
            name_or_path,
            adapter=adapter,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            remote=remote,
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = placement(dtype, device, device_map, max_memory, offload_folder)
    device = kwargs.pop("device", None)
    source = model_source(name_or_path, trust_remote_code=trust_remote_code)
    path = Path(source)
    weights = WeightsFingerprint(path) if path.is_dir() else None  # its files as they are now
    if isinstance(kwargs.get("device_map"), dict):
        check_map_fits(source, kwargs["device_map"], trust_remote_code=trust_remote_code)
    try:
        hf = AutoModelForCausalLM.from_pretrained(
            source, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise load_error(name_or_path, e) from None
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise load_error(name_or_path, e) from None
        if "device_map" not in kwargs:
            raise
        first = str(e).strip().splitlines()[0]
        raise InterpError(f"device_map {kwargs['device_map']!r} for {name_or_path}: {first}") from e
    if device is not None:
        hf = hf.to(device)
    if weights is None:
        snapshot = hub_directory(source)
        weights = WeightsFingerprint(snapshot) if snapshot is not None else WeightsFingerprint()
    model = wrap_model(hf, tokenizer, name=str(name_or_path))
    model = dataclasses.replace(model, weights=weights)
    if adapter is None:
        return model
    return _with_adapter(model, Path(adapter), name_or_path, path, device, offload_folder)


def _with_adapter(model: Model, adapter: Path, name_or_path, path: Path, device, offload_folder):
    """``model`` with the PEFT ``adapter`` attached (it runs as the finetuned model)."""
    hf = model.hf
    check_adapter(adapter, hf)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    base_name = cfg.get("base_model_name_or_path")
    if base_name and Path(str(base_name)).name != path.name:
        warnings.warn(
            f"adapter {adapter} names base {base_name!r}, loading it on {name_or_path!r}",
            stacklevel=3,
        )
    peft_model = attach_adapter(hf, adapter, offload_folder)
    peft_model = peft_model.to(device) if device is not None else peft_model
    peft_model.eval()
    return dataclasses.replace(
        model, hf=peft_model, adapter_path=str(adapter), adapter_hash=sha256_dir(adapter)
    )


def load_finetuned(base: str | Path, finetuned: str | Path, **kwargs) -> Model:
    """A finetune directory as a model: a PEFT adapter loads on ``base`` (so
    ``as_base()`` gives the base weights back), a full finetune is loaded on its own."""
    if (Path(finetuned) / "adapter_config.json").is_file():
        return load_model(base, adapter=finetuned, **kwargs)
    return load_model(finetuned, **kwargs)
