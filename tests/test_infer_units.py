"""Unit tests of the inference machinery on cheap models (optimiser, Laplace, HMC, diagnostics)."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from vaelens.infer import (
    ConvergenceWarning,
    bfgs_minimize,
    diagnostics,
    hmc,
    map_fit,
    nuts,
    reconstruct,
    staged_map_fit,
)
from vaelens.infer.mcmc import whitening


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_bfgs_rosenbrock_vmapped():
    x0 = jnp.array([[-1.2, 1.0, 0.5, -0.3], [2.0, -1.0, 0.0, 1.5]])
    solve = jax.jit(jax.vmap(lambda x: bfgs_minimize(rosenbrock, x, max_iter=500, gtol=1e-8)))
    st = solve(x0)
    np.testing.assert_allclose(st.x, 1.0, atol=1e-5)
    assert bool(jnp.all(st.converged))
    assert np.all(np.asarray(st.iteration) < 500)


def test_bfgs_recovers_from_nonfinite_trial_steps():
    # log barrier: steps that leave x > 0 return inf / nan and must be backtracked
    def f(x):
        return jnp.sum(x - jnp.log(x))  # minimum at x = 1

    st = bfgs_minimize(f, jnp.array([0.01, 30.0]), max_iter=200, gtol=1e-10, ftol=0.0)
    np.testing.assert_allclose(st.x, 1.0, atol=1e-6)


def test_masked_bfgs_solver_holds_fixed_coordinates_and_limits():
    from vaelens.infer import bfgs_solver

    x0 = jnp.array([-1.2, 0.7, 0.5, -0.3])
    mask = jnp.array([True, False, True, True])
    solve = jax.jit(bfgs_solver(rosenbrock, 2000, 1e-9))
    x, f, ok, nit, _, g, aux = solve(x0, 2000, mask)
    assert aux is None and bool(ok)
    assert float(x[1]) == float(x0[1])  # never moved, bit for bit
    assert float(g[1]) == 0.0
    # the free coordinates minimise the conditional objective
    def cond(free):
        return rosenbrock(jnp.concatenate([free[:1], x0[1:2], free[1:]]))

    ref = bfgs_minimize(cond, x0[jnp.array([0, 2, 3])], max_iter=2000, gtol=1e-9)
    np.testing.assert_allclose(x[jnp.array([0, 2, 3])], ref.x, rtol=1e-6, atol=1e-6)
    # limit 0 returns the start; limit 1 evaluates value and gradient at the start
    x, f, *_ = solve(x0, 0, None)
    np.testing.assert_array_equal(x, x0)
    x, f, _, nit, _, g, _ = solve(x0, 1, None)
    np.testing.assert_array_equal(x, x0)
    assert int(nit) == 1
    np.testing.assert_allclose(f, rosenbrock(x0), rtol=1e-12)
    np.testing.assert_allclose(g, jax.grad(rosenbrock)(x0), rtol=1e-12)


def test_bfgs_minimize_carries_the_auxiliary_output_of_its_point():
    def f(x):
        return jnp.sum((x - 2.0) ** 2), {"twice": 2.0 * x}

    st = bfgs_minimize(f, jnp.array([0.0, 5.0]), max_iter=100, gtol=1e-10, has_aux=True)
    np.testing.assert_allclose(st.x, 2.0, atol=1e-8)
    np.testing.assert_array_equal(st.aux["twice"], 2.0 * st.x)


def gaussian_model(y=None):
    """Conjugate model: mu ~ N(0, 10), log_s ~ N(0, 1) fixed-ish data; posterior known."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("twice_mu", 2 * mu)
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


Y = np.random.default_rng(0).normal(3.0, 1.0, size=200)


