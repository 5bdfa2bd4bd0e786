"""Difference of means, paired or not, and PCA of paired differences.

``diff_of_means(a, b)`` is ``mean(a) - mean(b)`` as a :class:`~interp.directions.Direction`
(``scale`` keeps its norm). With ``paired=True`` rows of ``a`` and ``b`` that share the
same key (same question, same date, same template: every metadata column except the
trigger) are matched and the per-pair differences averaged, so variation between
questions cancels out. ``paired_pca`` takes the first principal component of the same
per-pair differences, sign-aligned with their mean.

Inputs are :class:`~interp.activations.Activations` (one site chosen with ``site=``) or
plain tensors ``[n, d_model]`` (paired by row order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.directions import Direction
from interp.errors import InterpError

__all__ = [
    "diff_of_means",
    "paired_pca",
    "paired_differences",
    "mean_difference",
    "pair_keys",
]

# metadata columns that describe a row's place in its prompt, never a pairing key
_POSITIONAL = ("prompt", "position", "token_id")


def mean_difference(a: Tensor, b: Tensor) -> Tensor:
    """``mean(a) - mean(b)`` in float64: ``a`` ``[n, d]``, ``b`` ``[m, d]`` -> ``[d]``."""
    return a.double().mean(0) - b.double().mean(0)


def _site_of(acts, site: str | int | None) -> tuple[Tensor, str | None]:
    if isinstance(acts, Tensor):
        if acts.ndim != 2:
            raise InterpError(f"expected activations [n, d_model]; got {tuple(acts.shape)}")
        return acts, None
    if site is None:
        if len(acts.sites) != 1:
            raise InterpError(
                f"these activations hold {len(acts.sites)} sites; choose one with site= "
                f"(captured: {', '.join(acts.sites)})"
            )
        site = acts.sites[0]
    idx = acts.site_index(site)
    return acts.tensor[:, idx], acts.sites[idx]


def pair_keys(meta_a: pd.DataFrame, meta_b: pd.DataFrame) -> list[str]:
    """Metadata columns to pair on: shared columns whose values overlap between a and b.

    A column whose values are disjoint between the two sides (the year, the trigger
    flag, the rendered text) is what differs within a pair, so it is not a key.
    """
    keys = []
    for col in meta_a.columns:
        if col in _POSITIONAL or col not in meta_b.columns:
            continue
        va = set(meta_a[col].astype(str))
        vb = set(meta_b[col].astype(str))
        if va & vb:
            keys.append(col)
    return keys


def paired_differences(
    acts_a, acts_b, *, site: str | int | None = None, pair_on: Sequence[str] | None = None
) -> tuple[Tensor, pd.DataFrame]:
    """Per-pair differences ``a - b`` ``[n_pairs, d_model]`` and the key of each pair.

    Tensors pair by row. Activations pair by the ``pair_on`` metadata columns (default:
    :func:`pair_keys`); several rows with one key on a side are averaged first; keys
    found on only one side are dropped.
    """
    xa, _ = _site_of(acts_a, site)
    xb, _ = _site_of(acts_b, site)
    if isinstance(acts_a, Tensor) or isinstance(acts_b, Tensor):
        if xa.shape != xb.shape:
            raise InterpError(
                f"paired tensors must have one row per pair; got {tuple(xa.shape)} and {tuple(xb.shape)}"
            )
        return xa.double() - xb.double(), pd.DataFrame({"pair": range(len(xa))})
    keys = list(pair_on) if pair_on is not None else pair_keys(acts_a.meta, acts_b.meta)
    if not keys:
        raise InterpError("no metadata column to pair on; pass pair_on=[...] explicitly")
    missing = [k for k in keys if k not in acts_a.meta.columns or k not in acts_b.meta.columns]
    if missing:
        raise InterpError(f"pair_on columns missing from the metadata: {missing}")

    def grouped(x: Tensor, meta: pd.DataFrame) -> tuple[Tensor, pd.DataFrame]:
        codes = meta[keys].astype(str).agg("\x1f".join, axis=1)
        uniq, inverse = np.unique(codes.to_numpy(), return_inverse=True)
        idx = torch.from_numpy(inverse)
        sums = torch.zeros(len(uniq), x.shape[1], dtype=torch.float64)
        sums.index_add_(0, idx, x.detach().double().cpu())
        counts = torch.bincount(idx, minlength=len(uniq)).double()[:, None]
        first = meta.groupby(codes.to_numpy(), sort=True)[keys].first().reset_index(drop=True)
        return sums / counts, first.assign(_code=uniq)

    ma, ka = grouped(xa, acts_a.meta)
    mb, kb = grouped(xb, acts_b.meta)
    common, ia, ib = np.intersect1d(ka["_code"], kb["_code"], return_indices=True)
    if len(common) == 0:
        raise InterpError(f"no pair shares its {keys} values between the two sides")
    diffs = ma[torch.from_numpy(ia)] - mb[torch.from_numpy(ib)]
    return diffs, ka.iloc[ia][keys].reset_index(drop=True)


def _provenance(method: str, acts_a, acts_b, site, n: int, **extra) -> dict:
    return {
        "method": method,
        "site": site,
        "n": n,
        "model_name": getattr(acts_a, "model_name", None),
        "adapter_hash": getattr(acts_a, "adapter_hash", None),
        "adapter_hash_b": getattr(acts_b, "adapter_hash", None),
        **extra,
    }


def diff_of_means(
    acts_a,
    acts_b,
    *,
    paired: bool = False,
    site: str | int | None = None,
    pair_on: Sequence[str] | None = None,
    name: str = "diff_of_means",
) -> Direction:
    """The direction from ``b`` to ``a``: ``mean(a) - mean(b)`` (``paired`` = mean of pairs).

    ``scale`` of the result is the norm of the raw difference (useful as a steering dose).
    """
    _, site_name = _site_of(acts_a, site)
    if paired:
        diffs, keys = paired_differences(acts_a, acts_b, site=site, pair_on=pair_on)
        vec = diffs.mean(0)
        n = len(diffs)
        extra = {"paired": True, "pair_on": list(keys.columns), "n_pairs": n}
    else:
        xa, _ = _site_of(acts_a, site)
        xb, _ = _site_of(acts_b, site)
        vec = mean_difference(xa, xb)
        n = len(xa) + len(xb)
        extra = {"paired": False, "n_a": len(xa), "n_b": len(xb)}
    if float(vec.norm()) == 0.0:
        raise InterpError("the two sets have identical means; there is no direction between them")
    xdtype = acts_a.dtype if isinstance(acts_a, Tensor) else acts_a.tensor.dtype
    return Direction(
        vec.to(xdtype if xdtype.is_floating_point else torch.float32),
        site=site_name,
        name=name,
        provenance=_provenance("diff_of_means", acts_a, acts_b, site_name, n, **extra),
    )


def paired_pca(
    acts_a,
    acts_b,
    *,
    site: str | int | None = None,
    pair_on: Sequence[str] | None = None,
    center: bool = False,
    name: str = "paired_pca",
) -> Direction:
    """First principal component of the per-pair differences, pointing along their mean.

    ``center=False`` (default) takes the top right-singular vector of the uncentered
    differences (the axis they share); ``center=True`` that of the centered ones (the
    axis along which the pairs disagree most). ``provenance['explained']`` is the share
    of the (un)centered second moment along the component.
    """
    diffs, keys = paired_differences(acts_a, acts_b, site=site, pair_on=pair_on)
    if len(diffs) < 2:
        raise InterpError("paired_pca needs at least two pairs")
    mean = diffs.mean(0)
    m = diffs - mean if center else diffs
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    pc = vh[0]
    if float(pc @ mean) < 0:
        pc = -pc
    _, site_name = _site_of(acts_a, site)
    xdtype = acts_a.dtype if isinstance(acts_a, Tensor) else acts_a.tensor.dtype
    explained = float(s[0] ** 2 / (s**2).sum())
    return Direction(
        pc.to(xdtype if xdtype.is_floating_point else torch.float32),
        site=site_name,
        name=name,
        provenance=_provenance(
            "paired_pca",
            acts_a,
            acts_b,
            site_name,
            len(diffs),
            center=center,
            explained=explained,
            pair_on=list(keys.columns),
        ),
        scale=float(m.matmul(pc).abs().mean()),
    )
