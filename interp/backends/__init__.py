"""Model backends beyond plain Hugging Face modules: :mod:`interp.backends.nnsight` runs
every forward as an nnsight trace, locally or on NDIF (``load_model(..., backend="nnsight")``).

Imported lazily: nnsight is an optional dependency (``interp[interop]``).
"""

from __future__ import annotations

__all__ = ["load_backend"]

BACKENDS = ("hf", "nnsight")


def load_backend(backend: str, name_or_path, **kwargs):
    """The model ``name_or_path`` on ``backend`` (``"nnsight"``)."""
    from interp.errors import InterpError

    if backend != "nnsight":
        raise InterpError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    try:
        from interp.backends.nnsight import load_nnsight
    except ImportError as e:
        raise InterpError(
            f"backend='nnsight' needs nnsight: pip install 'interp[interop]' ({e})"
        ) from None
    return load_nnsight(name_or_path, **kwargs)
