import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from interp.directions import Direction
from interp.directions.probes import LinearProbe, fit_logistic, probe_layers
from interp.errors import InterpError
from interp.record.activations import Activations


def _planted(n: int, d: int, seed: int, noise: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u /= u.norm()
    X = torch.randn(n, d, generator=g)
    y = ((X @ u + noise * torch.randn(n, generator=g)) > 0).long()
    return X, y.numpy(), u


def _acts(tensor: torch.Tensor, meta: pd.DataFrame) -> Activations:
    sites = [f"blocks.{i}.hook_resid_post" for i in range(tensor.shape[1])]
    return Activations(tensor, sites, meta, model_name="synthetic")


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_torch_solver_agrees_with_sklearn(C):
    g = torch.Generator().manual_seed(1)
    n, d = 1500, 48
    scales = torch.logspace(0.5, -0.5, d)  # anisotropic, like a residual stream
    X = torch.randn(n, d, generator=g) * scales + 0.3
    w = torch.randn(d, generator=g)
    y = ((X @ w + 2.0 * torch.randn(n, generator=g)) > 0.3 * w.sum()).numpy().astype(int)
    Xtr, Xte, ytr, yte = X[:1000], X[1000:], y[:1000], y[1000:]

    ref = LogisticRegression(C=C, max_iter=5000, tol=1e-8).fit(Xtr.numpy(), ytr)
    probe = LinearProbe(C=C).fit(Xtr, ytr)
    agree = np.mean(ref.predict(Xte.numpy()) == probe.predict(Xte))
    assert agree >= 0.995
    assert abs(ref.score(Xte.numpy(), yte) - probe.score(Xte, yte)) <= 0.01
    # the two solve the same objective, so the weights match too
    assert np.allclose(probe.coef_, ref.coef_, atol=1e-3 * np.abs(ref.coef_).max())
    # and the sklearn solver stays available behind the same estimator
    sk = LinearProbe(C=C, solver="sklearn").fit(Xtr, ytr)
    assert np.mean(sk.predict(Xte) == ref.predict(Xte.numpy())) >= 0.995


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_conjugate_gradient_steps_reach_the_same_optimum(C, monkeypatch):
    """Many features (d > CG_FEATURES): truncated Newton steps by conjugate gradients give
    the exact-Hessian solver's weights for every fold problem of a batch, and sklearn's."""
    import interp.directions.probes.solver as solver

    g = torch.Generator().manual_seed(5)
    n, d = 1200, solver.CG_FEATURES + 72
    X = torch.randn(n, d, generator=g) * torch.logspace(0.5, -0.5, d) + 0.2
    w = torch.randn(d, generator=g)
    y = torch.from_numpy(((X @ w + 2.0 * torch.randn(n, generator=g)) > 0).numpy().astype(int))
    W = torch.ones(3, n, dtype=torch.float64)
    W[0, :400], W[1, 400:800] = 0, 0  # two folds and the full fit
    coef, intercept, _ = fit_logistic(X, y, W, C=C, tol=1e-8)
    monkeypatch.setattr(solver, "CG_FEATURES", 10**6)  # the exact Cholesky steps
    exact, exact_b, _ = fit_logistic(X, y, W, C=C, tol=1e-8)
    top = exact.abs().max().item()
    assert torch.allclose(coef, exact, atol=1e-6 * top)
    assert torch.allclose(intercept, exact_b, atol=1e-6 * max(1.0, top))
    keep = W[1].numpy() > 0
    ref = LogisticRegression(C=C, max_iter=20000, tol=1e-10).fit(X[keep].numpy(), y[keep].numpy())
    assert np.allclose(coef[1].numpy(), ref.coef_[0], atol=1e-3 * top)


def test_estimator_contract():
    X, y, _ = _planted(300, 8, seed=2)
    labels = np.where(y == 1, "era", "modern")
    probe = LinearProbe(C=0.5, layer=3, name="era")
    assert not hasattr(probe, "coef_")
    assert probe.fit(X, labels) is probe
    assert list(probe.classes_) == ["era", "modern"]
    assert probe.coef_.shape == (1, 8) and probe.intercept_.shape == (1,)
    assert isinstance(probe.direction_, Direction) and probe.direction_.layer == 3
    proba = probe.predict_proba(X)
    assert proba.shape == (300, 2) and np.allclose(proba.sum(1), 1)
    assert set(probe.predict(X)) <= {"era", "modern"}
    assert 0.8 < probe.score(X, labels) <= 1.0
    twin = clone(probe)
    assert twin.get_params()["C"] == 0.5 and not hasattr(twin, "coef_")
    with pytest.raises(InterpError):
        LinearProbe().fit(X, np.zeros(300))
    with pytest.raises(InterpError):
        LinearProbe().predict(X)


def test_probe_recovers_planted_direction():
    X, y, u = _planted(3000, 32, seed=3, noise=0.3)
    probe = LinearProbe(C=1.0).fit(X, y)
    assert probe.direction_.cosine(u) > 0.95


def test_fit_logistic_batches_independent_problems():
    X, y, _ = _planted(400, 6, seed=4)
    W = torch.ones(3, 400, dtype=torch.float64)
    W[1, :200] = 0
    W[2, 200:] = 0
    w, b, _ = fit_logistic(X, torch.from_numpy(y), W)
    for f in range(3):
        keep = W[f].bool().numpy()
        alone, b1, _ = fit_logistic(X[keep], torch.from_numpy(y[keep]))
        assert torch.allclose(w[f], alone[0], atol=1e-6) and torch.allclose(b[f], b1[0], atol=1e-6)


def test_probe_layers_finds_the_layer_and_scores_chance_on_shuffled_labels():
    g = torch.Generator().manual_seed(5)
    n, d = 600, 16
    X0, y, u = _planted(n, d, seed=6, noise=0.2)
    tensor = torch.stack([torch.randn(n, d, generator=g), X0, torch.randn(n, d, generator=g)], 1)
    meta = pd.DataFrame({"prompt": range(n), "position": 0, "label": y})
    acts = _acts(tensor, meta)
    table = probe_layers(acts, "label", cv=5)
    assert list(table.layer) == [0, 1, 2]
    assert table.accuracy[1] > 0.9 and table.auroc[1] > 0.95
    assert table.accuracy[0] < 0.65 and table.accuracy[2] < 0.65
    assert table.accuracy_lo[1] <= table.accuracy[1] <= table.accuracy_hi[1]
    assert (
        table.direction[1].cosine(u) > 0.9 and table.direction[1].site == "blocks.1.hook_resid_post"
    )
    assert table.direction[1].provenance["model_name"] == "synthetic"

    shuffled = np.random.default_rng(0).permutation(y)
    chance = probe_layers(acts, shuffled, cv=5)
    assert chance.accuracy[1] < 0.6
    assert chance.accuracy_lo[1] < 0.5 + 0.05


def test_groups_keep_paraphrases_in_one_fold():
    # 40 questions x 6 paraphrases; the label belongs to the question, and each question
    # has its own offset: without groups the probe memorizes questions, with groups not.
    g = torch.Generator().manual_seed(7)
    n_q, n_p, d = 40, 6, 48
    offsets = 3 * torch.randn(n_q, d, generator=g)
    q = np.repeat(np.arange(n_q), n_p)
    y = np.random.default_rng(1).integers(0, 2, n_q)[q]
    X = offsets[q] + 0.3 * torch.randn(n_q * n_p, d, generator=g)
    meta = pd.DataFrame({"prompt": range(len(q)), "position": 0, "question_id": q, "y": y})
    acts = _acts(X[:, None], meta)
    leaky = probe_layers(acts, "y", cv=5)
    grouped = probe_layers(acts, "y", cv=5, groups="question_id")
    assert leaky.accuracy[0] > 0.9
    assert grouped.accuracy[0] < 0.7


def test_held_out_trigger_values():
    g = torch.Generator().manual_seed(8)
    years = np.array(list(range(1991, 2005)) + list(range(2017, 2030)))
    rows = np.repeat(years, 30)
    n, d = len(rows), 24
    u = torch.randn(d, generator=g)
    u /= u.norm()
    label = np.random.default_rng(2).integers(0, 2, n)
    drift = torch.from_numpy((rows - 2010) / 10.0).float()[:, None] * torch.randn(d, generator=g)
    X = torch.randn(n, d, generator=g) + drift + 2.5 * torch.from_numpy(2 * label - 1)[:, None] * u
    meta = pd.DataFrame({"prompt": range(n), "position": 0, "year": rows, "trigger": label})
    acts = _acts(X[:, None], meta)
    table = probe_layers(acts, "trigger", train=acts.meta.year <= 2004, test=acts.meta.year >= 2017)
    assert table.n_test[0] == (rows >= 2017).sum() and table.n_folds[0] == 1
    assert table.accuracy[0] > 0.9
    assert table.accuracy_lo[0] <= table.accuracy[0] <= table.accuracy_hi[0]
    assert table.direction[0].provenance["mode"] == "holdout"
    with pytest.raises(InterpError):
        probe_layers(acts, "trigger", train=acts.meta.year <= 2004)


def test_half_precision_inputs_fit_like_float32():
    X, y, _ = _planted(500, 12, seed=9)
    full = LinearProbe().fit(X, y)
    half = LinearProbe().fit(X.bfloat16(), y)
    assert np.mean(full.predict(X) == half.predict(X.bfloat16().float())) >= 0.99


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_more_features_than_rows_uses_the_dual_step_and_still_matches_sklearn(fit_intercept):
    g = torch.Generator().manual_seed(10)
    n, d = 80, 200
    X = torch.randn(n, d, generator=g) + 0.5
    y = ((X[:, :5].sum(1) + torch.randn(n, generator=g)) > 2.5).numpy().astype(int)
    ref = LogisticRegression(C=0.3, fit_intercept=fit_intercept, max_iter=10000, tol=1e-10)
    ref.fit(X.double().numpy(), y)  # float64, so the reference is exact
    probe = LinearProbe(C=0.3, fit_intercept=fit_intercept, tol=1e-9).fit(X, y)
    assert np.allclose(probe.coef_, ref.coef_, atol=1e-4 * np.abs(ref.coef_).max())
    assert np.allclose(probe.intercept_, ref.intercept_, atol=1e-4)
    W = torch.ones(2, n, dtype=torch.float64)
    W[1, :40] = 0  # fold masks go through the dual step too
    w, b, _ = fit_logistic(X, torch.from_numpy(y), W, C=0.3, fit_intercept=fit_intercept, tol=1e-9)
    alone, b1, _ = fit_logistic(
        X[40:], torch.from_numpy(y[40:]), C=0.3, fit_intercept=fit_intercept, tol=1e-9
    )
    assert torch.allclose(w[1], alone[0], atol=1e-5) and torch.allclose(b[1], b1[0], atol=1e-5)


def test_pipeline_on_captured_activations(tmp_path):
    """capture -> probe_layers / diff_of_means / project -> figures, on a tiny model."""
    import matplotlib

    matplotlib.use("Agg")
    from interp.directions.diffmeans import diff_of_means
    from interp.directions.ranking import project
    from interp.plots import plot_probe_accuracy, plot_projection_by_slot
    from interp.prompts import PromptSet
    from interp.record.capture import capture
    from interp.testing import tiny_model

    model = tiny_model("llama", d_model=32, n_layers=3)
    grid = PromptSet.grid(
        "The year is {year}. {question}",
        chat=False,
        year=[1850, 1860, 2020, 2030],
        question=["Name a bird.", "Who are you?", "What is new?", "Say hi.", "Any news?"],
    )
    acts = capture(model, grid, progress=False)
    assert acts.layers == [0, 1, 2]
    era = (acts.meta.year < 1900).astype(int)
    table = probe_layers(acts, era, cv=5, groups="question")
    assert list(table.site) == [f"blocks.{i}.hook_resid_post" for i in range(3)]
    assert table.accuracy.between(0, 1).all() and table.n_folds.eq(5).all()
    d = diff_of_means(acts.where(year=[1850, 1860]), acts.where(year=[2020, 2030]), site=2)
    assert d.site == "blocks.2.hook_resid_post" and d.provenance["model_name"] == "tiny-llama"
    proj = project(acts, [d, table.direction[2]])
    assert len(proj) == len(grid) and d.name in proj.columns
    plot_probe_accuracy(table).savefig(tmp_path / "probe.png")
    plot_projection_by_slot(proj, slot="year", target=[1850, 1860]).savefig(tmp_path / "proj.png")
