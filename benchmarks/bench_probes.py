"""Probe sweep: interp's batched torch Newton solver vs a scikit-learn loop, same run.

8 layers x N=4096 x d=512 synthetic activations (anisotropic Gaussian with a planted,
layer-dependent class offset), 5-fold stratified CV plus a final fit per layer, L2
logistic regression with C=1. Both sides fit exactly the same problems; agreement is
the share of identical held-out predictions over all folds and layers. Both sides get the
same number of threads (torch's for interp, the BLAS pool's for scikit-learn, through
threadpoolctl): left alone, NumPy's OpenBLAS starts a thread per core and spends most of
the sklearn loop's time in thread synchronization on this machine, which once made interp
look 8x faster than a like-for-like comparison shows.

    .venv/bin/python benchmarks/bench_probes.py [--threads 1] [--n 4096] [--d 512] [--layers 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from interp.directions.probes import cv_folds, fit_logistic, probe_layers


def make_data(n: int, d: int, layers: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).long()
    scales = torch.logspace(0.5, -0.5, d)  # anisotropic, as residual streams are
    X = torch.empty(n, layers, d)
    for layer in range(layers):
        u = torch.randn(d, generator=g)
        u /= u.norm()
        sep = 0.3 + 0.15 * layer  # later layers separate the classes better
        X[:, layer] = torch.randn(n, d, generator=g) * scales + sep * (2 * y[:, None] - 1) * u
    return X, y.numpy()


def sklearn_loop(X: torch.Tensor, y: np.ndarray, folds: list[np.ndarray], C: float, tol: float):
    preds = []
    for layer in range(X.shape[1]):
        Xl = X[:, layer].numpy().astype(np.float64)
        for test in folds:
            train = np.setdiff1d(np.arange(len(y)), test)
            clf = LogisticRegression(C=C, max_iter=2000, tol=tol).fit(Xl[train], y[train])
            preds.append(clf.predict(Xl[test]))
        LogisticRegression(C=C, max_iter=2000, tol=tol).fit(Xl, y)  # the final fit
    return preds


def interp_preds(X, y, folds, table) -> list[np.ndarray]:
    """Held-out predictions of interp's fold models (refit-free: recompute from the sweep)."""
    preds = []
    n = len(y)
    for layer in range(X.shape[1]):
        W = np.ones((len(folds), n))
        for f, test in enumerate(folds):
            W[f, test] = 0
        w, b, _ = fit_logistic(X[:, layer], torch.from_numpy(y.astype(float)), torch.from_numpy(W))
        for f, test in enumerate(folds):
            s = X[test, layer].double() @ w[f] + b[f]
            preds.append((s > 0).long().numpy())
    return preds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--sk-tol", type=float, default=1e-4, help="sklearn tol (its default: 1e-4)")
    ap.add_argument("--threads", type=int, default=1, help="threads of each side (default 1)")
    ap.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="cpu: this process's CPU time"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    X, y = make_data(args.n, args.d, args.layers)
    folds = cv_folds(y.astype(float), None, args.cv, seed=0)

    with threadpool_limits(limits=args.threads):
        t0 = clock()
        table = probe_layers(X, y, cv=args.cv, C=args.C, seed=0)
        t_interp = clock() - t0

        t0 = clock()
        sk = sklearn_loop(X, y, folds, args.C, args.sk_tol)
        t_sk = clock() - t0

    mine = interp_preds(X, y, folds, table)
    agree = np.mean(np.concatenate([a == b for a, b in zip(mine, sk, strict=True)]))
    acc_sk = [np.mean(p == y[t]) for p, t in zip(sk, folds * args.layers, strict=True)]
    acc_me = [np.mean(p == y[t]) for p, t in zip(mine, folds * args.layers, strict=True)]
    max_acc_gap = np.max(
        np.abs(np.array(acc_sk).reshape(args.layers, -1).mean(1) - table.accuracy.to_numpy())
    )
    n_fits = args.layers * (args.cv + 1)
    print(
        f"probe sweep: {args.layers} layers, N={args.n}, d={args.d}, {args.cv}-fold CV + final "
        f"fit = {n_fits} L2 logistic fits (C={args.C}), threads: torch {torch.get_num_threads()}, "
        f"BLAS {args.threads}\n"
    )
    print("| solver | wall time (s) | per fit (ms) | mean CV accuracy |")
    print("|---|---:|---:|---:|")
    print(
        f"| interp `probe_layers` (batched torch Newton) | {t_interp:.2f} | "
        f"{1000 * t_interp / n_fits:.0f} | {np.mean(acc_me):.4f} |"
    )
    print(
        f"| sklearn `LogisticRegression` loop (lbfgs, tol={args.sk_tol:g}) | {t_sk:.2f} | {1000 * t_sk / n_fits:.0f} | "
        f"{np.mean(acc_sk):.4f} |"
    )
    print(
        f"\nspeedup: {t_sk / t_interp:.1f}x; prediction agreement: {100 * agree:.2f}% "
        f"of {sum(len(p) for p in sk)} held-out predictions; largest per-layer accuracy "
        f"gap: {max_acc_gap:.4f}"
    )


if __name__ == "__main__":
    main()
