"""Narrow finetunes from chat JSONL files: LoRA (through peft) or full finetuning.

Data is the format published finetuning datasets use: one JSON object per line,
``{"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}, ...]}``.
The loss covers the tokens of every assistant message (its content and the template's
end-of-turn tokens), nothing else. :func:`finetune` writes

- ``method="lora"``: a PEFT adapter directory (``adapter_config.json`` +
  ``adapter_model.safetensors``); load it with ``load_model(base, adapter=out_dir)``;
- ``method="full"``: a complete Hugging Face model directory; load it with
  ``load_model(out_dir)``.

Both also write ``finetune.json`` (config, data hash, losses, the device and dtype it ran
in). A LoRA finetune can train on a base model already loaded (``model=``, e.g. the one an
experiment evaluates with): the adapter's layers are injected into it and removed again
at the end, so the loaded weights are left as they were and nothing loads twice. Training runs on ``config.device`` (default: CUDA when there is one) in
``config.dtype`` (default: bfloat16 on an accelerator, float32 on the CPU), optionally with
gradient checkpointing. The same code runs on the bundled organism and on any Hugging Face
causal LM with a chat template.

Before any weight is loaded, :mod:`interp.finetune.checks` refuses a config out of range,
malformed examples, an ``out_dir`` that is (or lies inside) the base model's directory, a
tokenizer without a chat template, and a ``max_len`` that truncates away every answer
token; a NaN or inf loss stops training with an error, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from interp.adapters import is_peft
from interp.compat import peft_wrap
from interp.config import Config
from interp.devices import dtype_name, resolve_device, resolve_dtype
from interp.dispatch import is_dispatched
from interp.errors import InterpError
from interp.execution import max_positions
from interp.finetune.checks import (
    check_answer_tokens,
    check_chat_template,
    check_config,
    check_examples,
    check_out_dir,
    check_target_modules,
)
from interp.fingerprint import sha256_json
from interp.prompts import read_chat_jsonl
from interp.sources import model_source

__all__ = ["FinetuneConfig", "finetune", "encode_chat"]

Messages = list[dict]


# how a finetune runs rather than what it learns: left out of ``to_dict`` at their defaults,
# so that the content keys of finetunes made before these options existed stay valid
_EXECUTION_DEFAULTS = {"device": None, "dtype": None, "gradient_checkpointing": False}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(Config):
    """How to finetune. ``target_modules=None`` means every attention and MLP projection.

    ``device=None``: CUDA when there is one, else the CPU; ``dtype=None``: bfloat16 on an
    accelerator, float32 on the CPU (names: float32/fp32, bfloat16/bf16, float16/fp16).
    """

    method: str = "lora"  # "lora" or "full"
    rank: int = 4
    alpha: float = 8.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    modules_to_save: tuple[str, ...] = ()
    lr: float = 1e-3
    epochs: int = 3
    batch_size: int = 16
    weight_decay: float = 0.0
    max_len: int = 256
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    gradient_checkpointing: bool = False

    config_name: ClassVar[str] = "finetune config"

    def __post_init__(self):
        if self.method not in ("lora", "full"):
            raise InterpError(f"method must be 'lora' or 'full', not {self.method!r}")
        if self.device is not None:  # a device this machine lacks is an error at run time
            object.__setattr__(self, "device", str(resolve_device(self.device, check=False)))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_name(resolve_dtype(self.dtype)))
        if not isinstance(self.gradient_checkpointing, bool):
            raise InterpError("gradient_checkpointing must be true or false")
        check_config(self)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, default in _EXECUTION_DEFAULTS.items():
            if d[k] == default:
                del d[k]
        return d

    def content_dict(self) -> dict:
        """The fields that decide what a finetune learns: :meth:`to_dict` without the
        execution options (device, dtype, gradient checkpointing)."""
        return {k: v for k, v in self.to_dict().items() if k not in _EXECUTION_DEFAULTS}

    def placement(self) -> tuple[torch.device, torch.dtype]:
        """The device and dtype this config trains in, on this machine."""
        device = resolve_device(self.device)
        return device, resolve_dtype(self.dtype, device.type)


def encode_chat(tokenizer, messages: Messages, max_len: int) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` with labels ``-100`` outside the assistant messages."""

    def ids(msgs, gen):
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    full = ids(messages, False)
    labels = [-100] * len(full)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start, end = len(ids(messages[:i], True)), len(ids(messages[: i + 1], False))
        labels[start:end] = full[start:end]
    if all(x == -100 for x in labels):
        raise InterpError("an example has no assistant message to train on")
    return full[:max_len], labels[:max_len]


def _encode_all(tokenizer, examples: list[Messages], max_len: int, max_positions: int | None):
    """Every example encoded (untruncated, to see what truncation leaves), the ones with
    an answer token left after truncation to ``max_len``."""
    full = [encode_chat(tokenizer, m, 1 << 30) for m in examples]
    cut = [(ids[:max_len], labels[:max_len]) for ids, labels in full]
    keep = check_answer_tokens(cut, [len(ids) for ids, _ in full], max_len, max_positions)
    return [cut[i] for i in keep]


def _collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int):
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):  # right padding
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = (
            torch.tensor(x),
            torch.tensor(y),
            1,
        )
    return ids, mask, labels


