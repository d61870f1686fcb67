"""Tests of vaelens.data.synthetic: HST-like synthetic galaxy stamps."""

import jax
import numpy as np
import pytest

from vaelens.data import make_synthetic_galaxies
from vaelens.data.synthetic import (
    GALAXY_CLASSES,
    _sersic_batch,
    _sersic_pixelated,
    hst_like_psf,
)

N = 300


@pytest.fixture(scope="module")
def galaxies():
    return make_synthetic_galaxies(1, N)


def _half_light_radius_px(images: np.ndarray) -> np.ndarray:
    """Circular half-light radius (pixels) about the flux-weighted centroid."""
    n, ny, nx = images.shape
    yy, xx = np.mgrid[:ny, :nx]
    cx = (images * xx).sum((1, 2)) / images.sum((1, 2))
    cy = (images * yy).sum((1, 2)) / images.sum((1, 2))
    out = np.empty(n)
    for i in range(n):
        r = np.hypot(xx - cx[i], yy - cy[i]).ravel()
        order = np.argsort(r)
        cum = np.cumsum(images[i].ravel()[order])
        out[i] = r[order][np.searchsorted(cum, 0.5 * cum[-1])]
    return out


def test_shape_dtype_unit_flux_nonnegative(galaxies):
    images, params = galaxies
    assert images.shape == (N, 64, 64)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images.sum((1, 2)), 1.0, atol=1e-5)
    assert images.min() >= 0.0
    assert np.all(np.isfinite(images))
    for key, val in params.items():
        assert val.shape == (N,), key
    assert set(np.unique(params["galaxy_class"])) == set(GALAXY_CLASSES)
    assert np.all(params["noise_sigma"] == 0)


def test_deterministic_and_prefix_stable(galaxies):
    images, params = galaxies
    again, params2 = make_synthetic_galaxies(1, 10)
    np.testing.assert_array_equal(again, images[:10])
    np.testing.assert_array_equal(params2["hlr"], params["hlr"][:10])
    other, _ = make_synthetic_galaxies(2, 10)
    assert np.abs(other - again).max() > 1e-3


def test_jax_key_and_bad_inputs():
    a, _ = make_synthetic_galaxies(jax.random.key(3), 4, size=32)
    b, _ = make_synthetic_galaxies(jax.random.key(3), 4, size=32)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError):
        make_synthetic_galaxies("seed", 2)
    with pytest.raises(ValueError, match="noise_sigma"):
        make_synthetic_galaxies(0, 2, noise_sigma=-1.0)
    with pytest.raises(ValueError):
        make_synthetic_galaxies(0, 2, size=2)


def test_noise_level_and_seeding(galaxies):
    images, _ = galaxies
    noisy, params = make_synthetic_galaxies(1, 20, noise_sigma=2e-3)
    resid = noisy - images[:20]
    assert abs(resid.std() / 2e-3 - 1) < 0.02
    assert abs(resid.mean()) < 1e-4
    np.testing.assert_allclose(params["noise_sigma"], 2e-3)
    noisy2, _ = make_synthetic_galaxies(1, 20, noise_sigma=2e-3)
    np.testing.assert_array_equal(noisy, noisy2)


def test_centred_on_stamp_centre(galaxies):
    images, _ = galaxies
    yy, xx = np.mgrid[:64, :64]
    cx = (images * xx).sum((1, 2))
    cy = (images * yy).sum((1, 2))
    offset = np.hypot(cx - 31.5, cy - 31.5)
    assert np.median(offset) < 0.05
    assert np.percentile(offset, 90) < 0.8


def test_size_distribution_sane(galaxies):
    images, params = galaxies
    hlr_arcsec = params["hlr"]
    assert 0.12 < np.median(hlr_arcsec) < 0.35
    assert hlr_arcsec.min() >= 0.06 and hlr_arcsec.max() <= 0.8
    measured = _half_light_radius_px(images)
    # measured (PSF-broadened, circular) size follows the drawn size
    assert np.corrcoef(np.log(measured), np.log(hlr_arcsec))[0, 1] > 0.7
    assert 2.0 < np.median(measured) < 12.0
    q = params["q_disk"]
    assert 0.1 < q.min() and q.max() <= 1.0 and 0.4 < np.median(q) < 0.9


@pytest.mark.parametrize("n_s", [0.5, 1.0])
def test_rendered_sersic_encloses_half_light(n_s):
    x = ((np.arange(256) + 0.5) - 128) * 0.01
    img = _sersic_batch(
        x[None, :].astype(np.float32),
        x[:, None].astype(np.float32),
        np.array([0.2]),
        np.array([n_s]),
        np.array([0.5]),
        np.array([0.3]),
        np.array([0.0]),
        np.array([0.0]),
    )[0]
    # elliptical radius R = sqrt(q x'^2 + y'^2 / q): half the light inside R < hlr
    c, s, q = np.cos(0.3), np.sin(0.3), 0.5
    xr = x[None, :] * c + x[:, None] * s
    yr = x[:, None] * c - x[None, :] * s
    r = np.sqrt(q * xr**2 + yr**2 / q)
    assert img[r < 0.2].sum() == pytest.approx(0.5, abs=0.02)


def test_psf_unit_sum_centre_and_fwhm():
    psf = hst_like_psf(0.09, 0.03, size=41, oversampling=9)
    assert psf.sum() == pytest.approx(1.0)
    assert np.unravel_index(psf.argmax(), psf.shape) == (20, 20)
    np.testing.assert_allclose(psf, psf.T, atol=1e-12)
    # FWHM from the pixel-integrated profile: close to the requested 3 px
    fine = hst_like_psf(0.09, 0.003, size=201, oversampling=3)
    above = (fine[100] >= 0.5 * fine.max()).sum() * 0.003
    assert above == pytest.approx(0.09, rel=0.05)
    # Airy wings: a few per cent of the light beyond 3 FWHM
    yy, xx = np.mgrid[:41, :41] - 20
    assert 0.01 < psf[np.hypot(xx, yy) > 9].sum() < 0.15


def test_core_box_pixel_integration_matches_full_oversampling():
    # oversampling only the central box loses nothing against oversampling the whole stamp
    rng = np.random.default_rng(0)
    b = 20
    args = (
        rng.uniform(0.03, 0.3, b),
        rng.uniform(0.5, 4.0, b),
        rng.uniform(0.3, 1.0, b),
        rng.uniform(0.0, np.pi, b),
        rng.uniform(-0.1, 0.1, b),
        rng.uniform(-0.1, 0.1, b),
    )
    fast = _sersic_pixelated(*args, 64, 0.03, 5)
    os = 5
    sub = ((((np.arange(64 * os) + 0.5) / os - 0.5) - 31.5) * 0.03).astype(np.float32)
    full = _sersic_batch(sub[None, :], sub[:, None], *args)
    full = full.reshape(b, 64, os, 64, os).sum((2, 4))
    np.testing.assert_allclose(fast.sum((1, 2)), 1.0, rtol=1e-5)
    assert np.abs(fast - full).sum((1, 2)).max() < 2e-3
