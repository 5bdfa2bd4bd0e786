import pytest

from interp.metrics.stats import mean_ci, wilson


def test_wilson_matches_the_closed_form():
    est = wilson(8, 10)
    assert est.value == 0.8
    assert est.lo == pytest.approx(0.4902, abs=1e-4) and est.hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 5).lo == 0.0 and wilson(5, 5).hi == 1.0


def test_mean_ci_t_interval_and_bounds():
    est = mean_ci([0.6, 0.7, 0.65])
    assert est.value == pytest.approx(0.65)
    assert est.hi - est.value == pytest.approx(4.303 * 0.05 / 3**0.5, rel=1e-3)
    clipped = mean_ci([0.9, 1.0, 1.0, 0.95], bounds=(0, 1))
    assert clipped.hi == 1.0 and clipped.lo < clipped.value
    assert mean_ci([0.3]).lo == mean_ci([0.3]).hi == 0.3


def test_bad_input():
    with pytest.raises(ValueError):
        wilson(3, 2)
    with pytest.raises(ValueError):
        mean_ci([])
