"""The scikit-learn-style :class:`LinearProbe` estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.directions import Direction
from interp.directions.probes.solver import fit_logistic
from interp.errors import InterpError

__all__ = ["LinearProbe"]


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
