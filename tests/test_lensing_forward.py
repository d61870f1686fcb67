"""The forward model against lenstronomy's ImageModel, flux convention, jit and gradients."""

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
    convolve_psf,
    forward_model,
    gaussian_psf,
)
from vaelens.lensing.light.sersic import to_lenstronomy_sersic

# lenstronomy's own FFT call triggers NumPy deprecation warnings; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KW_LENS = [
    dict(theta_E=1.1, e1=0.1, e2=-0.2, center_x=0.05, center_y=-0.02),
    dict(gamma1=0.03, gamma2=-0.02),
]
KW_SOURCE = [
    dict(amp=20.0, R_sersic=0.2, n_sersic=1.5, e1=0.1, e2=0.05, center_x=0.1, center_y=0.05)
]
KW_LENS_LIGHT = [
    dict(amp=10.0, R_sersic=0.8, n_sersic=3.0, e1=-0.05, e2=0.1, center_x=0.05, center_y=-0.02)
]


def _lenstronomy_sersic(kw):
    """lenstronomy keywords (its approximate b_n) that draw the same Sersic as ``Sersic(**kw)``."""
    amp, r_s = to_lenstronomy_sersic(kw["amp"], kw["R_sersic"], kw["n_sersic"])
    return dict(kw, amp=float(amp), R_sersic=float(r_s))


def _lenstronomy_image(grid, kernel, supersampling, supersampled_conv=False):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    data = ImageData(
        image_data=np.zeros(grid.shape),
        ra_at_xy_0=grid.ra_at_xy_0,
        dec_at_xy_0=grid.dec_at_xy_0,
        transform_pix2angle=grid.transform,
    )
    psf = PSF(
        psf_type="PIXEL",
        kernel_point_source=np.asarray(kernel),
        point_source_supersampling_factor=supersampling if supersampled_conv else 1,
    )
    numerics = dict(supersampling_factor=supersampling)
    if supersampled_conv:
        numerics.update(supersampling_convolution=True, supersampling_kernel_size=len(kernel))
    model = ImageModel(
        data,
        psf,
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        lens_light_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics=numerics,
    )
    return model.image(
        KW_LENS,
        [_lenstronomy_sersic(k) for k in KW_SOURCE],
        [_lenstronomy_sersic(k) for k in KW_LENS_LIGHT],
    )


_forward = jax.jit(
    forward_model, static_argnames=("grid", "supersampling", "convolve_supersampled")
)


@pytest.mark.parametrize("supersampling", [1, 2])
def test_matches_lenstronomy_image_model(supersampling):
    grid = PixelGrid((50, 50), 0.08, transform_pix2angle=[[-0.08, 0.0], [0.0, 0.08]])
    kernel = gaussian_psf(0.15, 0.08, 11)
    ref = _lenstronomy_image(grid, kernel, supersampling)
    mass = (SIE(**KW_LENS[0]), ExternalShear(**KW_LENS[1]))
    ours = _forward(
        grid,
        mass,
        Sersic(**KW_LENS_LIGHT[0]),
        Sersic(**KW_SOURCE[0]),
        kernel,
        supersampling=supersampling,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-8 * ref.max())


def test_supersampled_convolution_matches_lenstronomy():
    grid = PixelGrid((40, 40), 0.08)
    kernel = gaussian_psf(0.15, 0.04, 15)  # on the 2x supersampled pixel scale
    ref = _lenstronomy_image(grid, kernel, 2, supersampled_conv=True)
    mass = (SIE(**KW_LENS[0]), ExternalShear(**KW_LENS[1]))
    ours = _forward(
        grid,
        mass,
        Sersic(**KW_LENS_LIGHT[0]),
        Sersic(**KW_SOURCE[0]),
        kernel,
        supersampling=2,
        convolve_supersampled=True,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * ref.max())


def test_flux_convention_is_flux_per_pixel():
    """Surface brightness (per arcsec^2) times pixel area: the pixel sum is the total flux."""
    grid = PixelGrid((60, 60), 0.05)
    psf = gaussian_psf(0.1, 0.05, 9)
    img = forward_model(grid, lens_light=Gaussian(amp=12.0, sigma=0.2), psf=psf)
    assert float(img.sum()) == pytest.approx(12.0, rel=1e-6)


