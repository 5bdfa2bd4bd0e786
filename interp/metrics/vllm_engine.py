"""Bulk sampling through vLLM: the base model and each LoRA adapter from one engine.

Hugging Face ``generate`` (:func:`interp.metrics.sample`) stays the default and the only
engine on a CPU; :class:`VLLMEngine` serves the same :func:`~interp.metrics.sample` call
on a GPU when a run needs tens of thousands of generations::

    engine = VLLMEngine("meta-llama/Llama-3.1-8B-Instruct", adapters=["adapters/era"])
    pair = interp.ModelPair.load("meta-llama/Llama-3.1-8B-Instruct", "adapters/era")
    s = interp.metrics.sample(pair.finetuned, prompts, k=100, seed=0, engine=engine)
    # or, without loading the HF weights at all: sample(engine.view("adapters/era"), ...)

Each adapter goes in as a ``LoRARequest`` (name, a stable integer id, its path), each
prompt as one request with ``SamplingParams(n=k, seed=...)`` (a seed per prompt derived
from ``seed``, so a rerun draws the same samples on the same engine version), and the
base model as requests without a LoRA. ``Samples.config`` names the engine and its
version (the CLI copies it into ``run.json``).

vLLM serves LoRA on linear layers only. :func:`check_adapter` refuses what it cannot
load (``modules_to_save``, LoRA on the embeddings or the unembedding, saved base weights,
DoRA, LoRA biases) with an :class:`~interp.errors.UnsupportedAdapterError` that says to
merge it first: :func:`merge_adapter` writes the merged model, which vLLM serves as a
plain model (one engine per merged finetune).

Interventions (steering, ablation) do not exist inside vLLM: a view refuses to sample
while interp hooks are registered on the HF model it stands for.

Everything up to the call into vLLM (adapter checks, request plans) runs without vLLM
installed; ``_backend`` swaps the vLLM classes for stand-ins in tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from safetensors import safe_open

from interp.errors import InterpError, UnsupportedAdapterError
from interp.hooks import hook_count
from interp.models import load_model

__all__ = [
    "VLLMEngine",
    "VLLMView",
    "RequestPlan",
    "check_adapter",
    "merge_adapter",
    "plan_requests",
    "prompt_seed",
    "vllm_available",
]

# the max_lora_rank values vLLM accepts
_VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_EMBEDDING_NAMES = ("embed_tokens", "wte", "embed_in", "word_embeddings", "lm_head", "embed_out")


def vllm_available() -> bool:
    """Whether vLLM is importable and a CUDA device is present."""
    import importlib.util

    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


# ---- adapters ------------------------------------------------------------------------
def _refuse(path: Path, why: str) -> UnsupportedAdapterError:
    return UnsupportedAdapterError(
        f"vLLM cannot serve adapter {path}: {why}. Merge it into the base model first "
        f"(interp.metrics.vllm_engine.merge_adapter(base, {str(path)!r}, out_dir)) and "
        "sample the merged model with VLLMEngine(out_dir), or use the Hugging Face engine."
    )


def check_adapter(path: str | Path) -> dict:
    """The adapter's config if vLLM can serve it; otherwise say why and suggest a merge.

    Reads ``adapter_config.json`` and the tensor names of ``adapter_model.safetensors``
    (both, since the config may name its targets by regex).
    """
    path = Path(path)
    cfg_file, weights = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise InterpError(
            f"{path} is not a PEFT adapter directory (adapter_config.json and "
            "adapter_model.safetensors)"
        )
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise _refuse(path, f"it is a {cfg['peft_type']} adapter, not LoRA")
    if cfg.get("modules_to_save"):
        raise _refuse(path, f"it saves whole modules (modules_to_save={cfg['modules_to_save']})")
    if cfg.get("use_dora"):
        raise _refuse(path, "it is a DoRA adapter")
    if cfg.get("bias", "none") != "none":
        raise _refuse(path, f"it trains biases (bias={cfg['bias']!r})")
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    embedding = [k for k in keys if "lora_embedding_" in k] or [
        t for t in targets if t.split(".")[-1] in _EMBEDDING_NAMES
    ]
    if embedding:
        raise _refuse(path, f"it puts LoRA on the (un)embedding ({embedding[0]})")
    full = [k for k in keys if ".lora_" not in k]
    if full:
        raise _refuse(path, f"it stores base weights ({full[0]})")
    return cfg


def merge_adapter(base: str | Path, adapter: str | Path, out: str | Path, **load_kwargs) -> Path:
    """Write ``base`` with ``adapter`` merged into its weights (safetensors) and the
    tokenizer, as a model directory vLLM (or :func:`interp.load_model`) loads as is."""
    model = load_model(base, adapter=adapter, **load_kwargs)
    out = Path(out)
    merged = model.hf.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    model.tokenizer.save_pretrained(out)
    return out


def max_lora_rank(ranks: Iterable[int]) -> int:
    """The smallest rank bound vLLM accepts that fits every adapter."""
    top = max(ranks, default=1)
    for r in _VLLM_RANKS:
        if r >= top:
            return r
    raise InterpError(f"LoRA rank {top} is above the largest vLLM serves ({_VLLM_RANKS[-1]})")


# ---- requests ------------------------------------------------------------------------
def prompt_seed(seed: int, index: int) -> int:
    """The sampling seed of prompt ``index`` in a run seeded with ``seed`` (31 bits)."""
    digest = hashlib.sha256(f"interp:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class RequestPlan:
    """What one ``LLM.generate`` call will be asked: a prompt, its sampling parameters
    (``SamplingParams`` keyword arguments) and its LoRA (name, id, path) or ``None``."""

    prompts: list[str]
    params: list[dict]
    lora: tuple[str, int, str] | None
    repeat: int = 1  # greedy: one sample per prompt, repeated k times


def plan_requests(
    texts: Sequence[str],
    *,
    k: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    lora: tuple[str, int, str] | None = None,
) -> RequestPlan:
    """The request plan for ``k`` samples of each of ``texts`` (see :class:`RequestPlan`)."""
    if k < 1:
        raise InterpError(f"k must be at least 1, got {k}")
    greedy = temperature <= 0
    params = []
    for i in range(len(texts)):
        p = dict(n=1 if greedy else k, max_tokens=max_new_tokens, seed=prompt_seed(seed, i))
        if greedy:
            p["temperature"] = 0.0
        else:
            p.update(temperature=temperature, top_p=top_p)
        params.append(p)
    return RequestPlan(list(texts), params, lora, repeat=k if greedy else 1)


def _vllm_backend() -> SimpleNamespace:
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise InterpError(
            "vLLM is not installed: pip install 'interp[vllm]' (needs a CUDA GPU), or sample "
            "with the Hugging Face engine (the default)"
        ) from None
    return SimpleNamespace(
        LLM=vllm.LLM,
        SamplingParams=vllm.SamplingParams,
        LoRARequest=LoRARequest,
        version=vllm.__version__,
    )


# ---- the engine ----------------------------------------------------------------------
@dataclass
class VLLMEngine:
    """One vLLM engine over ``base`` serving the base and every adapter in ``adapters``.

    ``llm_kwargs`` go to ``vllm.LLM`` (``tensor_parallel_size``, ``max_model_len``...).
    The engine starts on the first sample; adapters are checked at construction.
    """

    base: str
    adapters: Sequence[str | Path] = ()
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.85
    llm_kwargs: dict = field(default_factory=dict)
    _backend: SimpleNamespace | None = field(default=None, repr=False)
    _llm: object = field(default=None, repr=False)
    _ids: dict = field(default_factory=dict, repr=False)  # adapter path -> (name, id)
    _ranks: dict = field(default_factory=dict, repr=False)
    _tokenizer: object = field(default=None, repr=False)

    name = "vllm"

    def __post_init__(self):
        self.base = str(self.base)
        for path in self.adapters:
            self._register(path)

    def _register(self, path: str | Path) -> tuple[str, int, str]:
        key = str(Path(path).resolve())
        if key not in self._ids:
            rank = int(check_adapter(path)["r"])
            if self._llm is not None and (not self._ids or rank > self._max_rank()):
                raise InterpError(
                    f"adapter {path} does not fit the running engine (rank {rank}, LoRA "
                    f"{'on' if self._ids else 'off'}); list every adapter in adapters= up front"
                )
            self._ranks[key] = rank
            self._ids[key] = (f"{Path(path).name}-{len(self._ids) + 1}", len(self._ids) + 1)
        name, i = self._ids[key]
        return name, i, key

    def _max_rank(self) -> int:
        return max_lora_rank(self._ranks.values())

    @property
    def backend(self) -> SimpleNamespace:
        if self._backend is None:
            self._backend = _vllm_backend()
        return self._backend

    @property
    def version(self) -> str:
        return str(self.backend.version)

    def llm(self):
        """The running ``vllm.LLM`` (started on first use)."""
        if self._llm is None:
            kwargs = dict(model=self.base, dtype=self.dtype, **self.llm_kwargs)
            kwargs.setdefault("gpu_memory_utilization", self.gpu_memory_utilization)
            if self._ids:
                kwargs.update(enable_lora=True, max_loras=len(self._ids))
                kwargs.update(max_lora_rank=self._max_rank())
            self._llm = self.backend.LLM(**kwargs)
        return self._llm

    def chat(self, messages) -> str:
        """``messages`` rendered with the base model's chat template."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.base)
        return self._tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )

    def view(self, adapter: str | Path | None = None, *, hf_model=None) -> VLLMView:
        """What :func:`interp.metrics.sample` samples from: the base (``adapter=None``)
        or one adapter; ``hf_model`` is the interp model it stands for, if loaded."""
        lora = None if adapter is None else self._register(adapter)
        return VLLMView(self, lora, hf_model)

    def view_for(self, model) -> VLLMView:
        """The view matching an interp model: its adapter when that view is enabled."""
        if getattr(model, "variant", "base") == "finetuned":
            return self.view(model.adapter_path, hf_model=model)
        return self.view(None, hf_model=model)

    def generate(self, plan: RequestPlan) -> list[list[str]]:
        """Run ``plan`` as one batched ``LLM.generate``; completions per prompt, in order."""
        b = self.backend
        params = [b.SamplingParams(**p) for p in plan.params]
        lora = None if plan.lora is None else b.LoRARequest(*plan.lora)
        outputs = self.llm().generate(
            plan.prompts, sampling_params=params, lora_request=[lora] * len(plan.prompts)
        )
        return [[o.text for o in out.outputs] * plan.repeat for out in outputs]


@dataclass
class VLLMView:
    """The base model or one adapter of a :class:`VLLMEngine`, for ``sample()``."""

    engine: VLLMEngine
    lora: tuple[str, int, str] | None
    hf_model: object = None

    @property
    def name(self) -> str:
        return self.engine.base

    @property
    def variant(self) -> str:
        return "base" if self.lora is None else "finetuned"

    def chat(self, messages) -> str:
        return (self.hf_model or self.engine).chat(messages)

    def sample_texts(self, texts: Sequence[str], **kwargs) -> tuple[list[list[str]], dict]:
        """``k`` completions of each text, and what to record about the engine."""
        if self.hf_model is not None:
            if hook_count(self.hf_model.hf):
                raise InterpError(
                    "interventions are registered on this model, and vLLM cannot run them; "
                    "sample with the Hugging Face engine (engine=None) inside the intervention"
                )
        plan = plan_requests(texts, lora=self.lora, **kwargs)
        completions = self.engine.generate(plan)
        info = {"engine": "vllm", "engine_version": self.engine.version}
        if self.lora is not None:
            info["adapter"] = self.lora[2]
        return completions, info
