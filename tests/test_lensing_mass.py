"""Mass profiles against lenstronomy, autodiff identities and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vaelens.lensing import EPL, SIE, SIS, ExternalShear, ray_shoot

# lenstronomy divides 0/0 at the lens centre (then replaces the NaN); silence its warnings
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

RTOL = 1e-6


def _positions(rng, center, n=60):
    """Random positions plus points at and very near the centre."""
    x = rng.uniform(-2.5, 2.5, n) + center[0]
    y = rng.uniform(-2.5, 2.5, n) + center[1]
    near = np.array([[0.0, 0.0], [1e-7, 0.0], [0.0, -3e-5], [1e-3, 2e-3], [-0.01, 0.004]])
    return np.concatenate([near[:, 0] + center[0], x]), np.concatenate([near[:, 1] + center[1], y])


@jax.jit
def _evaluate(profile, x, y):
    """All lensing quantities in one compiled call (cached per profile type)."""
    return (
        profile.deflection(x, y),
        profile.potential(x, y),
        profile.convergence(x, y),
        (profile.hessian(x, y)),
    )


def _assert_close(got, ref, rtol=RTOL, atol=1e-12):
    """Componentwise agreement relative to the per-point size of the vector/tensor."""
    got = np.stack([np.asarray(g) for g in got])
    ref = np.stack([np.asarray(r) for r in ref])
    scale = np.max(np.abs(ref), axis=0)
    err = np.max(np.abs(got - ref), axis=0)
    bad = err > rtol * scale + atol
    assert not bad.any(), f"max rel err {np.max(err / (scale + 1e-300)):.2e} at {np.where(bad)}"


def _compare(ours, lt_model, kwargs, x, y, rtol=RTOL, atol=1e-12, hessian=True):
    _assert_close(
        ours.deflection(jnp.asarray(x), jnp.asarray(y)), lt_model.alpha(x, y, kwargs), rtol, atol
    )
    _assert_close([ours.potential(x, y)], [lt_model.potential(x, y, kwargs)], rtol, atol)
    if hessian:
        _assert_close([ours.convergence(x, y)], [lt_model.kappa(x, y, kwargs)], rtol, atol)
        _assert_close(ours.hessian(x, y), lt_model.hessian(x, y, kwargs), rtol, atol)


def _random_ellipticity(rng, e_max):
    e = rng.uniform(0, e_max)
    phi = rng.uniform(0, np.pi)
    return float(e * np.cos(2 * phi)), float(e * np.sin(2 * phi))


def test_epl_matches_lenstronomy_random_parameters():
    from lenstronomy.LensModel.lens_model import LensModel

    lt = LensModel(["EPL"])
    rng = np.random.default_rng(42)
    gammas = [1.2, 1.35, 1.6, 1.9, 2.0, 2.2, 2.5, 2.8]
    for i, gamma in enumerate(gammas):
        e1, e2 = _random_ellipticity(rng, 0.5) if i % 3 else (0.35, -0.35)  # |e| ~ 0.49
        kw = dict(
            theta_E=float(rng.uniform(0.3, 2.0)),
            gamma=gamma,
            e1=e1,
            e2=e2,
            center_x=float(rng.normal(0, 0.2)),
            center_y=float(rng.normal(0, 0.2)),
        )
        x, y = _positions(rng, (kw["center_x"], kw["center_y"]))
        _compare(EPL(**kw), lt, [kw], x, y)
    # the centre itself: zero deflection and potential, lenstronomy's floored convergence
    kw = dict(theta_E=1.0, gamma=2.3, e1=0.2, e2=0.1)
    np.testing.assert_allclose(EPL(**kw).convergence(0.0, 0.0), lt.kappa(0.0, 0.0, [kw]), rtol=RTOL)


def test_epl_round_and_high_ellipticity():
    from lenstronomy.LensModel.lens_model import LensModel

    lt = LensModel(["EPL"])
    rng = np.random.default_rng(7)
    x, y = _positions(rng, (0.0, 0.0))
    for kw in (
        dict(theta_E=1.2, gamma=1.7, e1=0.0, e2=0.0),
        dict(theta_E=1.2, gamma=2.4, e1=1e-9, e2=0.0),
        dict(theta_E=0.8, gamma=2.1, e1=-0.5, e2=0.45),  # |e| = 0.67
    ):
        _compare(EPL(**kw), lt, [kw], x, y)


def test_sie_matches_lenstronomy():
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LensModel.Profiles.sie import SIE as LtSIE

    lt_nie = LensModel(["SIE"])  # default: NIE with a 1e-10 arcsec core
    rng = np.random.default_rng(3)
    for _ in range(5):
        e1, e2 = _random_ellipticity(rng, 0.5)
        kw = dict(theta_E=float(rng.uniform(0.3, 2)), e1=e1, e2=e2, center_x=0.1, center_y=-0.2)
        x = rng.uniform(-2.5, 2.5, 50) + 0.1
        y = rng.uniform(-2.5, 2.5, 50) - 0.2
        # lenstronomy's SIE hessian is a 1e-10 finite difference (~1e-6 accurate); see below
        _compare(SIE(**kw), lt_nie, [kw], x, y, hessian=False)
        # near and at the centre, and the hessian: lenstronomy's SIE(NIE=False) = EPL gamma=2
        lt_epl = LtSIE(NIE=False)
        xc, yc = _positions(rng, (0.1, -0.2), n=20)
        alpha, psi, _, hess = _evaluate(SIE(**kw), jnp.asarray(xc), jnp.asarray(yc))
        _assert_close(alpha, lt_epl.derivatives(xc, yc, **kw))
        _assert_close([psi], [lt_epl.function(xc, yc, **kw)])
        _assert_close(hess, lt_epl.hessian(xc, yc, **kw))
    # round SIE and e = 0 exactly
    kw = dict(theta_E=1.1, e1=0.0, e2=0.0)
    x, y = _positions(rng, (0.0, 0.0))
    _compare(SIE(**kw), lt_nie, [kw], x[5:], y[5:], hessian=False)


def test_sis_and_shear_match_lenstronomy():
    from lenstronomy.LensModel.lens_model import LensModel

    rng = np.random.default_rng(5)
    x, y = _positions(rng, (0.3, -0.1))
    kw = dict(theta_E=1.3, center_x=0.3, center_y=-0.1)
    _compare(SIS(**kw), LensModel(["SIS"]), [kw], x, y)
    kw = dict(gamma1=0.04, gamma2=-0.07, ra_0=0.2, dec_0=0.1)
    _compare(ExternalShear(**kw), LensModel(["SHEAR"]), [kw], x, y)


def test_profiles_are_consistent_with_each_other():
    x = jnp.linspace(-2, 2, 41)
    y = 0.3 * x[::-1] + 0.05
    for a, b in [
        (EPL(1.1, 2.0, 0.2, -0.1), SIE(1.1, 0.2, -0.1)),
        (EPL(1.1, 2.0), SIS(1.1)),
        (SIE(1.1), SIS(1.1)),
    ]:
        for fa, fb in zip(a.deflection(x, y), b.deflection(x, y), strict=True):
            np.testing.assert_allclose(fa, fb, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.potential(x, y), b.potential(x, y), rtol=1e-12)


@pytest.mark.parametrize(
    "profile",
    [
        EPL(1.2, 1.45, 0.3, -0.2, 0.1, 0.05),
        EPL(0.9, 2.6, -0.1, 0.15),
        EPL(1.0, 1.8),
        SIE(1.3, 0.25, 0.1, -0.1, 0.2),
        SIS(0.7, 0.1, 0.1),
        ExternalShear(0.05, -0.03, 0.2, 0.1),
    ],
    ids=["epl-shallow", "epl-steep", "epl-round", "sie", "sis", "shear"],
)
def test_autodiff_identities(profile):
    """deflection = grad(potential); hessian = jacobian(deflection); kappa = tr(H)/2."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-2, 2, 25))
    y = jnp.asarray(rng.uniform(-2, 2, 25))
    grad_pot = jax.jit(jax.vmap(jax.grad(profile.potential, argnums=(0, 1))))(x, y)
    for got, ref in zip(grad_pot, profile.deflection(x, y), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda a, b: jnp.stack(profile.deflection(a, b)), (0, 1))))(
        x, y
    )
    f_xx, f_xy, f_yx, f_yy = jax.jit(profile.hessian)(x, y)
    np.testing.assert_allclose(jac[0][:, 0], f_xx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jac[1][:, 0], f_xy, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jac[0][:, 1], f_yx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(jac[1][:, 1], f_yy, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        profile.convergence(x, y), 0.5 * (jac[0][:, 0] + jac[1][:, 1]), rtol=1e-9, atol=1e-12
    )


_XG = jnp.array([0.7, -1.3, 0.2, 1.9])
_YG = jnp.array([-0.4, 0.8, 1.5, 0.3])


@jax.jit
def _epl_loss(theta_E, gamma, e1, e2, cx, cy):
    ax, ay = EPL(theta_E, gamma, e1, e2, cx, cy).deflection(_XG, _YG)
    return jnp.sum(ax**2 + 0.5 * ay)


@pytest.mark.parametrize(
    "params",
    [(1.2, 2.3, 0.2, -0.15, 0.05, -0.02), (1.0, 1.5, 0.0, 0.0, 0.0, 0.0)],
    ids=["elliptical", "round"],
)
def test_epl_parameter_gradients_match_finite_differences(params):
    check_grads(_epl_loss, params, order=1, modes=["fwd", "rev"], eps=1e-5, atol=1e-6, rtol=1e-6)


def test_epl_second_derivatives_are_finite_and_symmetric():
    """Second derivatives (e.g. for Laplace approximations) via forward-over-reverse."""
    hess = jax.jit(jax.hessian(_epl_loss, argnums=(1, 2)))(1.2, 2.3, 0.2, -0.15, 0.05, -0.02)
    h = np.array([[float(hess[i][j]) for j in range(2)] for i in range(2)])
    assert np.all(np.isfinite(h))
    assert h[0, 1] == pytest.approx(h[1, 0], rel=1e-8)
    # compare d^2/dgamma^2 with a finite difference of the gradient
    g = jax.jit(jax.grad(_epl_loss, argnums=1))
    fd = g(1.2, 2.3 + 1e-5, 0.2, -0.15, 0.05, -0.02) - g(1.2, 2.3 - 1e-5, 0.2, -0.15, 0.05, -0.02)
    assert h[0, 0] == pytest.approx(float(fd) / 2e-5, rel=1e-5)


def test_gradients_are_finite_at_the_centre_and_for_round_lenses():
    def loss(p, x, y):
        ax, ay = EPL(*p).deflection(x, y)
        return ax + ay + EPL(*p).potential(x, y)

    grad = jax.jit(jax.grad(loss))
    for p in [(1.0, 2.0, 0.0, 0.0, 0.0, 0.0), (1.0, 1.4, 0.1, 0.0, 0.0, 0.0)]:
        p = tuple(jnp.asarray(v) for v in p)
        for xy in [(0.0, 0.0), (1e-9, 0.0), (0.5, 0.5)]:
            g = grad(p, *xy)
            assert all(np.isfinite(v) for v in g), (p, xy, g)
    g = jax.grad(lambda e: SIE(1.0, e, 0.0).deflection(0.5, 0.3)[0])(0.0)
    ap = SIE(1.0, 1e-6, 0.0).deflection(0.5, 0.3)[0]
    am = SIE(1.0, -1e-6, 0.0).deflection(0.5, 0.3)[0]
    fd = (ap - am) / 2e-6
    assert float(g) == pytest.approx(float(fd), rel=1e-6)


def test_float32_agrees_with_float64():
    x64 = jnp.linspace(-2, 2, 101)
    y64 = 0.5 * jnp.cos(3 * x64)
    params = (1.2, 2.2, 0.3, -0.2, 0.05, 0.0)
    deflection = jax.jit(lambda p, x, y: p.deflection(x, y))
    a64 = deflection(EPL(*params), x64, y64)
    p32 = [jnp.float32(v) for v in params]
    a32 = deflection(EPL(*p32), x64.astype(jnp.float32), y64.astype(jnp.float32))
    assert a32[0].dtype == jnp.float32
    np.testing.assert_allclose(a32[0], a64[0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(a32[1], a64[1], rtol=2e-5, atol=2e-6)


def test_ray_shoot_sums_deflections_and_works_under_jit_and_vmap():
    mass = (EPL(1.1, 2.1, 0.1, 0.05), ExternalShear(0.03, -0.01))
    x, y = jnp.array([0.5, -1.0]), jnp.array([1.0, 0.2])
    bx, by = jax.jit(ray_shoot)(x, y, mass)
    a1, a2 = _evaluate(mass[0], x, y)[0], _evaluate(mass[1], x, y)[0]
    np.testing.assert_allclose(bx, x - a1[0] - a2[0])
    np.testing.assert_allclose(by, y - a1[1] - a2[1])
    np.testing.assert_allclose(ray_shoot(x, y, ())[0], x)
    batch = jax.tree_util.tree_map(lambda v: jnp.stack([v, v * 1.01]), mass)
    out = jax.jit(jax.vmap(lambda m: ray_shoot(x, y, m)))(batch)
    assert out[0].shape == (2, 2)
    np.testing.assert_allclose(out[0][0], bx)


def test_shear_parameter_gradients_match_finite_differences():
    def loss(g1, g2):
        bx, by = ray_shoot(_XG, _YG, ExternalShear(g1, g2))
        return jnp.sum(bx**2 + 0.3 * by**3)

    check_grads(loss, (0.03, -0.05), order=2, modes=["fwd", "rev"], eps=1e-5, atol=1e-7, rtol=1e-7)
