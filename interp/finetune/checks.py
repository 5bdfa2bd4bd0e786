"""What :func:`interp.finetune.finetune` refuses before it trains, each with one clear line.

- :func:`check_config`: every number of a :class:`~interp.finetune.FinetuneConfig` in range
  (epochs, batch size, rank, alpha, dropout, learning rate, weight decay, max_len, seed)
  and module lists given as lists of names (a bare string is not split into letters);
- :func:`check_examples`: each example a non-empty list of chat messages with known roles
  and text content, at least one assistant message, no empty assistant message;
- :func:`check_out_dir`: the output directory is not the base model's directory nor
  inside it (a finetune never writes over its base);
- :func:`check_chat_template`: the tokenizer can render chats;
- :func:`check_answer_tokens`: what truncation to ``max_len`` leaves to train on (examples
  whose answers it cuts away entirely are dropped with a warning; none left is an error,
  never a NaN loss), and that no example is longer than the model's positions;
- :func:`check_target_modules`: LoRA target names that exist in the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

from interp.errors import InterpError, PromptError
from interp.prompts import check_message

__all__ = [
    "check_config",
    "check_examples",
    "check_out_dir",
    "check_chat_template",
    "check_answer_tokens",
    "check_target_modules",
]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _names(value, field: str) -> None:
    if value is None:
        return
    if isinstance(value, str):
        raise InterpError(
            f"finetune {field} must be a list of module names, not the string {value!r}"
        )
    if not all(isinstance(v, str) and v for v in value):
        raise InterpError(f"finetune {field} must be non-empty module names, got {list(value)!r}")


def check_config(config) -> None:
    """Raise on the first out-of-range field of a FinetuneConfig."""
    rules = [
        ("rank", _is_int(config.rank) and config.rank >= 1, "an integer >= 1"),
        ("alpha", _is_number(config.alpha) and config.alpha > 0, "a finite number > 0"),
        ("dropout", _is_number(config.dropout) and 0 <= config.dropout < 1, "in [0, 1)"),
        ("lr", _is_number(config.lr) and config.lr > 0, "a finite number > 0"),
        ("epochs", _is_int(config.epochs) and config.epochs >= 1, "an integer >= 1"),
        ("batch_size", _is_int(config.batch_size) and config.batch_size >= 1, "an integer >= 1"),
        ("weight_decay", _is_number(config.weight_decay) and config.weight_decay >= 0, ">= 0"),
        ("max_len", _is_int(config.max_len) and config.max_len >= 2, "an integer >= 2"),
        ("seed", _is_int(config.seed), "an integer"),
    ]
    for name, ok, want in rules:
        if not ok:
            raise InterpError(f"finetune {name} must be {want}, got {getattr(config, name)!r}")
    _names(config.target_modules, "target_modules")
    if config.target_modules is not None and len(config.target_modules) == 0:
        raise InterpError("finetune target_modules is empty; give module names or None (all)")
    _names(config.modules_to_save, "modules_to_save")
    if config.method == "full" and config.target_modules is not None:
        raise InterpError("target_modules are LoRA targets; method='full' trains every weight")


def check_examples(examples: Sequence) -> None:
    """Each example: a non-empty list of valid messages with a non-empty assistant message."""
    if len(examples) == 0:
        raise InterpError("no finetuning examples")
    for i, ex in enumerate(examples):
        where = f"finetune example {i}"
        if isinstance(ex, (str, dict)) or not isinstance(ex, Sequence) or len(ex) == 0:
            raise PromptError(f"{where}: 'messages' must be a non-empty list of chat messages")
        for j, m in enumerate(ex):
            check_message(m, f"{where}, message {j}")
        answers = [m for m in ex if m["role"] == "assistant"]
        if not answers:
            raise PromptError(f"{where}: no assistant message to train on")
        if any(not m["content"].strip() for m in answers):
            raise PromptError(f"{where}: an assistant message is empty; there is nothing to learn")


def check_out_dir(base, out: Path, what: str = "out_dir") -> None:
    """``out`` may not be the base model's directory or lie inside it."""
    base_dir = Path(base).expanduser()
    if not base_dir.is_dir():
        return
    b, o = base_dir.resolve(), out.expanduser().resolve()
    if o == b:
        raise InterpError(
            f"{what} {out} is the base model's directory; finetune never writes over its base"
        )
    if o.is_relative_to(b):
        raise InterpError(
            f"{what} {out} is inside the base model's directory {base}; write elsewhere"
        )


def check_chat_template(tokenizer, base) -> None:
    if getattr(tokenizer, "chat_template", None) is None:
        raise InterpError(
            f"the tokenizer of {base} has no chat template, so chat data cannot be rendered; "
            "set tokenizer.chat_template and save it with the model"
        )


def check_answer_tokens(
    encoded: list[tuple[list[int], list[int]]],
    full_lengths: list[int],
    max_len: int,
    max_positions: int | None,
) -> list[int]:
    """The indices of examples with an answer token left after truncation to ``max_len``.

    A token is trained on when its label survives and something precedes it (the first
    token is never predicted). Examples with none are dropped with a warning; if no example
    keeps one, or one is longer than the model's positions, that is an error.
    """
    if max_positions is not None:
        for i, (ids, _) in enumerate(encoded):
            if len(ids) > max_positions:
                raise InterpError(
                    f"finetune example {i} has {len(ids)} tokens after truncation to "
                    f"max_len={max_len}, more than the {max_positions} positions the model "
                    f"supports; use max_len <= {max_positions}"
                )
    keep = [i for i, (_, labels) in enumerate(encoded) if any(x != -100 for x in labels[1:])]
    if not keep:
        raise InterpError(
            f"max_len={max_len} cuts away every answer token of all {len(encoded)} example(s) "
            f"(the shortest is {min(full_lengths)} tokens); nothing would be trained. Raise max_len"
        )
    if len(keep) < len(encoded):
        lost = sorted(set(range(len(encoded))) - set(keep))
        warnings.warn(
            f"max_len={max_len} cuts away every answer token of {len(lost)} example(s) "
            f"(e.g. {lost[:5]}); they are left out",
            stacklevel=3,
        )
    return keep


def check_target_modules(model, targets: Sequence[str] | None) -> None:
    """LoRA ``targets`` must each name modules of ``model`` (the last parts of their names)."""
    if not targets:
        return
    import torch

    names = [n for n, _ in model.named_modules() if n]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) or type(m).__name__ == "Conv1D"}
        )  # fmt: skip
        raise InterpError(
            f"target_modules {missing} name no module of this model; it has e.g. "
            f"{', '.join(leaves[:8])}"
        )
