"""Bad input raises a clear ValueError at the public entry point; traced values pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaelens.lensing import (
    EPL,
    SIE,
    SIS,
    ExternalShear,
    Gaussian,
    PixelatedSource,
    PixelGrid,
    Sersic,
    Shapelets,
    convolve_psf,
    forward_model,
    gaussian_psf,
    noise_variance,
    shapelet_design_matrix,
)

NAN = float("nan")


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: EPL(1.0, gamma=1.1), "gamma"),
        (lambda: EPL(1.0, gamma=2.9), "gamma"),
        (lambda: EPL(1.0, 2.0, e1=0.8, e2=0.6), r"\|e\|"),
        (lambda: EPL(1.0, 2.0, e1=1.0), r"\|e\|"),
        (lambda: EPL(NAN), "theta_E"),
        (lambda: EPL(-1.0), "theta_E"),
        (lambda: EPL(1.0, 2.0, center_x=NAN), "center_x"),
        (lambda: SIE(1.0, e1=NAN), "e1"),
        (lambda: SIE(1.0, e1=0.9, e2=0.5), r"\|e\|"),
        (lambda: SIS(0.0), "theta_E"),
        (lambda: ExternalShear(NAN, 0.0), "gamma1"),
        (lambda: Sersic(1.0, 0.0, 2.0), "R_sersic"),
        (lambda: Sersic(1.0, 0.5, -1.0), "n_sersic"),
        (lambda: Sersic(NAN, 0.5, 1.0), "amp"),
        (lambda: Sersic(1.0, 0.5, 1.0, e1=0.99, e2=0.2), r"\|e\|"),
        (lambda: Gaussian(1.0, -0.1), "sigma"),
        (lambda: Shapelets(jnp.ones(5), 0.3), "n_max"),
        (lambda: Shapelets(jnp.ones(6), 0.0), "beta"),
        (lambda: Shapelets(jnp.ones((2, 3)), 0.3), "1-D"),
        (lambda: PixelatedSource(jnp.ones(64)), "2-D"),
        (lambda: PixelatedSource(jnp.ones((8, 8)), size=0.0), "size"),
        (lambda: PixelatedSource(jnp.ones((8, 8)).at[2, 2].set(NAN)), "image"),
        (lambda: PixelatedSource(jnp.ones((8, 8)), angle=NAN), "angle"),
        (lambda: PixelGrid((10, 10), 0.0), "pixel_scale"),
        (lambda: PixelGrid((10, 10), -0.05), "pixel_scale"),
        (lambda: PixelGrid((10,), 0.05), "shape"),
        (lambda: PixelGrid((0, 10), 0.05), "shape"),
        (lambda: PixelGrid((10, 10), 0.05, transform_pix2angle=[[1, 2], [2, 4]]), "singular"),
        (lambda: PixelGrid((10, 10), 0.05, transform_pix2angle=[1, 0, 0, 1]), "2x2"),
        (lambda: gaussian_psf(0.1, 0.05, 10), "odd"),
        (lambda: gaussian_psf(-0.1, 0.05, 11), "fwhm"),
        (lambda: convolve_psf(jnp.ones((8, 8)), jnp.ones(5)), "2-D"),
        (lambda: convolve_psf(jnp.ones((8, 8)), jnp.zeros((3, 3))), "positive sum"),
        (lambda: convolve_psf(jnp.ones((8, 8)), jnp.full((3, 3), NAN)), "kernel"),
        (lambda: noise_variance(jnp.ones((4, 4)), 0.1, 0.0), "exposure_time"),
        (lambda: noise_variance(jnp.ones((4, 4)), -0.1, 10.0), "bkg_rms"),
        (lambda: noise_variance(jnp.ones((4, 4)), 0.1, jnp.ones((3, 3))), "broadcast"),
        (lambda: shapelet_design_matrix(jnp.ones(3), jnp.ones(4), 2, 0.3), "same shape"),
        (lambda: forward_model(PixelGrid((4, 4), 0.1), psf=jnp.ones(3)), "psf"),
        (lambda: forward_model(PixelGrid((4, 4), 0.1), supersampling=0), "supersampling"),
        (lambda: forward_model(PixelGrid((4, 4), 0.1), supersampling=1.5), "supersampling"),
        (lambda: forward_model((4, 4)), "PixelGrid"),
        (lambda: forward_model(PixelGrid((4, 4), 0.1), mass=(Sersic(1.0, 0.5, 1.0),)), "Mass"),
    ],
)
def test_bad_input_raises_clear_value_error(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_traced_values_pass_unchecked_under_jit_grad_and_vmap():
    x = jnp.array([0.3, -0.8])

    @jax.jit
    def f(gamma, e1, size):
        mass = EPL(1.0, gamma, e1, 0.0)
        src = PixelatedSource(jnp.ones((4, 4)), size=size)
        return jnp.sum(mass.deflection(x, x)[0]) + jnp.sum(src.surface_brightness(x, x))

    # out-of-range values are not inspected while traced (no ValueError)
    assert np.isfinite(float(f(2.0, 0.1, 1.0)))
    f(3.5, 0.1, 1.0)
    g = jax.grad(lambda th: SIE(th, 0.1, 0.0).deflection(0.5, 0.2)[0])(1.2)
    assert np.isfinite(float(g))
    out = jax.vmap(lambda th: SIS(th).deflection(0.5, 0.0)[0])(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(out, [1.0, 2.0])


def test_concrete_arrays_are_checked_elementwise():
    EPL(jnp.array([1.0, 2.0]), jnp.array([1.5, 2.5]))  # fine
    with pytest.raises(ValueError, match="gamma"):
        EPL(jnp.array([1.0, 2.0]), jnp.array([1.5, 3.5]))
