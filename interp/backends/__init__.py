"""Model backends beyond plain Hugging Face modules: :mod:`interp.backends.nnsight` runs
every forward as an nnsight trace, locally or on NDIF (``load_model(..., backend="nnsight")``).

Importing this package registers the backend with :func:`interp.models.register_backend`
(``import interp`` imports it). nnsight itself is an optional dependency
(``interp[interop]``): it is needed when the backend is used, not to import interp.
"""

from __future__ import annotations

from interp.backends.nnsight import load_nnsight
from interp.errors import InterpError
from interp.models import register_backend

__all__ = ["load_nnsight_backend"]


def load_nnsight_backend(name_or_path, **kwargs):
    """:func:`~interp.backends.nnsight.load_nnsight`, or one clear line without nnsight."""
    try:
        import nnsight  # noqa: F401  (the optional dependency, checked before anything loads)
    except ImportError as e:
        raise InterpError(
            f"backend='nnsight' needs nnsight: pip install 'interp[interop]' ({e})"
        ) from None
    return load_nnsight(name_or_path, **kwargs)


register_backend("nnsight", load_nnsight_backend)
