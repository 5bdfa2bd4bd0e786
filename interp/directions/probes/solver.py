"""Batched L2 logistic regression by damped Newton steps (the probes' torch solver).

:func:`fit_logistic` solves several problems on one design matrix at once (one per
sample-weight row: the CV folds and the final fit of a layer). Each Newton system is
solved exactly in the primal (``[d, d]`` Hessians, for few features), through the
``[n, n]`` kernel by Woodbury (features outnumber rows), or, for many features, inexactly
by conjugate gradients on Hessian-vector products (truncated Newton, as scikit-learn's
``newton-cg``): building a Hessian costs ``n d^2``, a product ``2 n d``, and all active
problems share each product as one matrix multiply.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["fit_logistic", "auroc", "CG_FEATURES"]

# above this many features a Newton step is solved by conjugate gradients, not a Hessian
CG_FEATURES = 128


def _objective(z: Tensor, y: Tensor, m: Tensor, w: Tensor, C: float) -> Tensor:  # -> [F]
    """The L2 logistic objective per problem from its logits ``z = w X^T + b`` ``[F, n]``."""
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


def _cg_newton_step(
    Xa: Tensor, Xa2: Tensor, s: Tensor, g: Tensor, reg: Tensor, scale: Tensor
) -> Tensor:
    """Approximately solve ``(diag(reg) + Xa^T diag(s) Xa) step = g`` per problem ``[A, da]``
    by Jacobi-preconditioned conjugate gradients, to a relative residual of
    ``min(0.5, sqrt(|g| / scale))`` (the forcing term of an inexact Newton method,
    superlinear near the optimum; ``scale`` ``[A]`` is the convergence test's).
    ``Xa2 = Xa**2`` gives the Hessian diagonals."""
    sd = s.to(Xa.dtype)  # [A, n]
    diag = reg + (sd @ Xa2).to(torch.float64)  # [A, da]
    gnorm = g.norm(dim=1)
    target = torch.clamp((gnorm / scale).sqrt(), max=0.5) * gnorm  # [A]

    def hvp(v: Tensor) -> Tensor:  # [A, da] -> [A, da]
        xv = v.to(Xa.dtype) @ Xa.T  # [A, n]
        return reg * v + ((sd * xv) @ Xa).to(torch.float64)

    x = torch.zeros_like(g)
    r = g.clone()
    z = r / diag
    p = z.clone()
    rz = (r * z).sum(1)
    for _ in range(max(50, g.shape[1])):
        live = r.norm(dim=1) > target  # [A]
        if not bool(live.any()):
            break
        Ap = hvp(p)
        alpha = torch.where(live, rz / (p * Ap).sum(1).clamp_min(1e-300), 0.0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * Ap
        z = r / diag
        rz_new = (r * z).sum(1)
        p = z + (rz_new / rz.clamp_min(1e-300))[:, None] * p
        rz = rz_new
    return x


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
    # more features than rows: solve each Newton system through the n x n kernel instead;
    # many features: by conjugate gradients (a Hessian would cost n d^2 per problem)
    dual = d > n
    K = X64 @ X64.T if dual else None  # [n, n]
    cg = not dual and d > CG_FEATURES
    Xa2 = Xa * Xa if cg else None
    scale = 1.0 + C * m.sum(1)
    z = w @ X64.T + b[:, None]  # [F, n] logits, kept up to date along each step
    f_old = _objective(z, yf, m, w, C)
    for _ in range(max_iter):
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
        elif cg:
            sol = _cg_newton_step(Xa, Xa2, s[idx], g[idx], reg, scale[idx])
        else:
            sol = _primal_newton_step(Xa, s[idx].to(X.dtype), g[idx], reg)
        step = torch.zeros_like(g)
        step[idx] = sol.to(torch.float64)
        n_iter[idx] += 1
        dz = step[:, :d] @ X64.T + (step[:, d, None] if fit_intercept else 0.0)  # [F, n]
        w, b, z, f_old = _line_search(
            (w, b, z, f_old), step, g, dz, (yf, m, C), active.to(X.device), fit_intercept
        )
    return w, b, n_iter


def _line_search(state, step: Tensor, g: Tensor, dz: Tensor, problem, act: Tensor, fit_intercept):
    """Backtracking (Armijo) per problem along ``-step``; the logits ``z`` move along
    ``-dz`` (``dz = step X^T``), so no trial recomputes them. Returns the new
    ``(w, b, z, f)``; inactive problems keep theirs."""
    w, b, z, f_old = state
    yf, m, C = problem
    d = w.shape[1]
    t = torch.ones(len(w), dtype=torch.float64, device=w.device)
    decrease = (g * step).sum(1)  # > 0 for a descent direction
    for _ls in range(30):
        w_new = w - t[:, None] * step[:, :d]
        b_new = b - t * step[:, d] if fit_intercept else b
        z_new = z - t[:, None] * dz
        f_new = _objective(z_new, yf, m, w_new, C)
        ok = (f_new <= f_old - 1e-4 * t * decrease) | ~act
        if bool(ok.all()):
            break
        t = torch.where(ok, t, t * 0.5)
    return (
        torch.where(act[:, None], w_new, w),
        torch.where(act, b_new, b),
        torch.where(act[:, None], z_new, z),
        torch.where(act, f_new, f_old),
    )


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``y`` (NaN if one class only)."""
    y = np.asarray(y).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))
