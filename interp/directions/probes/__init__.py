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

from interp.directions.probes.estimator import LinearProbe
from interp.directions.probes.solver import auroc, fit_logistic
from interp.directions.probes.sweep import cv_folds, probe_layers

__all__ = ["LinearProbe", "probe_layers", "fit_logistic", "auroc", "cv_folds"]