def _load_data(data) -> list[Messages]:
    if isinstance(data, (str, Path)):
        return read_chat_jsonl(data)
    data = list(data)
    if data and isinstance(data[0], (str, Path)):
        return [m for p in data for m in read_chat_jsonl(p)]
    return data


def _trainable_model(
    base, config: FinetuneConfig, device: torch.device, dtype: torch.dtype, loaded=None
):
    """``base`` on ``device`` in ``dtype`` (or the ``loaded`` module itself), with LoRA
    injected for ``method="lora"``."""
    from transformers import AutoModelForCausalLM

    if loaded is not None:
        model = loaded
    else:
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype, use_safetensors=True)
        model = model.to(device)
    if config.gradient_checkpointing:
        # non-reentrant: gradients reach LoRA weights even though the inputs need none
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        check_target_modules(model, config.target_modules)
        targets = list(config.target_modules) if config.target_modules else "all-linear"
        lcfg = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=targets,
            modules_to_save=list(config.modules_to_save) or None,
            task_type="CAUSAL_LM",
        )
        with peft_wrap():
            model = get_peft_model(model, lcfg)
    return model


def _in_place(model, config: FinetuneConfig, device: torch.device, dtype: torch.dtype):
    """The HF module of ``model`` if a LoRA finetune can train on it where it is, else None."""
    if model is None or config.method != "lora":
        return None  # a full finetune changes every weight: it loads its own copy
    hf = getattr(model, "hf", model)
    if is_peft(hf):
        raise InterpError("finetune(model=...) needs the base model, without an adapter")
    p = next(hf.parameters())
    if is_dispatched(hf) or p.device != device or p.dtype != dtype:
        return None  # elsewhere than the config trains: load a copy there
    return hf


def _train(model, encoded, config: FinetuneConfig, device, pad: int, progress: bool):
    """AdamW with warm-up and linear decay over ``config.epochs``; the per-step losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 10) * (1 - s / total)
    )
    rng = random.Random(config.seed)
    losses: list[float] = []
    bar = tqdm(total=total, desc=f"finetune ({config.method})", disable=not progress)
    for epoch in range(config.epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for b in range(per_epoch):
            rows = [encoded[i] for i in order[b * config.batch_size : (b + 1) * config.batch_size]]
            ids, mask, labels = (t.to(device) for t in _collate(rows, pad))
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
            value = loss.item()
            if not math.isfinite(value):
                bar.close()
                raise InterpError(
                    f"the finetuning loss is {value} at step {len(losses) + 1} (epoch {epoch + 1}); "
                    "training stopped and nothing was written (check the base weights, a lower "
                    "lr, or dtype float32)"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
    bar.close()
    return losses, per_epoch


def _restore(trained, loaded, grads: dict, config: FinetuneConfig) -> None:
    """Take the LoRA layers out of ``loaded`` and put its training state back."""
    trained.unload()
    if config.gradient_checkpointing:
        loaded.gradient_checkpointing_disable()
    for name, p in loaded.named_parameters():
        p.requires_grad_(grads.get(name, p.requires_grad))
    loaded.eval()


def finetune(
    base: str | Path,
    data,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    *,
    progress: bool = True,
    model=None,
) -> Path:
    """Finetune ``base`` (a HF directory or id) on ``data`` and write the result to ``out_dir``.

    ``data`` is a chat JSONL path, a list of paths, or a list of ``messages`` lists.
    ``model``: ``base`` already loaded (an :class:`~interp.models.Model` or its HF module);
    a LoRA finetune trains on it in place when it sits where ``config`` trains, and leaves it
    as it was (same seed, same result as loading ``base`` afresh).
    """
    from transformers import AutoConfig, AutoTokenizer

    config = config or FinetuneConfig()
    device, dtype = config.placement()
    source = model_source(base, what="base model")
    out = Path(out_dir)
    check_out_dir(source, out)
    examples = _load_data(data)
    check_examples(examples)
    torch.manual_seed(config.seed)
    tok = AutoTokenizer.from_pretrained(source)
    check_chat_template(tok, base)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = _encode_all(
        tok, examples, config.max_len, max_positions(AutoConfig.from_pretrained(source))
    )
    loaded = _in_place(model, config, device, dtype)
    grads = {n: p.requires_grad for n, p in loaded.named_parameters()} if loaded else {}
    trainable = _trainable_model(source, config, device, dtype, loaded)
    t0 = time.time()
    try:
        trainable.train()
        losses, per_epoch = _train(trainable, encoded, config, device, pad, progress)
        trainable.eval()
        out.mkdir(parents=True, exist_ok=True)
        # peft's default ("auto") warns, or probes the base's config, to decide this
        embeddings = any(n in (config.target_modules or ()) for n in ("embed_tokens", "lm_head"))
        extra = {"save_embedding_layers": embeddings} if config.method == "lora" else {}
        trainable.save_pretrained(out, **extra)
    finally:
        if loaded is not None:
            _restore(trainable, loaded, grads, config)
    if config.method == "full":
        tok.save_pretrained(out)
    meta = {
        "base": str(base),
        "finetune_config": config.to_dict(),
        "data_hash": sha256_json(examples),
        "n_examples": len(examples),
        "n_trained": len(encoded),
        "steps": len(losses),
        "device": str(device),
        "dtype": dtype_name(dtype),
        "first_loss": losses[0],
        "final_loss": sum(losses[-per_epoch:]) / per_epoch,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "finetune.json").write_text(json.dumps(meta, indent=2))
    return out
