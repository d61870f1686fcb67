"""Lens and galaxy models: priors, reparameterisations, sites, simulation consistency."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

from vaelens.models import (
    GalaxyPriors,
    LensLightPriors,
    LensPriors,
    LensSpec,
    SourcePriors,
    blob_decoder,
    ellipticity_from_raw,
    galaxy_model,
    lens_model,
    raw_from_ellipticity,
    simulate_lens,
)

DECODER = blob_decoder()


def _trace(model, *args, key=0, **kwargs):
    return handlers.trace(handlers.seed(model, jax.random.PRNGKey(key))).get_trace(*args, **kwargs)


def test_priors_are_frozen_printable_and_validated():
    p = LensPriors(theta_E=1.3)
    assert "theta_E=1.3" in repr(p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.theta_E = 2.0  # type: ignore[misc]
    assert dataclasses.replace(p, gamma_scale=0.1).gamma_scale == 0.1
    with pytest.raises(ValueError):
        LensPriors(theta_E=-1.0)
    with pytest.raises(ValueError):
        LensPriors(gamma_low=2.1)
    with pytest.raises(ValueError):
        SourcePriors(size=0.0)
    with pytest.raises(ValueError):
        LensSpec(mass_profile="nfw")
    d = LensPriors(theta_E=1.3).distributions()
    assert float(jnp.exp(d["theta_E"].loc)) == pytest.approx(1.3)
    assert set(SourcePriors(angle_scale=0.3).distributions()) >= {"z", "source_angle"}
    assert "light_center_x" not in LensLightPriors().distributions()
    assert "light_center_x" in LensLightPriors(tie_center=False).distributions()


def test_ellipticity_map_bounded_and_invertible():
    u = jax.random.normal(jax.random.PRNGKey(0), (2, 1000)) * 3.0
    e1, e2 = ellipticity_from_raw(u[0], u[1])
    assert float(jnp.max(jnp.hypot(e1, e2))) < 1.0
    r1, r2 = raw_from_ellipticity(e1[:100], e2[:100])
    np.testing.assert_allclose(r1, u[0, :100], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(r2, u[1, :100], rtol=1e-6, atol=1e-8)
    # identity to first order and a finite gradient at zero
    e1s, _ = ellipticity_from_raw(jnp.asarray(1e-3), jnp.asarray(0.0))
    assert float(e1s) == pytest.approx(1e-3, rel=1e-6)
    g = jax.grad(lambda a: ellipticity_from_raw(a, 0.0)[0])(0.0)
    assert float(g) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "spec",
    [
        LensSpec(supersampling=1, save_model_image=True),
        LensSpec(mass_profile="sie", include_shear=False, supersampling=1),
        LensSpec(source_model="sersic", include_lens_light=True, supersampling=1),
    ],
    ids=["epl-vae", "sie-noshear", "sersic-lenslight"],
)
def test_lens_model_sites(spec):
    data, truth = simulate_lens(
        jax.random.PRNGKey(0), spec, decoder=DECODER, shape=(16, 16), pixel_scale=0.1
    )
    tr = _trace(lens_model, data, spec, DECODER)
    for name in spec.parameter_names():
        assert name in tr, name
        assert name in truth
    assert tr["obs"]["is_observed"]
    assert ("gamma" in tr) == (spec.mass_profile == "epl")
    assert ("gamma1" in tr) == spec.include_shear
    if spec.source_model == "vae":
        assert tr["z"]["value"].shape == (64,)
        assert tr["source"]["value"].shape == (64, 64)
        assert tr["e1"]["type"] == "deterministic"
    assert ("model_image" in tr) == spec.save_model_image


def test_simulated_truth_is_the_model_mean():
    """Conditioned on the truth, the model's mean image equals the simulated noise-free image,
    and the normalised residuals of the mock data are standard normal."""
    spec = LensSpec(supersampling=2, save_model_image=True)
    data, truth = simulate_lens(
        jax.random.PRNGKey(3), spec, decoder=DECODER, shape=(30, 30), pixel_scale=0.06,
        truth={"source_amp": 20.0},
    )
    latent = {k: truth[k] for k in ("theta_E", "gamma", "e1_raw", "e2_raw", "center_x",
                                    "center_y", "gamma1", "gamma2", "z", "source_center_x",
                                    "source_center_y", "source_size", "source_amp")}
    tr = handlers.trace(handlers.substitute(handlers.seed(lens_model, 0), data=latent)).get_trace(
        data, spec, DECODER
    )
    # the model renders through a compiled program, the simulation eagerly: equal to rounding
    np.testing.assert_allclose(tr["model_image"]["value"], truth["model_image"], rtol=1e-10,
                               atol=1e-12 * np.max(truth["model_image"]))
    np.testing.assert_allclose(tr["e1"]["value"], truth["e1"], rtol=1e-10)
    np.testing.assert_allclose(tr["source"]["value"].sum(), truth["source_amp"], rtol=1e-8)
    resid = (data.image - truth["model_image"]) / np.sqrt(
        np.asarray(data.variance(truth["model_image"]))
    )
    assert abs(resid.mean()) < 0.15 and abs(resid.std() - 1.0) < 0.1
    # a lensed source is visible above the noise
    assert truth["model_image"].max() > 10 * data.bkg_rms


def test_source_amp_is_total_flux_and_masks_apply():
    """Unlensed (no mass) the image flux equals source_amp; masked pixels leave the likelihood."""
    spec = LensSpec(supersampling=2)
    data, truth = simulate_lens(
        jax.random.PRNGKey(4), spec, decoder=DECODER, shape=(48, 48), pixel_scale=0.05,
        truth={"theta_E": 1e-6, "gamma1": 0.0, "gamma2": 0.0, "source_center_x": 0.0,
               "source_center_y": 0.0},
    )
    assert truth["model_image"].sum() == pytest.approx(truth["source_amp"], rel=2e-3)
    mask = np.ones(data.shape, bool)
    mask[:10] = False
    masked = dataclasses.replace(data, mask=mask)
    tr = _trace(lens_model, masked, spec, DECODER)
    lp = tr["obs"]["fn"].log_prob(tr["obs"]["value"])
    assert np.all(np.asarray(lp)[:10] == 0.0) and np.all(np.asarray(lp)[10:] != 0.0)


def test_simulate_rejects_unknown_truth():
    with pytest.raises(ValueError, match="unknown truth"):
        simulate_lens(jax.random.PRNGKey(0), LensSpec(), decoder=DECODER, truth={"kappa": 1.0})


def test_galaxy_model_native_scale_reproduces_decoder():
    z = jax.random.normal(jax.random.PRNGKey(5), (64,))
    img = 50.0 * DECODER(z)
    latent = {"z": z, "flux": 50.0, "center_x": 0.0, "center_y": 0.0}
    tr = handlers.trace(
        handlers.substitute(handlers.seed(galaxy_model, 0), data=latent)
    ).get_trace(img, 1e-4, DECODER)
    np.testing.assert_allclose(tr["model_image"]["value"], img, rtol=1e-6, atol=1e-10)
    tr2 = _trace(galaxy_model, img, 1e-4, DECODER, priors=GalaxyPriors(fit_size=True,
                                                                      fit_angle=True))
    assert {"size", "angle", "flux", "z"} <= set(tr2)


def test_lens_model_takes_the_data_as_a_jit_argument_and_does_not_keep_it_alive():
    """ImageData is a pytree: lens_model gives the same image eagerly (one compiled render)
    and with the data as an argument of jit / grad, one trace serves other pixels of the same
    shape (never a stale image), another spec renders differently, and no cache keeps the
    data object alive."""
    import gc
    import weakref

    spec = LensSpec(supersampling=1, save_model_image=True)
    data, truth = simulate_lens(
        jax.random.PRNGKey(5), spec, decoder=DECODER, shape=(16, 16), pixel_scale=0.1
    )
    names = ("theta_E", "gamma", "e1_raw", "e2_raw", "center_x", "center_y", "gamma1",
             "gamma2", "z", "source_center_x", "source_center_y", "source_size", "source_amp")
    latent = {k: jnp.asarray(truth[k]) for k in names}
    traces = []

    def run(d, values, s=spec):
        traces.append(1)
        model = handlers.substitute(handlers.seed(lens_model, 0), data=values)
        tr = handlers.trace(model).get_trace(d, s, DECODER)
        return tr["model_image"]["value"], tr["obs"]["fn"].log_prob(tr["obs"]["value"]).sum()

    eager, lp1 = run(data, latent)
    np.testing.assert_allclose(eager, truth["model_image"], rtol=1e-10,
                               atol=1e-12 * np.max(truth["model_image"]))
    compiled = jax.jit(run)
    jitted, lp_jit = compiled(data, latent)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    np.testing.assert_allclose(lp_jit, lp1, rtol=1e-8)
    grad = jax.grad(lambda d, v: run(d, v)[1], argnums=1)(data, latent)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(grad))
    # other pixels of the same shape: the same compiled program, the new pixels
    brighter = dataclasses.replace(data, image=np.asarray(data.image) * 2.0)
    n_traces = len(traces)
    _, lp2 = compiled(brighter, latent)
    assert len(traces) == n_traces  # no new trace
    _, lp2_eager = run(brighter, latent)
    np.testing.assert_allclose(lp2, lp2_eager, rtol=1e-8)
    assert float(lp1) != float(lp2)
    # another spec: another render
    other = run(data, latent, dataclasses.replace(spec, supersampling=2))[0]
    assert not np.allclose(np.asarray(other), np.asarray(eager), rtol=1e-8)
    ref = weakref.ref(data)
    del data, brighter
    gc.collect()
    assert ref() is None


def test_image_data_is_a_frozen_pytree():
    data, _ = simulate_lens(
        jax.random.PRNGKey(5), LensSpec(supersampling=1), decoder=DECODER, shape=(12, 12),
        pixel_scale=0.1,
    )
    leaves, treedef = jax.tree_util.tree_flatten(data)
    assert any(leaf is data.image for leaf in leaves) and any(leaf is data.mask for leaf in leaves)
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, type(data)) and back.grid == data.grid
    for name in ("image", "mask", "psf", "bkg_rms", "exposure_time"):
        np.testing.assert_array_equal(np.asarray(getattr(back, name)),
                                      np.asarray(getattr(data, name)))
    doubled = jax.tree_util.tree_map(lambda a: a, data)
    np.testing.assert_array_equal(doubled.variance(data.image), data.variance(data.image))
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.image = np.zeros((12, 12))


def test_model_error_term_adds_fractional_variance():
    """With ``model_error``, each pixel's likelihood is Normal(model, sqrt(var + (f model)^2))."""
    from scipy import stats

    spec = LensSpec(supersampling=2, save_model_image=True)
    data, truth = simulate_lens(
        jax.random.PRNGKey(5), spec, decoder=DECODER, shape=(24, 24), pixel_scale=0.08,
        truth={"source_amp": 20.0},
    )
    latent = {k: truth[k] for k in ("theta_E", "gamma", "e1_raw", "e2_raw", "center_x",
                                    "center_y", "gamma1", "gamma2", "z", "source_center_x",
                                    "source_center_y", "source_size", "source_amp")}
    frac = 0.07
    err_spec = dataclasses.replace(spec, model_error=0.05)
    assert err_spec.parameter_names()[-1] == "model_error_frac"
    tr = handlers.trace(
        handlers.substitute(handlers.seed(lens_model, 0), data={**latent, "model_error_frac": frac})
    ).get_trace(data, err_spec, DECODER)
    model = np.asarray(tr["model_image"]["value"])
    sd = np.sqrt(np.asarray(data.variance(model)) + (frac * model) ** 2)
    expected = stats.norm.logpdf(data.image, model, sd).sum()
    assert float(tr["obs"]["fn"].log_prob(tr["obs"]["value"]).sum()) == pytest.approx(
        expected, rel=1e-9
    )
    prior = tr["model_error_frac"]["fn"]
    assert float(prior.log_prob(frac)) == pytest.approx(
        stats.lognorm.logpdf(frac, 1.0, scale=0.05), rel=1e-9
    )
    assert "model_error_frac" not in _trace(lens_model, data, spec, DECODER)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="model_error"):
            LensSpec(model_error=bad)