def linear_model(y):
    """y ~ N(a + b t, 0.5): Gaussian posterior, Laplace exact."""
    t = jnp.linspace(-1, 1, y.shape[0])
    a = numpyro.sample("a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(a + b * t, 0.5), obs=y)


@pytest.mark.parametrize("method", ["bfgs", "lbfgs"])
def test_map_fit_laplace_is_exact_for_a_gaussian_posterior(method):
    t = np.linspace(-1, 1, 50)
    y = 1.0 + 2.0 * t + 0.5 * np.random.default_rng(1).normal(size=50)
    res = map_fit(linear_model, y, key=jax.random.PRNGKey(0), num_starts=3, method=method,
                  gtol=1e-8)
    # exact posterior: precision = X^T X / 0.25 + I / 100
    x = np.stack([np.ones_like(t), t], axis=1)
    prec = x.T @ x / 0.25 + np.eye(2) / 100.0
    cov = np.linalg.inv(prec)
    mean = cov @ (x.T @ y / 0.25)
    vals = res.summary_values()
    np.testing.assert_allclose([vals["a"], vals["b"]], mean, rtol=1e-5)
    np.testing.assert_allclose(res.cov, cov, rtol=1e-4, atol=1e-10)
    assert res.losses.shape == (3,) and res.loss == pytest.approx(res.losses.min())
    assert res.chi2 == pytest.approx(np.sum(((y - x @ mean) / 0.5) ** 2), rel=1e-5)
    assert res.num_pixels == 50
    idata = res.to_inference_data(jax.random.PRNGKey(1), num_samples=400)
    assert idata.posterior.sizes["draw"] == 400
    assert abs(float(idata.posterior["a"].mean()) - mean[0]) < 4 * np.sqrt(cov[0, 0] / 400) * 3


def ellipse_model(y):
    """A raw-ellipticity pair barely constrained by the data (wide Laplace draws)."""
    e1_raw = numpyro.sample("e1_raw", dist.Normal(0.0, 10.0))
    e2_raw = numpyro.sample("e2_raw", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(e1_raw + e2_raw, 30.0), obs=y)


def test_laplace_inference_data_chains_and_capped_ellipticities():
    res = map_fit(ellipse_model, np.zeros(3), key=jax.random.PRNGKey(0), num_starts=2)
    key = jax.random.PRNGKey(4)
    idata = res.to_inference_data(key, num_samples=3 * 40, num_chains=3, log_likelihood=False)
    post = idata.posterior
    assert dict(post.sizes) == {"chain": 3, "draw": 40}
    assert "log_likelihood" not in idata.groups()
    assert idata.attrs["method"] == "map_bfgs_laplace"
    assert idata.attrs["num_starts"] == 2 and idata.attrs["map_loss"] == pytest.approx(res.loss)
    # the draws are laplace_draws(first half of the key), in order, capped at |u| <= 3
    raw = res.laplace_draws(jax.random.split(key)[0], 120)
    u1, u2 = np.asarray(raw["e1_raw"], float), np.asarray(raw["e2_raw"], float)
    norm = np.hypot(u1, u2)
    assert np.any(norm > 3.0) and np.any(norm < 3.0)  # some capped, some not
    scale = np.minimum(1.0, 3.0 / norm)
    np.testing.assert_allclose(np.asarray(post["e1_raw"]).ravel(), u1 * scale, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(post["e2_raw"]).ravel(), u2 * scale, rtol=1e-12)
    assert np.all(np.hypot(post["e1_raw"], post["e2_raw"]) <= 3.0 + 1e-9)
    with pytest.raises(ValueError, match="multiple of num_chains"):
        res.to_inference_data(key, num_samples=10, num_chains=3)


def test_cap_covariance_caps_only_the_wide_directions(caplog):
    import logging

    from vaelens.infer import cap_covariance

    res = map_fit(ellipse_model, np.zeros(3), key=jax.random.PRNGKey(0), num_starts=2)
    w, v = np.linalg.eigh(res.cov_unconstrained)
    assert w.max() > 1.0  # the prior N(0, 10) leaves wide directions
    with caplog.at_level(logging.INFO, logger="vaelens"):
        capped = cap_covariance(res, max_variance=1.0)
    assert "capped" in caplog.text
    wc = np.linalg.eigvalsh(capped.cov_unconstrained)
    np.testing.assert_allclose(np.sort(wc), np.sort(np.minimum(w, 1.0)), rtol=1e-10)
    np.testing.assert_array_equal(capped.x, res.x)
    assert res.cov_unconstrained.max() > 1.0  # the input is untouched (frozen result)
    same = cap_covariance(res, max_variance=1e6)
    np.testing.assert_allclose(same.cov_unconstrained, res.cov_unconstrained, rtol=1e-10)
    nolap = map_fit(ellipse_model, np.zeros(3), key=jax.random.PRNGKey(0), num_starts=1,
                    laplace=False)
    assert cap_covariance(nolap) is nolap


def unsorted_model(y):
    """Latent sites traced in an order other than sorted by name, with several supports."""
    zz = numpyro.sample("zz", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    frac = numpyro.sample("frac", dist.Beta(2.0, 2.0))
    numpyro.deterministic("total", zz.sum())
    numpyro.sample("y", dist.Normal(zz.sum() * frac, scale), obs=y)


def test_svi_matches_the_guide_flat_order_to_the_model_order():
    from numpyro import handlers
    from numpyro.infer.autoguide import AutoMultivariateNormal

    from vaelens.infer.flat import flatten_model
    from vaelens.infer.svi import _guide_order

    y = np.array([0.3, -0.2, 0.5])
    fm = flatten_model(unsorted_model, (y,), key=jax.random.PRNGKey(0))
    guide = AutoMultivariateNormal(unsorted_model)
    handlers.seed(guide, 0)(y)
    perm = _guide_order(guide, fm.unconstrain, fm.site_shapes, fm.dim, jnp.float64)
    assert sorted(perm) == list(range(fm.dim)) and list(perm) != list(range(fm.dim))
    # a point in the model's flat order, permuted to the guide's, is the same point
    x = np.asarray(fm.init_flat[0])
    got = guide.median({"auto_loc": jnp.asarray(x[perm])})
    want = fm.constrain(fm.unravel(jnp.asarray(x)))
    for k in ("zz", "scale", "frac"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10)
    # svi runs from the MAP with it (here in chunks behind a progress bar: every step kept)
    from vaelens.infer import svi

    init = map_fit(unsorted_model, y, key=jax.random.PRNGKey(0), num_starts=2)
    idata = svi(unsorted_model, y, key=jax.random.PRNGKey(1), init=init, guide="mvn",
                num_steps=50, num_samples=20, log_likelihood=False, progress_bar=True)
    assert idata.posterior["zz"].shape == (1, 20, 3)
    assert len(idata.attrs["loss_history"]) == 50
    assert np.all(np.isfinite(idata.attrs["loss_history"]))


def test_potential_aux_is_the_numpyro_potential_with_chi2_and_sites():
    from vaelens.infer.flat import flatten_model

    fm = flatten_model(gaussian_model, (Y,), key=jax.random.PRNGKey(0), num_inits=5)
    for x in fm.init_flat:
        u, aux = jax.jit(fm.potential_aux)(x)
        # sigma is LogNormal: the log-Jacobian of exp enters both potentials
        np.testing.assert_allclose(u, fm.potential(x), rtol=1e-10)
        sites = fm.constrain(fm.unravel(x))
        assert set(aux["sites"]) == set(sites) == {"mu", "sigma", "twice_mu"}
        for k in sites:
            np.testing.assert_allclose(aux["sites"][k], sites[k], rtol=1e-12)
        chi2 = np.sum(((Y - sites["mu"]) / sites["sigma"]) ** 2)
        np.testing.assert_allclose(aux["chi2"], chi2, rtol=1e-10)
        assert int(aux["num_observed"]) == Y.size
    unc = fm.unconstrain({"sigma": 2.0})
    np.testing.assert_allclose(unc["sigma"], np.log(2.0))
    with pytest.raises(ValueError, match="unknown"):
        fm.unconstrain({"nope": 1.0})


def vector_model():
    numpyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    numpyro.sample("m", dist.Normal(jnp.zeros((2, 2)), 1.0).to_event(2))


def test_flatten_model_draws_and_numpy_layout():
    from vaelens.infer.flat import flatten_model

    key = jax.random.PRNGKey(3)
    now = flatten_model(vector_model, key=key, num_inits=4)
    again = flatten_model(vector_model, key=key, num_inits=4)
    assert now.dim == 8 and now.dtype == now.init_flat.dtype
    # the same key gives the same draws
    np.testing.assert_array_equal(np.asarray(again.init_flat), np.asarray(now.init_flat))
    assert list(now.site_shapes) == ["m", "s", "w"]  # flat order: sorted names
    assert now.site_slices == {"m": slice(0, 4), "s": slice(4, 5), "w": slice(5, 8)}
    x = np.asarray(now.init_flat)
    for row in x:
        ref = now.unravel(jnp.asarray(row))
        got = now.unravel_numpy(row)
        assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in ref.items()}
        for k in ref:
            np.testing.assert_array_equal(got[k], np.asarray(ref[k]))
    # a leading batch axis is kept
    assert now.unravel_numpy(x)["m"].shape == (4, 2, 2)
    assert now.unravel_numpy(x)["s"].shape == (4,)
    # draws differ between starts (they are prior draws, not copies)
    assert np.all(np.std(x, axis=0) > 0)


def test_flatten_model_errors_surface_at_the_call():
    from vaelens.infer.flat import flatten_model

    def empty():
        numpyro.deterministic("c", jnp.ones(2))

    with pytest.raises(ValueError, match="no latent sample sites"):
        flatten_model(empty, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="unknown sites"):
        flatten_model(vector_model, key=jax.random.PRNGKey(0), init_values={"q": 1.0})


def test_flat_model_takes_the_data_as_an_argument():
    """The array arguments of the model are kept apart: one compiled potential serves other
    data of the same shape, and gives what a flat model of those data gives."""
    from vaelens.infer.flat import flatten_model

    t = np.linspace(-1, 1, 30)
    y1 = 1.0 + 2.0 * t
    y2 = -0.5 + 0.3 * t
    fm1 = flatten_model(linear_model, (y1,), key=jax.random.PRNGKey(0), num_inits=3)
    fm2 = flatten_model(linear_model, (y2,), key=jax.random.PRNGKey(0), num_inits=3)
    assert len(fm1.arrays) == 1
    np.testing.assert_array_equal(np.asarray(fm1.arrays[0]), y1)
    traces = []

    def counted(x, arrays):
        traces.append(1)
        return fm1.potential_with(x, arrays)

    compiled = jax.jit(counted)
    for x in np.asarray(fm1.init_flat):
        np.testing.assert_allclose(compiled(x, fm1.arrays), fm1.potential(x), rtol=1e-12)
        np.testing.assert_allclose(compiled(x, fm2.arrays), fm2.potential(x), rtol=1e-12)
        assert float(fm1.potential(x)) != float(fm2.potential(x))
    assert len(traces) == 1  # traced once for both data sets
    # a model that reads the values of its data on the host gets them closed over instead
    def host_prior_model(y):
        centre = float(np.mean(np.asarray(y)))  # needs concrete data
        a = numpyro.sample("a", dist.Normal(centre, 1.0))
        numpyro.sample("y", dist.Normal(a, 0.5), obs=y)

    fm_host = flatten_model(host_prior_model, (y1,), key=jax.random.PRNGKey(0), num_inits=2)
    assert fm_host.arrays == []
    res = map_fit(host_prior_model, y1, key=jax.random.PRNGKey(0), num_starts=2)
    prec = 1.0 + y1.size / 0.25
    want = (np.mean(y1) + y1.sum() / 0.25) / prec
    np.testing.assert_allclose(res.summary_values()["a"], want, rtol=1e-6)
    # keyword arguments and static (non-array) arguments are kept too
    fm3 = flatten_model(gaussian_model, model_kwargs={"y": Y}, key=jax.random.PRNGKey(0))
    assert len(fm3.arrays) == 1 and fm3.arrays[0].shape == Y.shape


@pytest.mark.parametrize("method", ["bfgs", "lbfgs"])
def test_staged_map_fit_frees_the_fixed_sites_and_finds_the_exact_optimum(method):
    t = np.linspace(-1, 1, 50)
    y = 1.0 + 2.0 * t + 0.5 * np.random.default_rng(1).normal(size=50)
    res = staged_map_fit(linear_model, y, key=jax.random.PRNGKey(0), fixed={"b": 0.0},
                         num_starts=3, num_refine=2, gtol=1e-8, method=method)
    x = np.stack([np.ones_like(t), t], axis=1)
    prec = x.T @ x / 0.25 + np.eye(2) / 100.0
    mean = np.linalg.solve(prec, x.T @ y / 0.25)
    vals = res.summary_values()
    # b was held at 0 in stage 1 and is free (and at its optimum, ~2) after stage 2
    np.testing.assert_allclose([vals["a"], vals["b"]], mean, rtol=1e-5)
    assert res.losses.shape == (2,) and "stage1" in res.timings
    assert res.timings["total"] >= res.timings["stage1"]
    assert np.isfinite(res.chi2) and res.num_pixels == 50
    quick = map_fit(linear_model, y, key=jax.random.PRNGKey(0), num_starts=2, evaluate=False)
    assert np.isnan(quick.chi2) and quick.num_pixels == 0
    np.testing.assert_allclose(quick.summary_values()["b"], mean[1], rtol=1e-3)
    with pytest.raises(ValueError, match="num_refine"):
        staged_map_fit(linear_model, y, key=jax.random.PRNGKey(0), fixed={"b": 0.0},
                       num_refine=0)


SPLIT_STARTS = """
import json, sys
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
from test_infer_units import linear_model
from vaelens.infer import map_fit
y = 1.0 + 2.0 * np.linspace(-1, 1, 50) + 0.5 * np.random.default_rng(1).normal(size=50)
out = {"devices": jax.local_device_count()}
for n in (1, 2):
    r = map_fit(linear_model, y, key=jax.random.PRNGKey(0), num_starts=5, devices=n, gtol=1e-8)
    out[n] = {"losses": r.losses.tolist(), "points": r.final_points.tolist(), "x": r.x.tolist(),
              "cov": r.cov.tolist()}
print(json.dumps(out))
"""


def test_map_fit_splits_starts_over_host_devices():
    # two CPU host devices (set before JAX starts, so in a subprocess); 5 starts, padded to 6
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.run([sys.executable, "-c", SPLIT_STARTS, here], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    one, two = out["1"], out["2"]
    assert len(two["losses"]) == 5
    # the same starts reach the same optima, in the same order, on one device or two
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-10)
    np.testing.assert_allclose(two["points"], one["points"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(two["x"], one["x"], rtol=1e-8, atol=1e-10)
    # the finite-difference Laplace gradients split over the devices give the same covariance
    np.testing.assert_allclose(two["cov"], one["cov"], rtol=1e-8, atol=1e-14)


def test_gauss_newton_covariance_is_exact_for_a_linear_gaussian_model():
    from vaelens.infer.mcmc import gauss_newton_covariance

    t = np.linspace(-1, 1, 50)
    y = 1.0 + 2.0 * t + 0.5 * np.random.default_rng(1).normal(size=50)
    res = map_fit(linear_model, y, key=jax.random.PRNGKey(0), num_starts=2, gtol=1e-8)
    x = np.stack([np.ones_like(t), t], axis=1)
    cov = np.linalg.inv(x.T @ x / 0.25 + np.eye(2) / 100.0)
    np.testing.assert_allclose(gauss_newton_covariance(res), cov, rtol=1e-6, atol=1e-12)
    lmat = whitening(res, "gauss-newton")
    np.testing.assert_allclose(lmat @ lmat.T, cov, rtol=1e-6, atol=1e-12)
    # a scale that depends on the parameters adds its Fisher term 2 (d log sigma)^2
    res = map_fit(gaussian_model, Y, key=jax.random.PRNGKey(0), num_starts=2)
    sigma = float(res.params["sigma"])
    fisher = np.diag([Y.size / sigma**2, 2.0 * Y.size])  # (mu, log sigma)
    prior = np.diag([1.0 / 100.0, 1.0 / 0.25])  # N(0, 10) and LogNormal(0, 0.5) in log space
    np.testing.assert_allclose(gauss_newton_covariance(res), np.linalg.inv(fisher + prior),
                               rtol=1e-5, atol=1e-12)


def test_whitening_falls_back_to_laplace_for_non_finite_draws():
    res = map_fit(linear_model, Y[:20], key=jax.random.PRNGKey(0), num_starts=2)
    bad = az.from_dict(posterior={"a": np.full((1, 5), np.nan), "b": np.full((1, 5), np.nan)})
    with pytest.warns(RuntimeWarning, match="not finite"):
        lmat = whitening(res, bad)
    np.testing.assert_allclose(lmat @ lmat.T, res.cov_unconstrained, rtol=1e-6, atol=1e-12)


def test_map_fit_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        map_fit(linear_model, Y[:10], key=jax.random.PRNGKey(0), method="newton")
    with pytest.raises(ValueError, match="num_starts"):
        map_fit(linear_model, Y[:10], key=jax.random.PRNGKey(0), num_starts=0)
    with pytest.raises(ValueError, match="devices"):
        map_fit(linear_model, Y[:10], key=jax.random.PRNGKey(0), devices=0)


def _gaussian_model_posterior_mean() -> float:
    """Exact posterior mean of ``mu`` under :func:`gaussian_model` (quadrature over mu, sigma)."""
    from scipy import stats

    mu = np.linspace(Y.mean() - 1.0, Y.mean() + 1.0, 801)  # +-14 posterior sd
    sigma = np.linspace(0.6, 1.6, 801)  # the sample sd of Y is 0.97; +-7 posterior sd
    m, s = np.meshgrid(mu, sigma, indexing="ij")
    logp = (
        stats.norm.logpdf(m, 0.0, 10.0)
        + stats.lognorm.logpdf(s, 0.5)
        + stats.norm.logpdf(Y[:, None, None], m, s).sum(axis=0)
    )
    w = np.exp(logp - logp.max())
    return float(np.sum(w * m) / np.sum(w))


def test_hmc_and_nuts_on_a_known_posterior():
    """Both samplers return the promised InferenceData and the right posterior mean of mu."""
    init = map_fit(gaussian_model, Y, key=jax.random.PRNGKey(0), num_starts=2)
    post_mean = _gaussian_model_posterior_mean()
    for sampler in (nuts, hmc):
        idata = sampler(gaussian_model, Y, key=jax.random.PRNGKey(1), init=init,
                        num_warmup=200, num_samples=300, num_chains=2, progress_bar=False)
        assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(
            idata.groups()
        )
        assert {"mu", "sigma", "twice_mu"} <= set(idata.posterior.data_vars)
        assert idata.log_likelihood["y"].shape == (2, 300, 200)
        for stat in ("diverging", "energy", "lp", "acceptance_rate", "step_size", "chi2"):
            assert stat in idata.sample_stats, stat
        # the exact mean within 4 Monte-Carlo standard errors (a 6e-5 chance to fail if right)
        mcse = float(az.mcse(idata, var_names=["mu"])["mu"])
        err = float(idata.posterior["mu"].mean()) - post_mean
        assert abs(err) < 4.0 * mcse, (sampler.__name__, err / mcse)
        assert idata.attrs["method"] in ("nuts", "hmc") and "numpyro" in idata.attrs
    assert "tree_depth" in idata.sample_stats or idata.attrs["method"] == "hmc"


def _fake_idata(chains):
    draws = np.asarray(chains)
    n_chain, n_draw = draws.shape
    return az.from_dict(
        posterior={"theta_E": draws, "gamma": np.random.default_rng(2).normal(size=draws.shape)},
        sample_stats={
            "diverging": np.zeros(draws.shape, bool),
            "energy": np.random.default_rng(3).normal(size=draws.shape),
        },
    )


def test_diagnostics_warns_on_stuck_chains():
    rng = np.random.default_rng(0)
    # four chains stuck at different values: R-hat >> 1.01
    bad = np.stack([1.0 + 0.1 * k + 0.001 * rng.normal(size=500) for k in range(4)])
    with pytest.warns(ConvergenceWarning, match="R-hat"):
        d = diagnostics(_fake_idata(bad))
    assert not d.ok and d.summary.loc["theta_E", "r_hat"] > 1.1
    assert "R-hat" in d.to_string()


def test_diagnostics_warns_on_divergences_and_low_ess_but_passes_iid():
    rng = np.random.default_rng(1)
    idata = _fake_idata(rng.normal(size=(4, 1000)))
    with _no_warning():
        d = diagnostics(idata)
    assert d.ok and d.num_divergent == 0
    idata.sample_stats["diverging"][0, 5] = True
    with pytest.warns(ConvergenceWarning, match="divergent"):
        d = diagnostics(idata)
    assert d.num_divergent == 1
    short = _fake_idata(rng.normal(size=(2, 60)))
    with pytest.warns(ConvergenceWarning, match="ess_bulk"):
        diagnostics(short)


@pytest.mark.parametrize("method", ["svi_mvn", "map_bfgs_laplace"])
def test_diagnostics_of_independent_draws_skip_rhat_and_ess(method):
    rng = np.random.default_rng(0)
    # draws that would fail R-hat as MCMC chains; as guide or Laplace draws they are fine
    idata = _fake_idata(np.stack([1.0 + 0.1 * k + 0.001 * rng.normal(size=50) for k in range(4)]))
    idata.attrs["method"] = method
    with _no_warning():
        d = diagnostics(idata)
    assert d.ok and d.independent and d.method == method
    assert not {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} & set(d.summary.columns)
    assert {"mean", "sd"} <= set(d.summary.columns) and d.num_draws == 200
    assert "independent draws" in d.to_string() and "R-hat and ESS do not apply" in d.to_string()
    idata.attrs["method"] = "nuts"
    with pytest.warns(ConvergenceWarning, match="R-hat"):
        assert not diagnostics(idata).independent


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", ConvergenceWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_reconstruct_mean_and_std():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(2, 50, 8, 8))
    idata = az.from_dict(posterior={"source": src, "theta_E": rng.normal(size=(2, 50))})
    rec = reconstruct(idata)
    np.testing.assert_allclose(rec.mean["source"], src.reshape(100, 8, 8).mean(0))
    np.testing.assert_allclose(rec.std["source"], src.reshape(100, 8, 8).std(0, ddof=1))
    assert rec.num_draws == 100 and "model_image" not in rec.mean
    with pytest.raises(ValueError):
        reconstruct(idata, var_names=("nothing",))
