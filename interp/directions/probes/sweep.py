"""Probe every captured layer: grouped stratified CV or one held-out split."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.directions import Direction
from interp.directions.probes.estimator import LinearProbe, _as_numpy
from interp.directions.probes.solver import auroc, fit_logistic
from interp.errors import InterpError
from interp.metrics.stats import Estimate, mean_ci
from interp.record.store import ActivationStore
from interp.sites import Site

__all__ = ["probe_layers", "cv_folds"]


def _column(meta: pd.DataFrame | None, value, n: int, what: str) -> np.ndarray:
    if isinstance(value, str):
        if meta is None or value not in meta.columns:
            raise InterpError(f"{what}={value!r} is not a metadata column")
        return meta[value].to_numpy()
    arr = _as_numpy(value)
    if len(arr) != n:
        raise InterpError(f"{what} has {len(arr)} entries for {n} rows")
    return arr


def cv_folds(y: np.ndarray, groups: np.ndarray | None, cv: int, seed: int) -> list[np.ndarray]:
    """Test-row index arrays of ``cv`` stratified (and grouped) folds."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        return [test for _, test in splitter.split(np.zeros(len(y)), y)]
    n_groups = len(np.unique(groups))
    if n_groups < cv:
        raise InterpError(f"only {n_groups} groups for cv={cv} folds")
    splitter = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(y)), y, groups)]


def _layer_data(acts, site: str | None) -> tuple[list[Site], list[int | None], int, Callable]:
    """Site names, layers, the row count and ``load(j) -> [n, d]`` for the j-th site.

    ``acts``: a tensor ``[n, n_sites, d]`` or ``[n, d]``, Activations, or an
    :class:`~interp.record.store.ActivationStore` (``load`` then reads that site alone).
    """
    if isinstance(acts, Tensor):
        t = acts if acts.ndim == 3 else acts[:, None]
        return [None] * t.shape[1], list(range(t.shape[1])), t.shape[0], lambda j: t[:, j]  # type: ignore[list-item]
    sites = [Site.parse(s) for s in acts.sites]
    keep = list(range(len(sites)))
    if site is not None:
        keep = [i for i, s in enumerate(sites) if site in (s, s.kind)]
        if not keep:
            raise InterpError(f"no captured site matches {site!r} (captured: {', '.join(sites)})")
    names = [sites[i] for i in keep]
    layers = [s.layer for s in names]
    if isinstance(acts, ActivationStore):
        return names, layers, len(acts), lambda j: acts.site(names[j])
    return names, layers, len(acts), lambda j: acts.tensor[:, keep[j]]