def test_sis_einstein_ring_sits_at_theta_e():
    theta_E = 0.9
    grid = PixelGrid((120, 120), 0.025)
    img = forward_model(grid, SIS(theta_E), (), Gaussian(1.0, 0.01), supersampling=3)
    x, y = grid.coordinates()
    r = np.hypot(np.asarray(x), np.asarray(y))
    w = np.asarray(img)
    mean_r = (w * r).sum() / w.sum()
    assert mean_r == pytest.approx(theta_E, abs=3e-3)
    # the ring is thin and round: the brightest pixels all lie within a pixel of theta_E
    top = w > 0.5 * w.max()
    assert np.all(np.abs(r[top] - theta_E) < 0.025)
    assert top.sum() > 100


def test_convolve_supersampled_equals_manual_pipeline():
    grid = PixelGrid((16, 16), 0.1)
    kernel = gaussian_psf(0.2, 0.05, 9)
    light = Sersic(3.0, 0.4, 2.0, 0.1, 0.0)
    out = forward_model(
        grid, lens_light=light, psf=kernel, supersampling=2, convolve_supersampled=True
    )
    xs, ys = grid.supersampled_coordinates(2)
    manual = grid.downsample(convolve_psf(light.surface_brightness(xs, ys), kernel), 2) * 0.01
    np.testing.assert_allclose(out, manual, rtol=1e-12)


def _lens_system(dtype):
    f = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    rng = np.random.default_rng(0)
    mass = (EPL(f(1.0), f(2.1), f(0.1), f(-0.05)), ExternalShear(f(0.02), f(0.01)))
    light = (Sersic(f(4.0), f(0.7), f(3.0)),)
    source = (
        PixelatedSource(
            jnp.asarray(rng.uniform(size=(16, 16)), dtype),
            f(0.05),
            f(0.02),
            f(0.8),
            f(0.2),
            f(50.0),
        ),
    )
    return mass, light, source


def test_jit_grad_end_to_end():
    grid = PixelGrid((24, 24), 0.1)
    psf = gaussian_psf(0.15, 0.1, 7)
    params = _lens_system(jnp.float64)
    data = jnp.asarray(np.random.default_rng(1).uniform(0, 5, grid.shape))

    def chi2(p):
        return jnp.sum((forward_model(grid, *p, psf=psf, supersampling=2) - data) ** 2)

    value, grads = jax.jit(jax.value_and_grad(chi2))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g)) for g in leaves)
    # directional finite differences along random directions of all parameters and pixels
    chi2_jit = jax.jit(chi2)
    for k in range(2):
        rng = np.random.default_rng(10 + k)
        direction = jax.tree_util.tree_map(
            lambda v, rng=rng: jnp.asarray(rng.normal(size=np.shape(v))), params
        )
        shift = lambda eps, d=direction: jax.tree_util.tree_map(  # noqa: E731
            lambda p, q: p + eps * q, params, d
        )
        fd = (chi2_jit(shift(1e-6)) - chi2_jit(shift(-1e-6))) / 2e-6
        ad = sum(
            jnp.sum(g * d)
            for g, d in zip(leaves, jax.tree_util.tree_leaves(direction), strict=True)
        )
        assert float(ad) == pytest.approx(float(fd), rel=1e-5)


def test_float32_in_float32_out():
    grid = PixelGrid((12, 12), 0.1)
    light = Sersic(jnp.float32(4.0), jnp.float32(0.5), jnp.float32(2.0))
    src = Gaussian(jnp.float32(3.0), jnp.float32(0.1))
    psf = gaussian_psf(0.15, 0.1, 5)
    img32 = _forward(grid, SIS(jnp.float32(0.5)), light, src, psf.astype(jnp.float32))
    img64 = _forward(grid, SIS(0.5), Sersic(4.0, 0.5, 2.0), Gaussian(3.0, 0.1), psf)
    assert img32.dtype == jnp.float32 and img64.dtype == jnp.float64
    np.testing.assert_allclose(img32, img64, rtol=1e-4, atol=1e-5 * float(img64.max()))


def test_materialize_is_the_identity_and_keeps_gradients_and_nans():
    from vaelens.lensing._xla import materialize

    x = jnp.linspace(-1.0, 2.0, 12).reshape(3, 4)
    np.testing.assert_array_equal(jax.jit(materialize)(x), x)
    g = jax.grad(lambda a: jnp.sum(materialize(a) ** 3))(x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-12)
    bad = x.at[0, 0].set(jnp.nan)
    assert bool(jnp.all(jnp.isnan(materialize(bad))))  # a NaN is never hidden
    later_nan = x.at[2, 1].set(jnp.nan)
    out = materialize(later_nan)
    assert bool(jnp.isnan(out[2, 1])) and int(jnp.sum(jnp.isnan(out))) == 1
