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
    from vaelens.infer.map import bfgs_solver

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


def test_flatten_model_background_draws_and_numpy_layout():
    from concurrent.futures import Future

    from vaelens.infer.flat import flatten_model

    key = jax.random.PRNGKey(3)
    now = flatten_model(vector_model, key=key, num_inits=4)
    later = flatten_model(vector_model, key=key, num_inits=4, background=True)
    assert isinstance(later.inits, Future) and not isinstance(now.inits, Future)
    assert later.dim == now.dim == 8 and later.dtype == now.init_flat.dtype
    # the same draws, whether computed at once or in the background thread
    np.testing.assert_array_equal(np.asarray(later.init_flat), np.asarray(now.init_flat))
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
        flatten_model(empty, key=jax.random.PRNGKey(0), background=True)
    with pytest.raises(ValueError, match="unknown sites"):
        flatten_model(vector_model, key=jax.random.PRNGKey(0), init_values={"q": 1.0})


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
