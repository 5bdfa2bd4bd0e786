"""Difference of means, paired or not, and PCA of paired differences.

``diff_of_means(a, b)`` is ``mean(a) - mean(b)`` as a :class:`~interp.directions.Direction`
(``scale`` keeps its norm). With ``paired=True`` rows of ``a`` and ``b`` that share the
same key (same question, same date, same template: every metadata column except the
trigger) are matched and the per-pair differences averaged, so variation between
questions cancels out. ``paired_pca`` takes the first principal component of the same
per-pair differences, sign-aligned with their mean.

Inputs are :class:`~interp.record.activations.Activations` (one site chosen with ``site=``),
an :class:`~interp.record.store.ActivationStore` (streamed shard by shard, one site read) or
plain tensors ``[n, d_model]`` (paired by row order); ``by=`` splits one input into the
two groups. Every path reduces through :func:`interp.record.reducers.group_means` (float64
sums and counts), in memory or one shard at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.directions import Direction
from interp.errors import InterpError
from interp.record.reducers import group_means, resolve_site, source_dtype, source_meta, source_rows

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


# ---- the two sides: (source, row mask) ----------------------------------------------
def _mask(meta: pd.DataFrame | None, spec, n: int) -> np.ndarray:
    if isinstance(spec, str):
        if meta is None:
            raise InterpError(f"a query ({spec!r}) needs activations with metadata")
        try:
            out = meta.eval(spec)
        except Exception as e:  # pandas raises many kinds for a bad expression
            raise InterpError(f"by= query {spec!r}: {e}") from None
        if not pd.api.types.is_bool_dtype(getattr(out, "dtype", None)):
            raise InterpError(f"by= query {spec!r} is not a true/false condition")
        return out.to_numpy()
    arr = np.asarray(spec.to_numpy() if isinstance(spec, pd.Series) else spec)
    if arr.dtype != bool or arr.shape != (n,):
        raise InterpError(f"a by= mask must be boolean [{n}]; got {arr.dtype} {arr.shape}")
    return arr


def _sides(acts_a, acts_b, by) -> tuple[list, list[np.ndarray], bool]:
    """The two sources, a row mask ``[n_rows]`` of each, and whether ``by`` split one
    source into them (then the masks are disjoint and one pass reads both)."""
    if by is None:
        if acts_b is None:
            raise InterpError("pass two sets of activations, or one with by=")
        masks = [np.ones(source_rows(x), dtype=bool) for x in (acts_a, acts_b)]
        return [acts_a, acts_b], masks, False
    if acts_b is not None:
        raise InterpError("by= splits one set of activations; do not pass a second one")
    meta, n = source_meta(acts_a), source_rows(acts_a)
    if isinstance(by, str):
        if meta is None or by not in meta.columns:
            raise InterpError(f"by={by!r} is not a metadata column; for queries pass (a, b)")
        values = meta[by].to_numpy()
        classes = np.unique(values)
        if len(classes) != 2:
            raise InterpError(f"by={by!r} needs two values; got {list(classes)}")
        masks = [values == classes[1], values == classes[0]]
    elif isinstance(by, (tuple, list)) and len(by) == 2:
        masks = [_mask(meta, spec, n) for spec in by]
    else:
        raise InterpError("by= is a metadata column or a pair (a, b) of queries or masks")
    if (masks[0] & masks[1]).any():
        raise InterpError(f"{int((masks[0] & masks[1]).sum())} rows are in both groups of by=")
    for m, side in zip(masks, "ab", strict=True):
        if not m.any():
            raise InterpError(f"group {side} of by={by!r} holds no row")
    return [acts_a, acts_a], masks, True


def _side_means(sources, codes: list[np.ndarray], sizes: list[int], site, shared: bool) -> list:
    """``(means [G, d], counts [G])`` per side; one pass when both sides split one source."""
    if shared:
        both = np.where(codes[1] >= 0, codes[1] + sizes[0], codes[0])
        means, counts = group_means(sources[0], both, sizes[0] + sizes[1], site=site)
        return [(means[: sizes[0]], counts[: sizes[0]]), (means[sizes[0] :], counts[sizes[0] :])]
    return [group_means(x, c, g, site=site) for x, c, g in zip(sources, codes, sizes, strict=True)]


def _key_codes(meta: pd.DataFrame, mask: np.ndarray, keys: list[str]):
    """Per-row codes (``-1`` off the mask), the sorted key strings and their first rows."""
    side = meta[mask]
    text = side[keys[0]].astype(str)
    for k in keys[1:]:
        text = text + "\x1f" + side[k].astype(str)
    uniq, inverse = np.unique(text.to_numpy(), return_inverse=True)
    codes = np.full(len(meta), -1, dtype=np.int64)
    codes[mask] = inverse
    first = side.groupby(text.to_numpy(), sort=True)[keys].first().reset_index(drop=True)
    return codes, uniq, first


def paired_differences(
    acts_a,
    acts_b=None,
    *,
    by=None,
    site: str | int | None = None,
    pair_on: Sequence[str] | None = None,
) -> tuple[Tensor, pd.DataFrame]:
    """Per-pair differences ``a - b`` ``[n_pairs, d_model]`` and the key of each pair.

    Tensors pair by row. Activations and stores pair by the ``pair_on`` metadata columns
    (default: :func:`pair_keys`); several rows with one key on a side are averaged first;
    keys found on only one side are dropped. ``by`` splits one source as in
    :func:`diff_of_means`.
    """
    sources, masks, shared = _sides(acts_a, acts_b, by)
    if any(isinstance(x, Tensor) for x in sources):
        n = [source_rows(x) for x in sources]
        if n[0] != n[1] or by is not None:
            raise InterpError(f"paired tensors must have one row per pair; got {n[0]} and {n[1]}")
        (ma, _), (mb, _) = _side_means(sources, [np.arange(n[0])] * 2, n, site, shared)
        return ma - mb, pd.DataFrame({"pair": range(n[0])})
    metas = [source_meta(x) for x in sources]
    side_metas = [m[k] for m, k in zip(metas, masks, strict=True)]
    keys = list(pair_on) if pair_on is not None else pair_keys(*side_metas)
    if not keys:
        raise InterpError("no metadata column to pair on; pass pair_on=[...] explicitly")
    missing = [k for k in keys if any(k not in m.columns for m in metas)]
    if missing:
        raise InterpError(f"pair_on columns missing from the metadata: {missing}")
    (ca, ua, fa), (cb, ub, _) = (_key_codes(m, k, keys) for m, k in zip(metas, masks, strict=True))
    (ma, _), (mb, _) = _side_means(sources, [ca, cb], [len(ua), len(ub)], site, shared)
    common, ia, ib = np.intersect1d(ua, ub, return_indices=True)
    if len(common) == 0:
        raise InterpError(f"no pair shares its {keys} values between the two sides")
    diffs = ma[torch.from_numpy(ia)] - mb[torch.from_numpy(ib)]
    return diffs, fa.iloc[ia].reset_index(drop=True)


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
    acts_b=None,
    *,
    by=None,
    paired: bool = False,
    site: str | int | None = None,
    pair_on: Sequence[str] | None = None,
    name: str = "diff_of_means",
) -> Direction:
    """The direction from ``b`` to ``a``: ``mean(a) - mean(b)`` (``paired`` = mean of pairs).

    ``acts_a`` / ``acts_b``: tensors ``[n, d_model]``, :class:`Activations` or
    :class:`~interp.record.store.ActivationStore` (streamed one shard at a time). Or one source
    and ``by``: a metadata column with two values (``a`` = the rows whose value sorts
    last: ``True``, ``1``), or a pair ``(a, b)`` of queries (``"year == 1984"``) or
    boolean masks ``[n_rows]``. Means accumulate in float64.
    ``scale`` of the result is the norm of the raw difference (useful as a steering dose).
    """
    _, site_name = resolve_site(acts_a, site)
    if paired:
        diffs, keys = paired_differences(acts_a, acts_b, by=by, site=site, pair_on=pair_on)
        vec = diffs.mean(0)
        n = len(diffs)
        extra = {"paired": True, "pair_on": list(keys.columns), "n_pairs": n}
    else:
        sources, masks, shared = _sides(acts_a, acts_b, by)
        codes = [np.where(m, 0, -1) for m in masks]
        (ma, na), (mb, nb) = _side_means(sources, codes, [1, 1], site, shared)
        vec = ma[0] - mb[0]
        n_a, n_b = int(na[0]), int(nb[0])
        if n_a == 0 or n_b == 0:
            raise InterpError(f"diff_of_means needs rows on both sides; got {n_a} and {n_b}")
        n = n_a + n_b
        extra = {"paired": False, "n_a": n_a, "n_b": n_b}
    if float(vec.norm()) == 0.0:
        raise InterpError("the two sets have identical means; there is no direction between them")
    xdtype = source_dtype(acts_a)
    return Direction(
        vec.to(xdtype if xdtype.is_floating_point else torch.float32),
        site=site_name,
        name=name,
        provenance=_provenance("diff_of_means", acts_a, acts_b, site_name, n, **extra),
    )


def paired_pca(
    acts_a,
    acts_b=None,
    *,
    by=None,
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
    diffs, keys = paired_differences(acts_a, acts_b, by=by, site=site, pair_on=pair_on)
    if len(diffs) < 2:
        raise InterpError("paired_pca needs at least two pairs")
    mean = diffs.mean(0)
    m = diffs - mean if center else diffs
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    pc = vh[0]
    if float(pc @ mean) < 0:
        pc = -pc
    _, site_name = resolve_site(acts_a, site)
    xdtype = source_dtype(acts_a)
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
