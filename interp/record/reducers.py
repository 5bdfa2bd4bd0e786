"""Streaming reductions over activations held in memory or in an on-disk store.

A *source* is a tensor (``[n, d_model]`` or ``[n, n_sites, d_model]``), an
:class:`~interp.record.activations.Activations` or an :class:`~interp.record.store.ActivationStore`.
Every reducer here walks a source chunk by chunk (one chunk for what is in memory, one
shard at a time for a store) and accumulates float64 sums and counts, so a store larger
than RAM costs one shard at a time, and the in-memory path is the same arithmetic.

- :func:`group_means`: the mean ``[n_groups, d_model]`` of rows by an integer group
  code per row (the engine of :func:`interp.diff_of_means` and :func:`interp.paired_pca`).
- :func:`mean_norms`: the mean L2 norm per captured site, ``{layer: norm}`` (a steering
  ``scale``, like :func:`interp.residual_norm` but from captured activations).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.errors import InterpError
from interp.record.activations import Activations
from interp.record.store import ActivationStore
from interp.sites import of_kind, site_index, site_kinds

__all__ = [
    "group_means",
    "mean_norms",
    "source_meta",
    "source_dtype",
    "source_rows",
    "resolve_site",
]


def _check(source) -> None:
    if isinstance(source, Tensor):
        if source.ndim not in (2, 3):
            raise InterpError(
                f"expected activations [n, d_model] or [n, n_sites, d_model]; "
                f"got {tuple(source.shape)}"
            )
    elif not isinstance(source, (Activations, ActivationStore)):
        raise InterpError(
            f"expected a tensor, Activations or ActivationStore; got {type(source).__name__}"
        )


def source_rows(source) -> int:
    _check(source)
    return source.shape[0] if isinstance(source, Tensor) else len(source)


def source_meta(source) -> pd.DataFrame | None:
    """The row metadata ``[n]`` of Activations or a store (None for a tensor)."""
    _check(source)
    return None if isinstance(source, Tensor) else source.meta


def source_dtype(source) -> torch.dtype:
    """The stored dtype of a source's activations (a store's is read from one shard)."""
    _check(source)
    if isinstance(source, Tensor):
        return source.dtype
    if isinstance(source, Activations):
        return source.tensor.dtype
    for t, _ in source.iter_shards(sites=[source.sites[0]], columns=[]):
        return t.dtype
    raise InterpError(f"{source.path} holds no shard yet")


def resolve_site(source, site: str | int | None) -> tuple[int, str | None]:
    """Index and name of ``site`` in a source (a tensor ``[n, d]`` has one unnamed site)."""
    _check(source)
    if isinstance(source, Tensor):
        if source.ndim == 2:
            return 0, None
        if not isinstance(site, int):
            raise InterpError("a tensor [n, n_sites, d_model] takes site= as an integer index")
        return site, None
    sites = source.sites
    if site is None:
        if len(sites) != 1:
            raise InterpError(
                f"these activations hold {len(sites)} sites; choose one with site= "
                f"(captured: {', '.join(sites)})"
            )
        return 0, sites[0]
    j = site_index(sites, site)
    return j, sites[j]


def _chunks(source, sites: list[int]) -> Iterator[tuple[Tensor, list[int]]]:
    """Row chunks ``[rows, *, d_model]`` of a source, in row order, and where ``sites`` lie.

    In-memory sources give themselves whole (no copy); a store gives one shard of the
    chosen sites at a time.
    """
    if isinstance(source, Tensor):
        yield (source[:, None] if source.ndim == 2 else source).detach(), sites
    elif isinstance(source, Activations):
        yield source.tensor.detach(), sites
    else:
        names = [source.sites[i] for i in sites]
        for t, _ in source.iter_shards(sites=names, columns=[]):
            yield t, list(range(len(sites)))


def group_means(
    source, codes: np.ndarray, n_groups: int, *, site: str | int | None = None
) -> tuple[Tensor, Tensor]:
    """Float64 means ``[n_groups, d_model]`` of the rows with each code, and counts ``[n_groups]``.

    ``codes``: one integer per row of ``source`` in ``[0, n_groups)``, or ``-1`` to skip the
    row. A group without rows has a NaN mean.
    """
    n = source_rows(source)
    codes = np.asarray(codes)
    if codes.shape != (n,):
        raise InterpError(f"{codes.shape[0] if codes.ndim else 0} group codes for {n} rows")
    j, _ = resolve_site(source, site)
    sums = counts = None
    row = 0
    for chunk, (col,) in _chunks(source, [j]):
        x = chunk[:, col]  # [rows, d_model]
        c = torch.from_numpy(codes[row : row + len(x)].astype(np.int64))
        row += len(x)
        if sums is None:
            sums = torch.zeros(n_groups, x.shape[-1], dtype=torch.float64)
            counts = torch.zeros(n_groups, dtype=torch.int64)
        keep = c >= 0
        sums.index_add_(0, c[keep], x[keep].cpu().double())
        counts += torch.bincount(c[keep], minlength=n_groups)
    if sums is None:
        raise InterpError("no activations to average")
    return sums / counts[:, None], counts


def mean_norms(
    source, *, site: str | None = None, layers: Sequence[int] | None = None
) -> dict[int, float]:
    """Mean L2 norm of the activations at each captured site of one kind, ``{layer: norm}``.

    ``site``: the kind (``"resid_post"``; default: the only kind captured); ``layers``: a
    subset of the captured layers. Norms are taken in float64 and averaged over all rows
    (with ``positions="all"`` that is every real token, as :func:`interp.residual_norm`).
    """
    _check(source)
    if isinstance(source, Tensor):
        t = source[:, None] if source.ndim == 2 else source
        keys = list(range(t.shape[1]))
        idx = keys
    else:
        kinds = site_kinds(source.sites)
        if site is None and len(kinds) != 1:
            raise InterpError(f"these activations hold the kinds {kinds}; choose one with site=")
        idx, keys = of_kind(source.sites, kinds[0] if site is None else site)
    if layers is not None:
        missing = sorted(set(layers) - set(keys))
        if missing:
            raise InterpError(f"layers {missing} were not captured (captured: {keys})")
        idx = [i for i, k in zip(idx, keys, strict=True) if k in set(layers)]
        keys = [k for k in keys if k in set(layers)]
    total = torch.zeros(len(idx), dtype=torch.float64)
    n = 0
    for chunk, cols in _chunks(source, idx):  # chunk [rows, *, d_model]
        for k, col in enumerate(cols):
            total[k] += chunk[:, col].double().norm(dim=-1).sum()
        n += len(chunk)
    if n == 0:
        raise InterpError("no activations to average")
    return {k: float(v) / n for k, v in zip(keys, total, strict=True)}
