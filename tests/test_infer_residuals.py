"""The arc-residual check: quiet on pure noise, loud on unmodelled structure in the arcs."""

import numpy as np
import pytest

from vaelens.infer.residuals import arc_residual_message, arc_residuals


def _ring(n=100, radius=30.0, width=4.0, peak=20.0):
    y, x = np.indices((n, n)) - (n - 1) / 2
    return peak * np.exp(-0.5 * ((np.hypot(x, y) - radius) / width) ** 2)


def test_pure_noise_is_not_flagged():
    model = _ring()
    flagged = 0
    for seed in range(20):
        data = model + np.random.default_rng(seed).normal(size=model.shape)
        check = arc_residuals(data, model, 1.0)
        assert check["num_pixels"] > 500
        assert check["chi2_per_pixel"] == pytest.approx(1.0, abs=0.15)
        flagged += check["significant"]
    assert flagged <= 1


def test_unmodelled_structure_in_the_arcs_is_flagged():
    rng = np.random.default_rng(0)
    model = _ring()
    y, x = np.indices(model.shape) - 49.5
    clump = 3.0 * np.exp(-0.5 * (((x - 30) ** 2 + y**2) / 3.0**2))  # a knot the model lacks
    data = model + clump + rng.normal(size=model.shape)
    check = arc_residuals(data, model, 1.0)
    assert check["significant"]
    assert check["binned_chi2_per_block"] > check["chi2_per_pixel"]  # coherent, not white
    message = arc_residual_message(check)
    assert "error bars are likely too small" in message


def test_structure_outside_the_arcs_is_ignored():
    rng = np.random.default_rng(1)
    model = _ring()
    data = model + rng.normal(size=model.shape)
    data[:10, :10] += 5.0  # far from the arcs
    assert not arc_residuals(data, model, 1.0)["significant"]


def test_masked_and_tiny_arcs():
    model = _ring(peak=2.0)  # below 3 sigma everywhere
    check = arc_residuals(model, model, 1.0)
    assert check["num_pixels"] == 0 and check["chi2_per_pixel"] is None
    assert not check["significant"]
    with pytest.raises(ValueError, match="one 2-d shape"):
        arc_residuals(np.zeros((4, 4)), np.zeros((4, 5)), 1.0)
    with pytest.raises(ValueError, match="snr must be positive"):
        arc_residuals(np.zeros((4, 4)), np.zeros((4, 4)), 1.0, snr=0)
