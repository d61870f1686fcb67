"""PSF convolution, Gaussian kernels and the noise model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import fftconvolve

from vaelens.lensing import convolve_psf, draw_noise, gaussian_psf, noise_variance


@pytest.mark.parametrize("kshape", [(5, 5), (3, 7), (21, 21)])
def test_matches_scipy_fftconvolve_for_odd_kernels(kshape):
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 23))
    kernel = rng.uniform(size=kshape)
    kernel /= kernel.sum()
    ref = fftconvolve(image, kernel, mode="same")
    np.testing.assert_allclose(convolve_psf(image, kernel), ref, atol=1e-12)


@pytest.mark.parametrize("ksize", [4, 5, 6, 7])
def test_delta_function_is_centred(ksize):
    rng = np.random.default_rng(ksize)
    kernel = rng.uniform(size=(ksize, ksize))
    kernel /= kernel.sum()
    image = np.zeros((15, 15))
    image[7, 6] = 1.0
    out = np.asarray(convolve_psf(image, kernel))
    c = ksize // 2
    expected = np.zeros_like(image)
    expected[7 - c : 7 - c + ksize, 6 - c : 6 - c + ksize] = kernel
    np.testing.assert_allclose(out, expected, atol=1e-13)
    if ksize % 2:  # a symmetric odd kernel leaves the centroid exactly where it was
        sym = kernel + kernel[::-1, ::-1]
        out = np.asarray(convolve_psf(image, sym))
        yy, xx = np.indices(out.shape)
        assert (out * xx).sum() / out.sum() == pytest.approx(6.0, abs=1e-12)
        assert (out * yy).sum() / out.sum() == pytest.approx(7.0, abs=1e-12)


def test_even_kernel_convention_relative_to_scipy_full():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(12, 10))
    kernel = rng.uniform(size=(4, 6))
    full = fftconvolve(image, kernel / kernel.sum(), mode="full")
    np.testing.assert_allclose(convolve_psf(image, kernel), full[2:14, 3:13], atol=1e-12)


@pytest.mark.parametrize("ksize", [6, 9])
def test_flux_is_preserved_and_kernel_normalised(ksize):
    rng = np.random.default_rng(0)
    image = np.zeros((40, 40))
    image[10:30, 12:28] = rng.uniform(size=(20, 16))
    kernel = 3.0 * rng.uniform(size=(ksize, ksize))  # unnormalised on purpose
    out = convolve_psf(image, kernel)
    assert float(out.sum()) == pytest.approx(image.sum(), rel=1e-12)


@pytest.mark.parametrize("ksize", [6, 9])
@pytest.mark.parametrize("normalize", [True, False])
def test_traced_kernel_gives_the_concrete_kernel_result(ksize, normalize):
    """A concrete kernel is transformed once in NumPy; a traced one (a fitted PSF) in JAX."""
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 25))
    kernel = rng.uniform(0.1, 1.0, size=(ksize, ksize))
    concrete = convolve_psf(image, kernel, normalize=normalize)
    traced = jax.jit(lambda k: convolve_psf(image, k, normalize=normalize))(kernel)
    np.testing.assert_allclose(traced, concrete, rtol=1e-12, atol=1e-12 * np.abs(concrete).max())
    # the traced path also differentiates with respect to the kernel
    g = jax.grad(lambda k: convolve_psf(image, k, normalize=normalize)[12, 7])(kernel)
    eps = 1e-6
    k2 = kernel.copy()
    k2[2, 3] += eps
    fd = (convolve_psf(image, k2, normalize=normalize)[12, 7] - concrete[12, 7]) / eps
    assert float(g[2, 3]) == pytest.approx(float(fd), rel=1e-4, abs=1e-8)


def test_batched_images_and_float32():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 16, 16)).astype(np.float32)
    kernel = gaussian_psf(0.2, 0.05, 9).astype(jnp.float32)
    out = convolve_psf(images, kernel)
    assert out.shape == (3, 16, 16) and out.dtype == jnp.float32
    np.testing.assert_allclose(out[1], convolve_psf(images[1], kernel), atol=1e-6)


def test_gaussian_psf_normalised_with_right_width():
    fwhm, pix = 0.3, 0.02
    k = np.asarray(gaussian_psf(fwhm, pix, 61))
    assert k.shape == (61, 61) and k.sum() == pytest.approx(1.0)
    u = (np.arange(61) - 30) * pix
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    assert np.sum(k.sum(0) * u**2) == pytest.approx(sigma**2, rel=1e-3)
    assert np.unravel_index(k.argmax(), k.shape) == (30, 30)
    with pytest.raises(ValueError, match="odd"):
        gaussian_psf(fwhm, pix, 8)


def test_noise_variance_formula_with_exposure_map():
    model = jnp.array([[-1.0, 0.0], [2.0, 10.0]])
    texp = jnp.array([[100.0, 100.0], [200.0, 50.0]])
    var = noise_variance(model, 0.1, texp)
    np.testing.assert_allclose(var, 0.01 + np.maximum(np.asarray(model), 0) / np.asarray(texp))
    np.testing.assert_allclose(noise_variance(model, 0.1, 100.0)[1, 1], 0.01 + 0.1)


def test_draw_noise_is_keyed_and_has_the_right_variance():
    model = jnp.full((200, 200), 5.0)
    n1 = draw_noise(jax.random.key(0), model, 0.2, 100.0)
    n2 = draw_noise(jax.random.key(0), model, 0.2, 100.0)
    n3 = draw_noise(jax.random.key(1), model, 0.2, 100.0)
    np.testing.assert_array_equal(n1, n2)
    assert not np.allclose(n1, n3)
    expected_std = np.sqrt(0.04 + 0.05)
    assert float(n1.std()) == pytest.approx(expected_std, rel=0.02)
    assert abs(float(n1.mean())) < 0.01
