"""Exceptions raised by interp.

Every error a user can cause by bad input is an :class:`InterpError`; each subclass
names one kind of problem so callers (and tests) can catch exactly that.
"""

from __future__ import annotations

__all__ = [
    "InterpError",
    "SiteError",
    "LayerOutOfRangeError",
    "EmptyPromptsError",
    "SpanNotFoundError",
    "PositionError",
    "AdapterMismatchError",
    "StoreMismatchError",
    "StoreCorruptedError",
    "UnsafeWeightsError",
    "UnsupportedArchitectureError",
    "PromptError",
    "QuestionFileError",
    "JudgeError",
    "IntegrityError",
    "RunDirectoryError",
    "UnsupportedAdapterError",
    "BackendError",
    "ConfigError",
]


class InterpError(ValueError):
    """Base class of every input error interp raises."""


class SiteError(InterpError):
    """An activation site name that interp does not know."""


class LayerOutOfRangeError(SiteError):
    """A layer index outside ``[-n_layers, n_layers)``."""


class EmptyPromptsError(InterpError):
    """An empty list of prompts."""


class SpanNotFoundError(InterpError):
    """A tagged span (e.g. a trigger string) that does not occur in a prompt."""


class PositionError(InterpError):
    """A token position that does not exist in a prompt, or a malformed position spec."""


class AdapterMismatchError(InterpError):
    """A PEFT adapter trained for a different base model."""


class StoreMismatchError(InterpError):
    """An on-disk activation store whose manifest does not match the request."""


class StoreCorruptedError(InterpError):
    """An activation store shard whose checksum does not match its manifest."""


class UnsafeWeightsError(InterpError):
    """A weights file that is not safetensors (interp never unpickles user files)."""


class UnsupportedArchitectureError(InterpError):
    """A model family with no row in :data:`interp.sites.FAMILIES`."""


class PromptError(InterpError):
    """A prompt that cannot run: empty text, an unknown chat role, non-text content."""


class QuestionFileError(InterpError):
    """A question file (``interp eval``) that cannot run as written."""


class JudgeError(InterpError):
    """A judge that failed or answered something interp cannot read."""


class IntegrityError(InterpError):
    """A file whose checksum does not match, or that is corrupted or truncated."""


class RunDirectoryError(InterpError):
    """An output directory that a command may not write into (it would lose data)."""


class UnsupportedAdapterError(AdapterMismatchError):
    """An adapter an engine or backend cannot apply (e.g. vLLM and ``modules_to_save``)."""


class BackendError(InterpError):
    """A model backend that cannot run as asked (e.g. NDIF without an API key)."""


class ConfigError(InterpError):
    """A config (``from_dict``) with an unknown key, a missing field or a wrong type."""
