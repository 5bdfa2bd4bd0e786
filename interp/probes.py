"""Linear probes: L2 logistic regression per layer, with honest cross-validation.

:class:`LinearProbe` follows the scikit-learn estimator contract (parameters in
``__init__``, learning in ``fit`` which returns ``self``, learned state ending in ``_``:
``coef_``, ``intercept_``, ``classes_``, ``direction_``). It minimizes the same
objective as ``sklearn.linear_model.LogisticRegression(C=C)`` (L2 penalty, unpenalized
intercept)::

    0.5 * |w|^2 + C * sum_i logloss(y_i, x_i . w + b)

``solver="torch"`` (default) solves it by damped Newton steps on the full batch, several
problems at once (every CV fold and the final fit of one layer share one pass over the
data); ``solver="sklearn"`` hands it to scikit-learn.

:func:`probe_layers` sweeps every captured layer: grouped, stratified K-fold
cross-validation (``groups=`` keeps paraphrases of one question in one fold) or one
held-out split (train on some trigger values, test on others), and returns a table with
accuracy and AUROC (mean and 95% interval over folds) and the fitted directions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.directions import Direction
from interp.errors import InterpError
from interp.stats import mean_ci

__all__ = ["LinearProbe", "probe_layers", "fit_logistic", "auroc"]


# ---- the solver ------------------------------------------------------------------------
def _objective(X: Tensor, y: Tensor, m: Tensor, w: Tensor, b: Tensor, C: float) -> Tensor:  # -> [F]
    z = w @ X.T + b[:, None]  # [F, n]
    # logloss(y, z) = softplus(z) - y z
    loss = (torch.nn.functional.softplus(z) - y * z) * m
    return 0.5 * (w * w).sum(1) + C * loss.sum(1)


def _primal_newton_step(Xa: Tensor, s: Tensor, g: Tensor, reg: Tensor) -> Tensor:
    """Solve ``(diag(reg) + Xa^T diag(s) Xa) step = g`` per problem: ``[A, da]``.

    The Hessians are built in ``Xa``'s precision (the gradient stays float64, so an
    inexact Hessian only slows convergence, it never moves the optimum).
    """
    H = torch.stack([Xa.T @ (Xa * s[a, :, None]) for a in range(len(s))])  # [A, da, da]
    H.diagonal(dim1=1, dim2=2).add_(reg.to(H.dtype))
    L, info = torch.linalg.cholesky_ex(H)
    if bool((info != 0).any()):  # ill-conditioned in low precision: redo in float64
        H = H.double()
        H.diagonal(dim1=1, dim2=2).add_(1e-10 * H.diagonal(dim1=1, dim2=2).abs().amax())
        L = torch.linalg.cholesky(H)
    return torch.cholesky_solve(g[:, :, None].to(L.dtype), L)[..., 0].to(torch.float64)


def _woodbury(X: Tensor, dg: Tensor, L: Tensor, v: Tensor) -> Tensor:
    """``A^-1 v`` ``[d, k]`` for ``A = I + X^T D^2 X`` given ``L = chol(I + D X X^T D)``."""
    u = torch.cholesky_solve(dg[:, None] * (X @ v), L)  # [n, k]
    return v - X.T @ (dg[:, None] * u)


def _dual_newton_step(X: Tensor, K: Tensor, s: Tensor, g: Tensor, fit_intercept: bool) -> Tensor:
    """The same Newton step for ``d > n`` via Woodbury on ``A = I + X^T S X``.

    ``A^-1 v = v - X^T D (I + D K D)^-1 D X v`` with ``D = sqrt(S)``, ``K = X X^T``
    ``[n, n]``; the unpenalized intercept is eliminated by its Schur complement.
    """
    out = []
    d = X.shape[1]
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    for a in range(len(s)):
        dg = s[a].sqrt()  # [n]
        L = torch.linalg.cholesky(eye + dg[:, None] * K * dg[None, :])

        if not fit_intercept:
            out.append(_woodbury(X, dg, L, g[a, :, None])[:, 0])
            continue
        bvec = X.T @ s[a]  # [d] = X^T S 1
        sol = _woodbury(X, dg, L, torch.stack([g[a, :d], bvec], 1))  # [d, 2]
        schur = s[a].sum() - bvec @ sol[:, 1]
        step_b = (g[a, d] - bvec @ sol[:, 0]) / schur.clamp_min(1e-300)
        out.append(torch.cat([sol[:, 0] - step_b * sol[:, 1], step_b[None]]))
    return torch.stack(out)


def fit_logistic(
    X: Tensor,
    y: Tensor,
    weights: Tensor | None = None,
    *,
    C: float = 1.0,
    fit_intercept: bool = True,
    max_iter: int = 50,
    tol: float = 1e-6,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Solve ``F`` L2 logistic regressions on one design matrix by damped Newton steps.

    ``X`` ``[n, d]``; ``y`` ``[n]`` in {0, 1}; ``weights`` ``[F, n]`` sample weights per
    problem (a 0/1 fold mask; default one problem with all ones). Returns ``coef``
    ``[F, d]``, ``intercept`` ``[F]`` (float64) and the Newton iterations per problem
    ``[F]``. Converged when the largest gradient entry is below ``tol`` times ``1 + C *
    sum(weights)`` (a relative tolerance). ``init`` = (``coef`` ``[F or 1, d]``,
    ``intercept`` ``[F or 1]``) warm-starts the solver.
    """
    if X.dtype not in (torch.float32, torch.float64):
        X = X.float()  # half precision is too coarse for the Hessian
    n, d = X.shape
    m = torch.ones(1, n, dtype=torch.float64, device=X.device) if weights is None else weights
    m = m.to(device=X.device, dtype=torch.float64)
    F = m.shape[0]
    X64 = X.to(torch.float64)
    yf = y.to(device=X.device, dtype=torch.float64)[None].expand(F, n)
    Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype, device=X.device)], 1) if fit_intercept else X
    da = Xa.shape[1]
    reg = torch.ones(da, dtype=torch.float64, device=X.device)
    if fit_intercept:
        reg[-1] = 0.0
    w = torch.zeros(F, d, dtype=torch.float64, device=X.device)
    b = torch.zeros(F, dtype=torch.float64, device=X.device)
    if init is not None:
        w = w + init[0].to(w)
        b = b + (init[1].to(b) if fit_intercept else 0.0)
    n_iter = torch.zeros(F, dtype=torch.long)
    active = torch.ones(F, dtype=torch.bool)
    # more features than rows: solve each Newton system through the n x n kernel instead
    dual = d > n
    K = X64 @ X64.T if dual else None  # [n, n]
    scale = 1.0 + C * m.sum(1)
    f_old = _objective(X64, yf, m, w, b, C)
    for _ in range(max_iter):
        z = w @ X64.T + b[:, None]  # [F, n]
        p = torch.sigmoid(z)
        r = C * m * (p - yf)  # [F, n]
        g_w = w + r @ X64  # [F, d]
        g = torch.cat([g_w, r.sum(1, keepdim=True)], 1) if fit_intercept else g_w  # [F, da]
        done = g.abs().amax(1) <= tol * scale
        active &= ~done.cpu()
        idx = active.nonzero().flatten().tolist()
        if not idx:
            break
        s = C * m * p * (1 - p)  # [F, n] Hessian weights
        if dual:
            sol = _dual_newton_step(X64, K, s[idx], g[idx], fit_intercept)
        else:
            sol = _primal_newton_step(Xa, s[idx].to(X.dtype), g[idx], reg)
        step = torch.zeros_like(g)
        step[idx] = sol.to(torch.float64)
        n_iter[idx] += 1
        # backtracking line search (Armijo), per problem
        t = torch.ones(F, dtype=torch.float64, device=X.device)
        decrease = (g * step).sum(1)  # > 0 for a descent direction
        act = active.to(X.device)
        for _ls in range(30):
            w_new = w - t[:, None] * step[:, :d]
            b_new = b - t * step[:, d] if fit_intercept else b
            f_new = _objective(X64, yf, m, w_new, b_new, C)
            ok = (f_new <= f_old - 1e-4 * t * decrease) | ~act
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t * 0.5)
        w = torch.where(act[:, None], w_new, w)
        b = torch.where(act, b_new, b)
        f_old = torch.where(act, f_new, f_old)
    return w, b, n_iter


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``y`` (NaN if one class only)."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


