"""Light profiles: Sersic, Gaussian, shapelets and the pixelated source."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaelens.lensing import Gaussian, PixelatedSource, Sersic, Shapelets, shapelet_design_matrix
from vaelens.lensing.light.sersic import (
    lenstronomy_b_n,
    sersic_b_n,
    sersic_total_flux,
    to_lenstronomy_sersic,
)
from vaelens.lensing.light.shapelets import shapelet_indices


def test_sersic_matches_lenstronomy_sersic_ellipse():
    from lenstronomy.LightModel.light_model import LightModel

    lt = LightModel(["SERSIC_ELLIPSE"])
    rng = np.random.default_rng(0)
    sb = jax.jit(lambda p, x, y: p.surface_brightness(x, y))
    unconverted = []
    for _ in range(6):
        e = rng.uniform(0, 0.5)
        phi = rng.uniform(0, np.pi)
        kw = dict(
            amp=rng.uniform(1, 20),
            R_sersic=rng.uniform(0.1, 1.5),
            n_sersic=rng.uniform(0.5, 6),
            e1=e * np.cos(2 * phi),
            e2=e * np.sin(2 * phi),
            center_x=rng.normal(0, 0.2),
            center_y=rng.normal(0, 0.2),
        )
        x = np.concatenate([[kw["center_x"]], rng.uniform(-3, 3, 80)])
        y = np.concatenate([[kw["center_y"]], rng.uniform(-3, 3, 80)])
        amp_l, r_l = to_lenstronomy_sersic(kw["amp"], kw["R_sersic"], kw["n_sersic"])
        kw_l = dict(kw, amp=float(amp_l), R_sersic=float(r_l))
        ours = sb(Sersic(**kw), x, y)
        np.testing.assert_allclose(ours, lt.surface_brightness(x, y, [kw_l]), rtol=1e-10)
        unconverted.append(np.max(np.abs(ours / lt.surface_brightness(x, y, [kw]) - 1)))
    # without the conversion the images differ (lenstronomy's b_n is approximate)
    assert max(unconverted) > 1e-3


def test_sersic_b_n_is_the_half_light_root():
    from scipy import special

    n = np.linspace(0.3, 8.0, 400)
    exact = special.gammaincinv(2 * n, 0.5)
    b = np.asarray(sersic_b_n(jnp.asarray(n)))
    np.testing.assert_allclose(b, exact, rtol=6e-4, atol=3e-4)
    assert np.max(np.abs(b - exact)[n >= 1]) < 5e-5
    # lenstronomy's linear approximation is worse by an order of magnitude or more
    assert np.max(np.abs(np.asarray(lenstronomy_b_n(n)) - exact)) > 1e-2


def test_sersic_b_n_gradient_matches_finite_differences():
    from scipy import special

    for n in (0.32, 0.5, 1.0, 4.0):
        h = 1e-3
        fd = (special.gammaincinv(2 * (n + h), 0.5) - special.gammaincinv(2 * (n - h), 0.5)) / (
            2 * h
        )
        g = float(jax.grad(sersic_b_n)(n))
        assert np.isfinite(g) and g == pytest.approx(fd, rel=2e-2)


@pytest.mark.parametrize("n", [0.5, 1.0, 4.0])
def test_sersic_r_sersic_encloses_half_the_light(n):
    # radial integral of the circular profile: L(<R) / L = gamma(2n, b (R/R_s)^(1/n)) / Gamma(2n)
    from scipy import integrate

    s = Sersic(amp=1.0, R_sersic=0.3, n_sersic=n)
    f = lambda r: 2 * np.pi * r * float(s.surface_brightness(r, 0.0))  # noqa: E731
    inner = integrate.quad(f, 0.0, 0.3, limit=200)[0]
    total = inner + integrate.quad(f, 0.3, np.inf, limit=200)[0]
    assert inner / total == pytest.approx(0.5, abs=2e-4)
    assert float(sersic_total_flux(1.0, 0.3, n)) == pytest.approx(total, rel=2e-4)


def test_sersic_total_flux_matches_pixel_sum_of_elliptical_profile():
    pix = 0.01
    g = (np.arange(-600, 600) + 0.5) * pix
    x, y = np.meshgrid(g, g)
    s = Sersic(amp=2.0, R_sersic=0.4, n_sersic=1.0, e1=0.2, e2=-0.1, center_x=0.05)
    total = float(np.sum(np.asarray(s.surface_brightness(x, y), np.float64))) * pix**2
    # the product-averaged radius preserves area: the flux does not depend on the ellipticity
    assert float(sersic_total_flux(2.0, 0.4, 1.0)) == pytest.approx(total, rel=2e-3)
    assert float(sersic_total_flux(2.0, 0.4, 1.0, q=0.5)) == pytest.approx(0.5 * total, rel=2e-3)


def test_sersic_amp_is_surface_brightness_at_r_sersic():
    s = Sersic(amp=3.0, R_sersic=0.7, n_sersic=2.5)
    assert float(s.surface_brightness(0.7, 0.0)) == pytest.approx(3.0)
    assert float(s.surface_brightness(0.0, -0.7)) == pytest.approx(3.0)


def test_gaussian_matches_lenstronomy_and_integrates_to_amp():
    from lenstronomy.LightModel.light_model import LightModel

    kw = dict(amp=7.0, sigma=0.3, center_x=0.1, center_y=-0.2)
    x, y = np.meshgrid(np.linspace(-2, 2, 201), np.linspace(-2, 2, 201))
    ours = Gaussian(**kw).surface_brightness(x, y)
    ref = LightModel(["GAUSSIAN"]).surface_brightness(x.ravel(), y.ravel(), [kw])
    np.testing.assert_allclose(np.asarray(ours).ravel(), ref, rtol=1e-12)
    assert float(ours.sum()) * 0.02**2 == pytest.approx(7.0, rel=1e-6)


def test_shapelets_match_lenstronomy_to_order_20():
    from lenstronomy.LightModel.light_model import LightModel

    n_max, beta = 20, 0.4
    rng = np.random.default_rng(1)
    coeffs = rng.normal(size=(n_max + 1) * (n_max + 2) // 2)
    x = rng.uniform(-2, 2, 300)
    y = rng.uniform(-2, 2, 300)
    kw = dict(amp=coeffs, n_max=n_max, beta=beta, center_x=0.1, center_y=-0.05)
    lt = LightModel(["SHAPELETS"])
    ref = lt.surface_brightness(x, y, [kw])
    ours = Shapelets(jnp.asarray(coeffs), beta, 0.1, -0.05).surface_brightness(x, y)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)
    # individual basis functions (order of the design matrix columns)
    from lenstronomy.LightModel.Profiles.shapelets import ShapeletSet

    ones = np.ones_like(coeffs)
    basis = np.array(ShapeletSet().function_split(x, y, ones, n_max, beta, 0.1, -0.05))
    design = np.asarray(shapelet_design_matrix(x, y, n_max, beta, 0.1, -0.05))
    np.testing.assert_allclose(design, basis.T, rtol=1e-9, atol=1e-12)


def test_shapelet_order_and_orthonormality():
    idx = shapelet_indices(3)
    assert [tuple(v) for v in idx[:6]] == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    n_max, beta, h = 12, 0.3, 0.03
    u = np.arange(-100, 101) * h
    x, y = np.meshgrid(u, u)
    design = jax.jit(shapelet_design_matrix, static_argnums=2)(x, y, n_max, beta)
    design = np.asarray(design).reshape(-1, 91)
    gram = design.T @ design * h**2 / beta**2
    np.testing.assert_allclose(gram, np.eye(91), atol=1e-8)


def test_shapelet_linear_solve_recovers_coefficients():
    n_max, beta = 20, 0.35
    rng = np.random.default_rng(2)
    coeffs = rng.normal(size=231)
    u = np.linspace(-2.5, 2.5, 64)
    x, y = np.meshgrid(u, u)
    design = jax.jit(shapelet_design_matrix, static_argnums=2)(x, y, n_max, beta)
    image = design @ coeffs
    np.testing.assert_allclose(
        Shapelets(jnp.asarray(coeffs), beta).surface_brightness(x[::9, ::9], y[::9, ::9]),
        image[::9, ::9],
        rtol=1e-12,
    )
    design = design.reshape(-1, 231)
    solved, *_ = jnp.linalg.lstsq(design, image.ravel())
    np.testing.assert_allclose(solved, coeffs, atol=1e-8)


def _source(rng, n=12):
    return PixelatedSource(
        jnp.asarray(rng.uniform(0.1, 1.0, size=(n, n))),
        center_x=0.12,
        center_y=-0.07,
        size=0.9,
        angle=0.6,
        amp=1.7,
    )


def test_pixelated_source_returns_its_pixels_at_its_pixel_centres():
    src = _source(np.random.default_rng(0))
    x, y = src.pixel_coordinates()
    np.testing.assert_allclose(src.surface_brightness(x, y), 1.7 * src.image, rtol=1e-12)
    # unrotated, square: centres on a regular grid of spacing size / n
    plain = PixelatedSource(src.image, size=1.2)
    xp, yp = plain.pixel_coordinates()
    np.testing.assert_allclose(np.diff(np.asarray(xp[0])), 0.1)
    assert float(xp[0, 0]) == pytest.approx(-0.55) and float(yp[0, 0]) == pytest.approx(-0.55)
    np.testing.assert_allclose(plain.surface_brightness(xp, yp), src.image, rtol=1e-12)


def test_pixelated_source_is_zero_outside_its_footprint_and_continuous():
    src = _source(np.random.default_rng(1))
    d = 0.9 / 12
    c, s = np.cos(0.6), np.sin(0.6)
    # along the image's own axes, 1.5 pixels beyond the edge and further the value is zero
    for u in [0.45 + 1.5 * d + 1e-9, 0.45 + 2 * d, 5.0, -0.45 - 1.5 * d - 1e-9]:
        x = 0.12 + c * u - s * 0.1
        y = -0.07 + s * u + c * 0.1
        assert float(src.surface_brightness(x, y)) == 0.0
    far = src.surface_brightness(jnp.array([10.0, -30.0]), jnp.array([0.0, 4.0]))
    np.testing.assert_array_equal(far, 0.0)
    # continuity across the footprint edge
    u = jnp.linspace(0.3, 0.7, 2001)
    vals = src.surface_brightness(0.12 + c * u, -0.07 + s * u)
    assert float(jnp.max(jnp.abs(jnp.diff(vals)))) < 5e-3


def test_pixelated_interpolation_is_accurate_for_smooth_images():
    n, size = 32, 2.0
    u = (np.arange(n) - (n - 1) / 2) * size / n
    xx, yy = np.meshgrid(u, u)
    f = lambda x, y: np.exp(-(x**2 + 0.5 * y**2) / (2 * 0.3**2))  # noqa: E731
    src = PixelatedSource(jnp.asarray(f(xx, yy)), size=size)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-0.7, 0.7, (2, 200))
    np.testing.assert_allclose(src.surface_brightness(x, y), f(x, y), atol=3e-3)


def test_pixelated_source_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    image = jnp.asarray(rng.uniform(size=(6, 6)))
    x = jnp.asarray(rng.uniform(-0.6, 0.6, 30))
    y = jnp.asarray(rng.uniform(-0.6, 0.6, 30))

    def loss(params):
        sb = PixelatedSource(*params).surface_brightness(x, y)
        return jnp.sum(sb**2)

    params = (image, 0.05, -0.03, 1.1, 0.3, 1.4)
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    loss_jit = jax.jit(loss)
    _, grads = value_and_grad(params)
    for k in range(3):  # random directions in the space of all parameters and pixels
        direction = jax.tree_util.tree_map(
            lambda v, k=k: jnp.asarray(np.random.default_rng(k).normal(size=np.shape(v))), params
        )
        shift = lambda eps, d=direction: jax.tree_util.tree_map(  # noqa: E731
            lambda p, q: p + eps * q, params, d
        )
        fd = (loss_jit(shift(1e-6)) - loss_jit(shift(-1e-6))) / 2e-6
        ad = sum(
            jnp.sum(g * d)
            for g, d in zip(
                jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction), strict=True
            )
        )
        assert float(ad) == pytest.approx(float(fd), rel=1e-6)


def test_pixelated_source_forward_and_reverse_mode_agree_to_second_order():
    """jvp and vjp of the interpolation (custom JVP, transposed for reverse mode) agree, and
    forward-over-reverse and reverse-over-reverse Hessians agree with each other."""
    rng = np.random.default_rng(5)
    image = jnp.asarray(rng.uniform(size=(8, 8)))
    x = jnp.asarray(rng.uniform(-0.7, 0.7, 40))
    y = jnp.asarray(rng.uniform(-0.7, 0.7, 40))

    def loss(theta, img):
        src = PixelatedSource(img, theta[0], theta[1], theta[2], theta[3], 1.3)
        return jnp.sum(src.surface_brightness(x, y) ** 2)

    theta = jnp.array([0.05, -0.03, 1.1, 0.3])
    d_img = jnp.asarray(rng.normal(size=image.shape))
    d_theta = jnp.asarray(rng.normal(size=4))
    _, jvp_out = jax.jvp(loss, (theta, image), (d_theta, d_img))
    g_theta, g_img = jax.grad(loss, argnums=(0, 1))(theta, image)
    assert float(jvp_out) == pytest.approx(
        float(g_theta @ d_theta + jnp.sum(g_img * d_img)), rel=1e-10
    )
    h_fwd = jax.jacfwd(jax.grad(loss))(theta, image)
    h_rev = jax.jacrev(jax.grad(loss))(theta, image)
    np.testing.assert_allclose(h_fwd, h_rev, rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(h_fwd)) and np.abs(h_fwd).max() > 0


def test_light_profiles_are_pytrees_that_vmap():
    batch = Sersic(
        jnp.array([1.0, 2.0]), jnp.array([0.5, 0.6]), jnp.array([1.0, 4.0]), 0.0, 0.0, 0.0, 0.0
    )
    axes = jax.tree_util.tree_map(lambda v: 0 if jnp.ndim(v) else None, batch)
    out = jax.vmap(lambda s: s.surface_brightness(0.3, 0.1), in_axes=(axes,))(batch)
    assert out.shape == (2,)
    assert float(out[1]) == pytest.approx(float(Sersic(2.0, 0.6, 4.0).surface_brightness(0.3, 0.1)))


def test_sersic_parameter_gradients_match_finite_differences():
    """Forward and reverse mode (parameters broadcast once per pixel array) against FD."""
    from jax.test_util import check_grads

    xg = jnp.array([0.7, -1.3, 0.2, 1.9, 0.01])
    yg = jnp.array([-0.4, 0.8, 1.5, 0.3, -0.02])

    def loss(amp, r_s, n, e1, e2, cx, cy):
        return jnp.sum(Sersic(amp, r_s, n, e1, e2, cx, cy).surface_brightness(xg, yg) ** 2)

    check_grads(
        loss,
        (3.0, 0.8, 2.5, 0.15, -0.1, 0.05, -0.03),
        order=1,
        modes=["fwd", "rev"],
        eps=1e-6,
        atol=1e-6,
        rtol=1e-6,
    )
