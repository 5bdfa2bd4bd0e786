"""Confidence intervals used by every behavioural number interp reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _st

__all__ = ["Estimate", "wilson", "mean_ci"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided interval (``lo``, ``hi``) at ``level``."""

    value: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def wilson(successes: int, n: int, level: float = 0.95) -> Estimate:
    """Wilson score interval for a binomial rate ``successes / n``."""
    if n <= 0:
        raise ValueError("wilson() needs n > 0")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]; got {successes} of {n}")
    z = _st.norm.ppf(0.5 + level / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, level)


def mean_ci(
    values: Sequence[float], level: float = 0.95, bounds: tuple[float, float] | None = None
) -> Estimate:
    """Mean with a Student-t interval (e.g. over finetune seeds or CV folds).

    With a single value the interval is that value (nothing to estimate spread from).
    ``bounds`` clips the interval to the range the quantity can take (``(0, 1)`` for
    shares and accuracies).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci() needs at least one value")
    m = float(x.mean())
    if x.size == 1:
        return Estimate(m, m, m, 1, level)
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Estimate(m, lo, hi, int(x.size), level)
