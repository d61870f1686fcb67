"""Coverage statistics on a toy problem where the answer is known.

A normal mean with a normal prior and known noise has an exact conjugate posterior: fitted to its
own draws, its intervals must cover at the nominal rate and its SBC ranks must be uniform; with
the noise under-stated (a misspecified model) they must not.
"""

import numpy as np
import pytest

from vaelens.infer.calibration import (
    coverage_table,
    draws_coverage,
    gaussian_coverage,
    normalized_errors,
    rank_uniformity,
    sbc_ranks,
)

N_MOCKS = 2000
N_OBS = 5
NOISE = 1.0


def _conjugate_posteriors(seed: int, assumed_noise: float):
    """Truths mu ~ N(0, 1); data x ~ N(mu, NOISE); posterior with ``assumed_noise``."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=N_MOCKS)
    x = mu[:, None] + NOISE * rng.normal(size=(N_MOCKS, N_OBS))
    precision = 1.0 + N_OBS / assumed_noise**2
    mean = (x.sum(axis=1) / assumed_noise**2) / precision
    sd = np.full(N_MOCKS, precision**-0.5)
    draws = mean[:, None] + sd[:, None] * rng.normal(size=(N_MOCKS, 99))
    return mu, mean, sd, draws


def _binomial_tolerance(p: float, n: int = N_MOCKS) -> float:
    return 4.0 * np.sqrt(p * (1 - p) / n)


def test_calibrated_model_has_nominal_coverage():
    mu, mean, sd, draws = _conjugate_posteriors(0, assumed_noise=NOISE)
    for cov in (gaussian_coverage(mean, sd, mu), draws_coverage(draws, mu)):
        for level, value in cov.items():
            assert abs(value - level) < _binomial_tolerance(level), (level, value)
    z = normalized_errors(mean, sd, mu)
    assert abs(np.median(z)) < 0.1
    assert abs(np.std(z) - 1.0) < 0.05
    hist = rank_uniformity(sbc_ranks(draws, mu), n_draws=99)
    assert sum(hist["counts"]) == N_MOCKS
    assert hist["p_value"] > 1e-3


def test_misspecified_model_undercovers():
    mu, mean, sd, draws = _conjugate_posteriors(1, assumed_noise=0.4 * NOISE)
    for cov in (gaussian_coverage(mean, sd, mu), draws_coverage(draws, mu)):
        assert cov[0.68] < 0.68 - 3 * _binomial_tolerance(0.68)
        assert cov[0.95] < 0.95 - 3 * _binomial_tolerance(0.95)
    hist = rank_uniformity(sbc_ranks(draws, mu), n_draws=99)
    assert hist["p_value"] < 1e-6
    counts = np.asarray(hist["counts"])
    assert counts[0] + counts[-1] > 2 * counts[4:6].sum()  # too-narrow posteriors: a U shape


def test_biased_model_shows_in_median_z():
    mu, mean, sd, _ = _conjugate_posteriors(2, assumed_noise=NOISE)
    table = coverage_table({"mu": mean + sd}, {"mu": sd}, {"mu": mu})
    assert table["mu"]["n"] == N_MOCKS
    assert table["mu"]["median_z"] == pytest.approx(1.0, abs=0.1)
    assert table["mu"]["spread_z"] == pytest.approx(1.0, abs=0.1)
    assert table["mu"]["coverage"]["0.68"] < 0.55


def test_failed_fits_are_left_out():
    truth = np.array([0.0, 0.0, 0.0, 0.0])
    est = np.array([0.5, np.nan, 3.0, 0.1])
    sd = np.array([1.0, 1.0, 1.0, 0.0])
    cov = gaussian_coverage(est, sd, truth)
    assert cov[0.68] == pytest.approx(0.5)  # two usable mocks, one inside
    draws = np.array([[-1.0, 1.0, 2.0], [np.nan, 0.0, 1.0]])
    assert sbc_ranks(draws, np.array([0.5, 0.0])).tolist() == [1, -1]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="one shape"):
        normalized_errors([1.0, 2.0], [1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        gaussian_coverage([0.0], [1.0], [0.0], levels=(1.5,))
    with pytest.raises(ValueError, match="n_mocks, n_draws"):
        draws_coverage(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="needs a sigma"):
        coverage_table({"a": [0.0]}, {}, {"a": [0.0]})