# ---- the estimator ---------------------------------------------------------------------
def _as_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x).numpy()
    return np.asarray(x)


class LinearProbe:
    """Binary L2 logistic-regression probe whose weight vector is a :class:`Direction`.

    ``LinearProbe(C=1.0).fit(X, y)`` with ``X`` ``[n, d_model]`` (tensor or array) and
    two-valued labels ``y``. ``direction_`` points from ``classes_[0]`` to
    ``classes_[1]``; ``site`` / ``layer`` / ``name`` / ``provenance`` are copied onto it.
    """

    def __init__(
        self,
        C: float = 1.0,
        *,
        fit_intercept: bool = True,
        solver: str = "torch",
        max_iter: int = 100,
        tol: float = 1e-6,
        site: str | None = None,
        layer: int | None = None,
        name: str = "probe",
        provenance: dict | None = None,
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.site = site
        self.layer = layer
        self.name = name
        self.provenance = provenance

    # sklearn's clone() / cross_val_score() work through these two
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        keys = ("C", "fit_intercept", "solver", "max_iter", "tol", "site", "layer", "name")
        return {k: getattr(self, k) for k in (*keys, "provenance")}

    def set_params(self, **params) -> LinearProbe:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"LinearProbe(C={self.C}, solver={self.solver!r})"

    def fit(self, X, y, sample_weight=None) -> LinearProbe:
        Xn = _as_numpy(X)
        yn = _as_numpy(y)
        if Xn.ndim != 2 or len(Xn) != len(yn):
            raise InterpError(f"expected X [n, d] and y [n]; got {Xn.shape} and {yn.shape}")
        classes = np.unique(yn)
        if len(classes) != 2:
            raise InterpError(f"a linear probe needs exactly two classes; got {list(classes)}")
        y01 = (yn == classes[1]).astype(np.float64)
        if self.solver == "torch":
            Xt = torch.as_tensor(X) if isinstance(X, Tensor) else torch.from_numpy(Xn)
            if not Xt.is_floating_point():
                Xt = Xt.float()
            wts = None if sample_weight is None else torch.as_tensor(sample_weight)[None]
            w, b, it = fit_logistic(
                Xt,
                torch.from_numpy(y01),
                wts,
                C=self.C,
                fit_intercept=self.fit_intercept,
                max_iter=self.max_iter,
                tol=self.tol,
            )
            coef, intercept, n_iter = w.cpu().numpy(), b.cpu().numpy(), int(it[0])
        elif self.solver == "sklearn":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(
                C=self.C, fit_intercept=self.fit_intercept, max_iter=self.max_iter * 20, tol=1e-6
            )
            clf.fit(Xn.astype(np.float64), y01, sample_weight=sample_weight)
            coef, intercept, n_iter = clf.coef_, clf.intercept_, int(np.max(clf.n_iter_))
        else:
            raise InterpError(f"unknown solver {self.solver!r}; use 'torch' or 'sklearn'")
        self.classes_ = classes
        self.coef_ = coef.reshape(1, -1)
        self.intercept_ = np.asarray(intercept, dtype=np.float64).reshape(1)
        self.n_iter_ = n_iter
        self.n_features_in_ = Xn.shape[1]
        provenance = {
            "method": "logistic_probe",
            "solver": self.solver,
            "C": self.C,
            "classes": [str(c) for c in classes],
            "n": int(len(yn)),
            **(self.provenance or {}),
        }
        if np.abs(self.coef_).max() > 0:
            self.direction_ = Direction(
                torch.from_numpy(self.coef_[0]).float(),
                site=self.site,
                layer=self.layer,
                name=self.name,
                provenance=provenance,
            )
        else:
            self.direction_ = None
        return self

    def _check(self) -> None:
        if not hasattr(self, "coef_"):
            raise InterpError("this LinearProbe is not fitted yet; call fit(X, y) first")

    def decision_function(self, X) -> np.ndarray:
        self._check()
        return _as_numpy(X).astype(np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X) -> np.ndarray:
        p1 = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p1, p1], 1)

    def predict(self, X) -> np.ndarray:
        self._check()
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def score(self, X, y) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(X) == _as_numpy(y)))