def probe_layers(
    acts,
    labels,
    *,
    cv: int = 5,
    groups=None,
    train=None,
    test=None,
    C: float = 1.0,
    solver: str = "torch",
    site: str | None = None,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> pd.DataFrame:
    """Probe every captured site; one row per site.

    ``acts``: :class:`~interp.record.activations.Activations`, a tensor ``[n, n_layers, d]`` or
    an :class:`~interp.record.store.ActivationStore`, which is read one site at a time (memory
    ``n * d``, not ``n * n_sites * d``); each gives the same table for the same values.
    ``labels`` / ``groups``: metadata column names or arrays ``[n]``. With ``groups``
    each group stays within one fold. With ``train`` and ``test`` (boolean masks ``[n]``,
    e.g. ``acts.meta.year <= 2004`` and ``acts.meta.year >= 2017``) the probe is fit on
    the train rows and scored on the test rows only (held-out trigger values); the
    intervals then come from a 2,000-sample bootstrap over test rows.

    Columns: ``layer``, ``site``, ``accuracy``, ``accuracy_lo``, ``accuracy_hi``,
    ``auroc``, ``auroc_lo``, ``auroc_hi``, ``n_folds``, ``n_train``, ``n_test`` and
    ``direction`` (a :class:`Direction` fit on all rows, or on the train rows).
    """
    sites, layers, n, load = _layer_data(acts, site)
    meta = getattr(acts, "meta", None)
    y_raw = _column(meta, labels, n, "labels")
    classes = np.unique(y_raw)
    if len(classes) != 2:
        raise InterpError(f"probe_layers needs two label values; got {list(classes)}")
    y = (y_raw == classes[1]).astype(np.float64)
    label_name = labels if isinstance(labels, str) else "labels"
    test_sets, fit_mask, mode = _splits(meta, y, n, train, test, groups, cv, seed)
    W = _fold_weights(test_sets, fit_mask)  # [F + 1, n]
    provenance = {
        "method": "logistic_probe",
        "mode": mode,
        "labels": label_name,
        "classes": [str(c) for c in classes],
        "C": C,
        "solver": solver,
        "n": int(fit_mask.sum()),
        "model_name": getattr(acts, "model_name", None),
        "adapter_hash": getattr(acts, "adapter_hash", None),
    }
    rows = []
    for j, (site_name, layer) in enumerate(zip(sites, layers, strict=True)):
        X = load(j)  # [n, d]: one site at a time (a store reads only this site)
        if not X.is_floating_point() or X.dtype in (torch.float16, torch.bfloat16):
            X = X.float()
        coef, intercept = _fit_folds(X, y, W, C, solver, max_iter, tol)
        Xn = X.cpu().numpy().astype(np.float64)
        acc, auc = _score_folds(Xn, y, coef, intercept, test_sets, mode, seed)
        direction = (
            Direction(
                torch.from_numpy(coef[-1]).float(),
                site=site_name,
                layer=layer,
                name=f"probe:{label_name}@{site_name or layer}",
                provenance=dict(provenance),
            )
            if np.abs(coef[-1]).max() > 0
            else None
        )
        n_train = int(fit_mask.sum() - (len(test_sets[0]) if mode == "cv" else 0))
        counts = {"n_folds": len(test_sets), "n_train": n_train}
        counts["n_test"] = int(sum(len(t) for t in test_sets))
        rows.append({"layer": layer, "site": site_name, **_estimates(acc, auc), **counts})
        rows[-1]["direction"] = direction
    return pd.DataFrame(rows)


def _estimates(acc: Estimate, auc: Estimate) -> dict[str, float]:
    """The table's accuracy and AUROC columns (value, lower and upper bound)."""
    return {
        f"{name}{suffix}": getattr(est, attr)
        for name, est in (("accuracy", acc), ("auroc", auc))
        for suffix, attr in (("", "value"), ("_lo", "lo"), ("_hi", "hi"))
    }


def _splits(meta, y, n, train, test, groups, cv, seed) -> tuple[list, np.ndarray, str]:
    """The test rows of each fold, the rows every fit may use, and ``"holdout"`` / ``"cv"``."""
    if (train is None) != (test is None):
        raise InterpError("pass both train= and test= (or neither)")
    if train is not None:
        tr = _column(meta, train, n, "train").astype(bool)
        te = _column(meta, test, n, "test").astype(bool)
        if len(np.unique(y[tr])) < 2:
            raise InterpError("the train rows hold only one label value")
        return [np.flatnonzero(te)], tr, "holdout"
    g = None if groups is None else _column(meta, groups, n, "groups")
    return cv_folds(y, g, cv, seed), np.ones(n, dtype=bool), "cv"


def _fold_weights(test_sets: list, fit_mask: np.ndarray) -> np.ndarray:
    """Row weights ``[F + 1, n]``: one row per fold (its train rows), the last the final fit."""
    W = np.zeros((len(test_sets) + 1, len(fit_mask)))
    for f, te_idx in enumerate(test_sets):
        W[f] = fit_mask
        W[f, te_idx] = 0.0
    W[-1] = fit_mask
    return W


def _fit_folds(X: Tensor, y: np.ndarray, W: np.ndarray, C, solver, max_iter, tol):
    """Coefficients ``[F + 1, d]`` and intercepts ``[F + 1]``: one fit per row of ``W``."""
    if solver == "torch":
        Wt, yt = torch.from_numpy(W), torch.from_numpy(y)
        # the final fit first; it warm-starts the folds (each drops 1/cv of the rows)
        w1, b1, _ = fit_logistic(X, yt, Wt[-1:], C=C, max_iter=max_iter, tol=tol)
        w, b, _ = fit_logistic(X, yt, Wt[:-1], C=C, max_iter=max_iter, tol=tol, init=(w1, b1))
        return torch.cat([w, w1]).cpu().numpy(), torch.cat([b, b1]).cpu().numpy()
    coef = np.zeros((len(W), X.shape[1]))
    intercept = np.zeros(len(W))
    Xn = X.cpu().numpy()
    for f in range(len(W)):
        keep = W[f] > 0
        pr = LinearProbe(C=C, solver=solver, max_iter=max_iter).fit(Xn[keep], y[keep])
        coef[f], intercept[f] = pr.coef_[0], pr.intercept_[0]
    return coef, intercept


def _score_folds(Xn, y, coef, intercept, test_sets, mode: str, seed: int):
    """Accuracy and AUROC estimates over the folds (or the held-out rows, bootstrapped)."""
    if mode != "cv":
        te = test_sets[0]
        return _bootstrap(Xn[te] @ coef[0] + intercept[0], y[te], seed)
    accs, aucs = [], []
    for f, te_idx in enumerate(test_sets):
        scores = Xn[te_idx] @ coef[f] + intercept[f]
        accs.append(np.mean((scores > 0) == (y[te_idx] > 0.5)))
        aucs.append(auroc(scores, y[te_idx]))
    acc = mean_ci(accs, bounds=(0.0, 1.0))
    auc = mean_ci([a for a in aucs if a == a] or [float("nan")], bounds=(0.0, 1.0))
    return acc, auc


def _bootstrap(scores: np.ndarray, y: np.ndarray, seed: int, n_boot: int = 2000):
    """Accuracy and AUROC on one test set, with percentile bootstrap intervals."""
    rng = np.random.default_rng(seed)
    correct = (scores > 0) == (y > 0.5)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    acc_b = correct[idx].mean(1)
    lo, hi = np.quantile(acc_b, [0.025, 0.975]).tolist()
    acc = Estimate(float(correct.mean()), lo, hi, len(y))
    auc_value = auroc(scores, y)
    if auc_value != auc_value:
        return acc, Estimate(float("nan"), float("nan"), float("nan"), len(y))
    aucs = [auroc(scores[i], y[i]) for i in idx[:400]]
    aucs = [a for a in aucs if a == a]
    lo, hi = np.quantile(aucs, [0.025, 0.975]).tolist()
    return acc, Estimate(auc_value, lo, hi, len(y))
