"""The shapelet stamp fit: parameter count, noise-limited fit of a smooth galaxy, input checks."""

import jax.numpy as jnp
import numpy as np
import pytest

from vaelens.galaxy import fit_shapelets
from vaelens.galaxy.shapelet_fit import _parabola_vertex
from vaelens.lensing import PixelGrid, Sersic


def test_shapelet_fit_is_noise_limited_for_a_smooth_galaxy():
    x, y = PixelGrid((64, 64), 0.03).coordinates_numpy()
    truth = Sersic(amp=2.0, R_sersic=0.2, n_sersic=1.5, e1=0.1, e2=-0.05, center_x=0.01)
    img = np.asarray(truth.surface_brightness(jnp.asarray(x), jnp.asarray(y))) * 0.03**2
    sigma = img.max() / 100.0
    data = img + sigma * np.random.default_rng(2).normal(size=img.shape)
    sh = fit_shapelets(data, sigma**2, pixel_scale=0.03, n_max=20)
    assert sh.n_params == 232 and sh.params["coeffs"].shape == (231,)
    assert 0.8 < sh.reduced_chi2 < 1.3
    assert 0.03 <= sh.params["beta"] <= 0.3


def test_parabola_vertex_is_exact_for_a_parabola():
    lb = np.array([0.1, 0.4, 0.9])
    assert _parabola_vertex(lb, 3.0 * (lb - 0.35) ** 2 + 1.0) == pytest.approx(0.35)
    assert _parabola_vertex(lb, -((lb - 0.35) ** 2)) is None


def test_shapelet_fit_rejects_too_few_scales():
    with pytest.raises(ValueError, match="three"):
        fit_shapelets(np.ones((8, 8)), 1.0, pixel_scale=0.03, betas=[0.1, 0.2])