# ---- the layer sweep -------------------------------------------------------------------
def _column(meta: pd.DataFrame | None, value, n: int, what: str) -> np.ndarray:
    if isinstance(value, str):
        if meta is None or value not in meta.columns:
            raise InterpError(f"{what}={value!r} is not a metadata column")
        return meta[value].to_numpy()
    arr = _as_numpy(value)
    if len(arr) != n:
        raise InterpError(f"{what} has {len(arr)} entries for {n} rows")
    return arr


def _folds(y: np.ndarray, groups: np.ndarray | None, cv: int, seed: int) -> list[np.ndarray]:
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


def _layer_data(acts, site: str | None) -> tuple[list[str], list[int | None], Tensor]:
    """Site names, layers and a ``[n, n_sites, d]`` tensor from Activations or a tensor."""
    if isinstance(acts, Tensor):
        t = acts if acts.ndim == 3 else acts[:, None]
        return [None] * t.shape[1], list(range(t.shape[1])), t  # type: ignore[list-item]
    sites = list(acts.sites)
    if site is not None:
        keep = [i for i, s in enumerate(sites) if s.endswith(f".hook_{site}") or s == site]
        if not keep:
            raise InterpError(f"no captured site matches {site!r} (captured: {', '.join(sites)})")
        sites = [sites[i] for i in keep]
        tensor = acts.tensor[:, keep]
    else:
        tensor = acts.tensor
    layers = [int(s.split(".")[1]) for s in sites]
    return sites, layers, tensor


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

    ``acts``: :class:`~interp.activations.Activations` or a tensor ``[n, n_layers, d]``.
    ``labels`` / ``groups``: metadata column names or arrays ``[n]``. With ``groups``
    each group stays within one fold. With ``train`` and ``test`` (boolean masks ``[n]``,
    e.g. ``acts.meta.year <= 2004`` and ``acts.meta.year >= 2017``) the probe is fit on
    the train rows and scored on the test rows only (held-out trigger values); the
    intervals then come from a 2,000-sample bootstrap over test rows.

    Columns: ``layer``, ``site``, ``accuracy``, ``accuracy_lo``, ``accuracy_hi``,
    ``auroc``, ``auroc_lo``, ``auroc_hi``, ``n_folds``, ``n_train``, ``n_test`` and
    ``direction`` (a :class:`Direction` fit on all rows, or on the train rows).
    """
    sites, layers, tensor = _layer_data(acts, site)
    meta = getattr(acts, "meta", None)
    n = tensor.shape[0]
    y_raw = _column(meta, labels, n, "labels")
    classes = np.unique(y_raw)
    if len(classes) != 2:
        raise InterpError(f"probe_layers needs two label values; got {list(classes)}")
    y = (y_raw == classes[1]).astype(np.float64)
    label_name = labels if isinstance(labels, str) else "labels"

    if (train is None) != (test is None):
        raise InterpError("pass both train= and test= (or neither)")
    if train is not None:
        tr = _column(meta, train, n, "train").astype(bool)
        te = _column(meta, test, n, "test").astype(bool)
        if len(np.unique(y[tr])) < 2:
            raise InterpError("the train rows hold only one label value")
        test_sets = [np.flatnonzero(te)]
        fit_mask = tr
        mode = "holdout"
    else:
        g = None if groups is None else _column(meta, groups, n, "groups")
        test_sets = _folds(y, g, cv, seed)
        fit_mask = np.ones(n, dtype=bool)
        mode = "cv"

    # weights [F + 1, n]: one row per fold (train rows), the last the final fit
    W = np.zeros((len(test_sets) + 1, n))
    for f, te_idx in enumerate(test_sets):
        W[f] = fit_mask
        W[f, te_idx] = 0.0
    W[-1] = fit_mask
    Wt = torch.from_numpy(W)
    yt = torch.from_numpy(y)
    model_name = getattr(acts, "model_name", None)
    adapter_hash = getattr(acts, "adapter_hash", None)

    rows = []
    for j, (site_name, layer) in enumerate(zip(sites, layers, strict=True)):
        X = tensor[:, j]
        if not X.is_floating_point() or X.dtype in (torch.float16, torch.bfloat16):
            X = X.float()
        if solver == "torch":
            # the final fit first; it warm-starts the folds (each drops 1/cv of the rows)
            w1, b1, _ = fit_logistic(X, yt, Wt[-1:], C=C, max_iter=max_iter, tol=tol)
            w, b, _ = fit_logistic(X, yt, Wt[:-1], C=C, max_iter=max_iter, tol=tol, init=(w1, b1))
            coef = torch.cat([w, w1]).cpu().numpy()
            intercept = torch.cat([b, b1]).cpu().numpy()
        else:
            coef = np.zeros((len(W), X.shape[1]))
            intercept = np.zeros(len(W))
            Xn = X.cpu().numpy()
            for f in range(len(W)):
                keep = W[f] > 0
                pr = LinearProbe(C=C, solver=solver, max_iter=max_iter).fit(Xn[keep], y[keep])
                coef[f], intercept[f] = pr.coef_[0], pr.intercept_[0]
        Xn = X.cpu().numpy().astype(np.float64)
        accs, aucs = [], []
        for f, te_idx in enumerate(test_sets):
            scores = Xn[te_idx] @ coef[f] + intercept[f]
            accs.append(np.mean((scores > 0) == (y[te_idx] > 0.5)))
            aucs.append(auroc(scores, y[te_idx]))
        if mode == "cv":
            acc, auc = mean_ci(accs), mean_ci([a for a in aucs if a == a] or [float("nan")])
        else:
            acc, auc = _bootstrap(Xn[test_sets[0]] @ coef[0] + intercept[0], y[test_sets[0]], seed)
        provenance = {
            "method": "logistic_probe",
            "mode": mode,
            "labels": label_name,
            "classes": [str(c) for c in classes],
            "C": C,
            "solver": solver,
            "n": int(fit_mask.sum()),
            "model_name": model_name,
            "adapter_hash": adapter_hash,
        }
        direction = (
            Direction(
                torch.from_numpy(coef[-1]).float(),
                site=site_name,
                layer=layer,
                name=f"probe:{label_name}@{site_name or layer}",
                provenance=provenance,
            )
            if np.abs(coef[-1]).max() > 0
            else None
        )
        rows.append(
            {
                "layer": layer,
                "site": site_name,
                "accuracy": acc.value,
                "accuracy_lo": acc.lo,
                "accuracy_hi": acc.hi,
                "auroc": auc.value,
                "auroc_lo": auc.lo,
                "auroc_hi": auc.hi,
                "n_folds": len(test_sets),
                "n_train": int(fit_mask.sum() - (len(test_sets[0]) if mode == "cv" else 0)),
                "n_test": int(sum(len(t) for t in test_sets)),
                "direction": direction,
            }
        )
    return pd.DataFrame(rows)


def _bootstrap(scores: np.ndarray, y: np.ndarray, seed: int, n_boot: int = 2000):
    """Accuracy and AUROC on one test set, with percentile bootstrap intervals."""
    from interp.stats import Estimate

    rng = np.random.default_rng(seed)
    correct = (scores > 0) == (y > 0.5)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    acc_b = correct[idx].mean(1)
    acc = Estimate(float(correct.mean()), *np.quantile(acc_b, [0.025, 0.975]).tolist(), len(y))
    auc_value = auroc(scores, y)
    if auc_value != auc_value:
        return acc, Estimate(float("nan"), float("nan"), float("nan"), len(y))
    aucs = [auroc(scores[i], y[i]) for i in idx[:400]]
    aucs = [a for a in aucs if a == a]
    lo, hi = np.quantile(aucs, [0.025, 0.975]).tolist()
    return acc, Estimate(auc_value, lo, hi, len(y))
