"""Narrow fixes for warnings that interp's own calls make dependencies print.

Each entry names the dependency line that warns and why interp cannot avoid the call; a
filter here applies only inside the ``with`` block of the one call that triggers it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["peft_wrap"]


@contextlib.contextmanager
def peft_wrap() -> Iterator[None]:
    """Around ``get_peft_model`` / ``PeftModel.from_pretrained``.

    ``PeftModel.__init__`` (peft 0.21, ``peft_model.py``) reads the model's
    ``is_gradient_checkpointing``, which transformers 5 deprecated in favour of
    ``is_activation_checkpointing`` with a ``FutureWarning``; no argument of interp's call
    changes that read, so only this one message is silenced, only during the wrap.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield
