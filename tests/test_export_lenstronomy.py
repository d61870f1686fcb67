"""lenstronomy export: lenstronomy's ``ImageModel`` re-renders vaelens models and fits."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("lenstronomy")

from vaelens.export import FitPoint, export_lenstronomy  # noqa: E402
from vaelens.models import LensSpec, lens_components, render_lens, simulate_lens  # noqa: E402


def chi2(data, model, reference):
    """chi^2 of the data against ``model`` with the noise of ``reference`` (one noise model)."""
    var = np.asarray(data.variance(jnp.asarray(reference)))
    return float(np.sum(((data.image - model) ** 2 / var)[data.mask]))


def vaelens_image(data, spec, params, decoder):
    p = {k: jnp.asarray(v) for k, v in params.items()}
    return np.asarray(render_lens(data, spec, lens_components(p, spec, decoder)), np.float64)


def assert_same_rendering(data, ours, theirs, *, chi2_rtol=0.01, image_rtol=0.01):
    c_ours, c_theirs = chi2(data, ours, ours), chi2(data, theirs, ours)
    assert c_theirs == pytest.approx(c_ours, rel=chi2_rtol)
    sigma = np.sqrt(np.asarray(data.variance(jnp.asarray(ours))))
    assert np.max(np.abs(theirs - ours)) < image_rtol * np.max(ours)
    assert np.max(np.abs(theirs - ours) / sigma) < 0.1  # a tenth of the noise in every pixel


@pytest.fixture(scope="module")
def vae_mock():
    """A 50 x 50 mock (0.05"/px): EPL + shear, Sersic lens light, pretrained VAE source."""
    from vaelens.models.decoder import resolve_decoder

    decoder = resolve_decoder(None)
    spec = LensSpec(include_lens_light=True, supersampling=2)
    data, truth = simulate_lens(jax.random.PRNGKey(3), spec, None, decoder, shape=(50, 50))
    return data, spec, truth, decoder


def test_true_parameters_rerendered_by_lenstronomy(vae_mock):
    data, spec, truth, decoder = vae_mock
    ours = vaelens_image(data, spec, truth, decoder)
    out = export_lenstronomy(truth, data, spec)
    assert out.lens_model_list == ["EPL", "SHEAR"]
    assert out.lens_light_model_list == ["SERSIC_ELLIPSE"]
    assert out.source_light_model_list == ["INTERPOL"]
    src = out.kwargs_source[0]
    assert src["scale"] == pytest.approx(truth["source_size"] / 64)
    # INTERPOL's image is surface brightness: its total flux is the source flux
    assert np.sum(src["image"]) * src["scale"] ** 2 * src["amp"] == pytest.approx(
        truth["source_amp"], rel=1e-4
    )
    assert out.kwargs_numerics == {"supersampling_factor": 2, "supersampling_convolution": False}
    assert out.kwargs_data["exposure_time"] == data.exposure_time
    assert_same_rendering(data, ours, out.model_image())
    # a finer INTERPOL grid brings lenstronomy's bilinear interpolation closer to Keys cubic
    fine = export_lenstronomy(truth, data, spec, source_upsampling=4).model_image()
    assert np.max(np.abs(fine - ours)) < np.max(np.abs(out.model_image() - ours))


def test_sie_sersic_source_and_background_noise_rerendered():
    spec = LensSpec(
        mass_profile="sie", include_shear=False, source_model="sersic", include_lens_light=True,
        supersampling=3,
    )
    data, truth = simulate_lens(
        jax.random.PRNGKey(1), spec, {"source_n_sersic": 2.5, "light_n_sersic": 4.0},
        shape=(40, 40), pixel_scale=0.06, exposure_time=None,
    )
    out = export_lenstronomy(truth, data, spec)
    assert out.lens_model_list == ["SIE"] and out.source_light_model_list == ["SERSIC_ELLIPSE"]
    assert "noise_map" in out.kwargs_data  # background-only noise as a uniform noise map
    ours = vaelens_image(data, spec, truth, None)
    assert_same_rendering(data, ours, out.model_image(), chi2_rtol=1e-3, image_rtol=1e-3)


def test_psf_convolved_on_the_supersampled_grid():
    from vaelens.lensing import gaussian_psf

    spec = LensSpec(source_model="sersic", include_lens_light=True, supersampling=3,
                    convolve_supersampled=True)
    data, truth = simulate_lens(
        jax.random.PRNGKey(1), dataclasses.replace(spec, convolve_supersampled=False),
        shape=(40, 40), pixel_scale=0.06,
    )
    data = dataclasses.replace(data, psf=np.asarray(gaussian_psf(0.15, 0.02, 21)))
    out = export_lenstronomy(truth, data, spec)
    assert out.kwargs_psf["point_source_supersampling_factor"] == 3
    assert out.kwargs_numerics["supersampling_convolution"] is True
    ours = vaelens_image(data, spec, truth, None)
    assert_same_rendering(data, ours, out.model_image())


def test_real_map_fit_rerendered_by_lenstronomy(vae_mock):
    from vaelens.infer import fit_lens

    data, spec, _, decoder = vae_mock
    fit = fit_lens(
        data, spec, method="map", key=jax.random.PRNGKey(0), decoder=decoder, starts=2,
        samples=20, chains=1, progress_bar=False,
    )
    out = export_lenstronomy(fit)
    assert out.label == "MAP"
    assert out.kwargs_lens[0]["theta_E"] == pytest.approx(float(fit.map.params["theta_E"]))
    ours = vaelens_image(data, spec, fit.map.params, decoder)
    assert_same_rendering(data, ours, out.model_image())
    # the posterior mean of the draws (as for a sampler): the source is the mean source image
    from vaelens.export.point import posterior_mean

    mean = posterior_mean(fit.idata, spec)
    point = FitPoint(mean, data, spec, "posterior mean", fit.idata, "nuts")
    unit = mean["source"] / mean["source_amp"]
    ours_mean = vaelens_image(data, spec, {**mean, "z": np.zeros(1)}, lambda z: jnp.asarray(unit))
    assert_same_rendering(data, ours_mean, export_lenstronomy(point).model_image())


def test_bad_input(vae_mock):
    data, spec, truth, _ = vae_mock
    with pytest.raises(ValueError, match="data and spec"):
        export_lenstronomy(truth)
    with pytest.raises(ValueError, match="source_upsampling"):
        export_lenstronomy(truth, data, spec, source_upsampling=0)
    no_source = {k: v for k, v in truth.items() if k != "source"}
    with pytest.raises(ValueError, match="'source' image"):
        export_lenstronomy(no_source, data, spec)
    with pytest.raises(ValueError, match="lack gamma"):
        export_lenstronomy({k: v for k, v in truth.items() if k != "gamma"}, data, spec)
    sie = dataclasses.replace(spec, mass_profile="sie")
    assert export_lenstronomy(truth, data, sie).lens_model_list == ["SIE", "SHEAR"]
