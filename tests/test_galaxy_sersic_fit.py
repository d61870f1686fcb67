"""The Sersic stamp fit recovers a noisy PSF-free Sersic profile."""

import jax.numpy as jnp
import numpy as np
import pytest

from vaelens.galaxy import fit_sersic
from vaelens.lensing import PixelGrid, Sersic


def _sersic_stamp(pixel_scale=0.03, seed=2):
    x, y = PixelGrid((64, 64), pixel_scale).coordinates_numpy()
    truth = Sersic(amp=2.0, R_sersic=0.2, n_sersic=1.5, e1=0.1, e2=-0.05, center_x=0.01)
    img = np.asarray(truth.surface_brightness(jnp.asarray(x), jnp.asarray(y))) * pixel_scale**2
    sigma = img.max() / 100.0
    return img + sigma * np.random.default_rng(seed).normal(size=img.shape), sigma


def test_sersic_fit_recovers_the_profile():
    data, sigma = _sersic_stamp()
    res = fit_sersic(data, sigma**2, pixel_scale=0.03, supersampling=1)
    assert abs(res.params["R_sersic"] - 0.2) < 0.01
    assert abs(res.params["n_sersic"] - 1.5) < 0.1
    assert abs(res.params["e1"] - 0.1) < 0.02 and abs(res.params["e2"] + 0.05) < 0.02
    assert abs(res.params["center_x"] - 0.01) < 0.005
    assert abs(res.params["amp"] / 2.0 - 1) < 0.1
    assert res.n_params == 7
    assert 0.85 < res.reduced_chi2 < 1.15


def test_sersic_fit_rejects_a_batch():
    with pytest.raises(ValueError, match="one"):
        fit_sersic(np.ones((2, 8, 8)), 1.0, pixel_scale=0.03)
