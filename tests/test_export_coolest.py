"""COOLEST export: angle conventions against lenstronomy and coolest, the template read back by
coolest's own reader, its analysis tools against the model, and ``vaelens export`` on folders."""

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("coolest")
pytest.importorskip("lenstronomy")

from cli_util import assert_clean_error, run_cli
from coolest.api.profiles import light as coolest_light  # noqa: E402
from coolest.api.profiles import mass as coolest_mass  # noqa: E402

from vaelens.export import (  # noqa: E402
    FitPoint,
    ellipticity_from_coolest,
    ellipticity_to_coolest,
    export_coolest,
    shear_from_coolest,
    shear_to_coolest,
)
from vaelens.export.conventions import center_to_coolest, fold_angle  # noqa: E402
from vaelens.lensing import EPL, ExternalShear, Sersic  # noqa: E402
from vaelens.lensing.light.sersic import to_lenstronomy_sersic  # noqa: E402

RNG = np.random.default_rng(7)
E1, E2 = RNG.uniform(-0.5, 0.5, 50), RNG.uniform(-0.5, 0.5, 50)


# --------------------------------------------------------------------------- conventions
def test_ellipticity_matches_lenstronomy_coolest_interface_both_ways():
    from lenstronomy.Util import coolest_read_util as rd
    from lenstronomy.Util import coolest_update_util as up

    q, phi = ellipticity_to_coolest(E1, E2)
    for i in range(len(E1)):
        q_ref, phi_ref = up.e1e2_lenstronomy_to_qphi_coolest(E1[i], E2[i])
        assert q[i] == pytest.approx(q_ref, abs=1e-12)
        assert phi[i] == pytest.approx(phi_ref, abs=1e-9)
        e1_ref, e2_ref = rd.qphi_coolest_to_e1e2_lenstronomy(q[i], phi[i])
        e1, e2 = ellipticity_from_coolest(q[i], phi[i])
        assert (e1, e2) == pytest.approx((e1_ref, e2_ref), abs=1e-12)
    back = ellipticity_from_coolest(q, phi)
    np.testing.assert_allclose(back, (E1, E2), atol=1e-12)
    assert np.all((phi > -90) & (phi <= 90)) and np.all((q > 0) & (q <= 1))


def test_ellipticity_matches_lenstronomy_param_util():
    from lenstronomy.Util import param_util

    q, phi = ellipticity_to_coolest(E1, E2)
    phi_l, q_l = param_util.ellipticity2phi_q(E1, E2)
    np.testing.assert_allclose(q, q_l, atol=1e-12)
    # COOLEST angle = 90 deg - lenstronomy angle, modulo 180 deg
    d = (phi - (90.0 - np.degrees(phi_l))) % 180.0
    assert np.all(np.minimum(d, 180.0 - d) < 1e-9)
    e1, e2 = param_util.phi_q2_ellipticity(np.radians(90.0 - phi), q)
    np.testing.assert_allclose((e1, e2), (E1, E2), atol=1e-12)


@pytest.mark.parametrize(
    "e1, e2, phi",
    [
        (0.2, 0.0, 90.0),  # major axis along x: east-west
        (-0.2, 0.0, 0.0),  # along y: north-south
        (0.0, 0.2, 45.0),  # along x = y: north-east in COOLEST's frame (x_C = -x)
        (0.0, -0.2, -45.0),
    ],
)
def test_ellipticity_known_angles(e1, e2, phi):
    q, p = ellipticity_to_coolest(e1, e2)
    assert q == pytest.approx(0.8 / 1.2)
    assert p == pytest.approx(phi)


def test_shear_matches_lenstronomy_both_ways_and_known_cases():
    from lenstronomy.Util import coolest_read_util as rd
    from lenstronomy.Util import coolest_update_util as up
    from lenstronomy.Util import param_util

    g1, g2 = 0.1 * E1, 0.1 * E2
    g, phi = shear_to_coolest(g1, g2)
    for i in range(len(g1)):
        ref = up.g1g2_lenstronomy_to_gamma_phi_coolest(g1[i], g2[i])
        assert (g[i], phi[i]) == pytest.approx(ref)
        assert shear_from_coolest(g[i], phi[i]) == pytest.approx(
            rd.gamma_phi_coolest_to_g1_g2_lenstronomy(g[i], phi[i]), abs=1e-14
        )
    phi_l, g_l = param_util.shear_cartesian2polar(g1, g2)
    np.testing.assert_allclose(g, g_l, atol=1e-14)
    np.testing.assert_allclose(shear_from_coolest(g, phi), (g1, g2), atol=1e-14)
    assert shear_to_coolest(0.05, 0.0) == pytest.approx((0.05, 90.0))
    assert shear_to_coolest(0.0, 0.05) == pytest.approx((0.05, 45.0))


def test_fold_angle_and_bad_input():
    folded = fold_angle([90.0, 91.0, -90.0, 270.0, -89.0])
    np.testing.assert_allclose(folded, [90, -89, 90, 90, -89])
    with pytest.raises(ValueError, match="below 1"):
        ellipticity_to_coolest(0.8, 0.8)
    with pytest.raises(ValueError, match="q must be"):
        ellipticity_from_coolest(1.2, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        shear_from_coolest(-0.1, 0.0)


# ------------------------------------------ the converted profiles are the same in coolest.api
XY = RNG.uniform(-2.0, 2.0, (2, 200))


def test_pemd_and_shear_agree_with_coolest_api():
    e1, e2, theta_e, gamma, cx, cy = 0.12, -0.07, 1.1, 2.15, 0.05, -0.03
    epl = EPL(theta_e, gamma, e1, e2, cx, cy)
    x, y = XY
    q, phi = ellipticity_to_coolest(e1, e2)
    ccx, ccy = center_to_coolest(cx, cy)
    xc, yc = center_to_coolest(x, y)
    pemd = coolest_mass.PEMD()
    kw = dict(theta_E=theta_e, gamma=gamma, q=q, phi=phi, center_x=ccx, center_y=ccy)
    np.testing.assert_allclose(
        pemd.convergence(xc, yc, **kw), np.asarray(epl.convergence(jnp.array(x), jnp.array(y))),
        rtol=1e-10,
    )
    ax, ay = (np.asarray(a) for a in epl.deflection(jnp.array(x), jnp.array(y)))
    acx, acy = pemd.deflection(xc, yc, **kw)
    np.testing.assert_allclose((acx, acy), (-ax, ay), rtol=1e-6, atol=1e-9)  # x_C = -x
    shear = ExternalShear(0.04, -0.03)
    g, phig = shear_to_coolest(0.04, -0.03)
    sx, sy = (np.asarray(a) for a in shear.deflection(jnp.array(x), jnp.array(y)))
    scx, scy = coolest_mass.ExternalShear().deflection(xc, yc, gamma_ext=g, phi_ext=phig)
    np.testing.assert_allclose((scx, scy), (-sx, sy), atol=1e-12)


def test_sersic_agrees_with_coolest_api():
    amp, r, n, e1, e2, cx, cy = 2.0, 0.7, 3.5, 0.1, 0.06, 0.02, -0.04
    ours = Sersic(amp, r, n, e1, e2, cx, cy)
    x, y = XY
    i_eff, theta_eff = (float(v) for v in to_lenstronomy_sersic(amp, r, n))
    q, phi = ellipticity_to_coolest(e1, e2)
    ccx, ccy = center_to_coolest(cx, cy)
    xc, yc = center_to_coolest(x, y)
    ref = coolest_light.Sersic().evaluate_surface_brightness(
        xc, yc, I_eff=i_eff, theta_eff=theta_eff, n=n, phi=phi, q=q, center_x=ccx, center_y=ccy
    )
    np.testing.assert_allclose(
        ref, np.asarray(ours.surface_brightness(jnp.array(x), jnp.array(y))), rtol=1e-9
    )


# --------------------------------------------------------------------------- template files
def _blob(n=64):
    u = np.arange(n) - 31.5
    xx, yy = np.meshgrid(u, u)
    img = np.exp(-0.5 * ((xx - 3) ** 2 / 60.0 + (yy + 2) ** 2 / 25.0))
    img += 0.4 * np.exp(-0.5 * ((xx + 8) ** 2 + (yy - 6) ** 2) / 9.0)
    return img / img.sum()


@pytest.fixture(scope="module")
def mock():
    """A VAE-like mock with a fixed (non-VAE) source image: EPL + shear + Sersic lens light.

    The source centre (-0.04, 0.04) sits on the diagonal of COOLEST's frame, (0.04, 0.04):
    coolest 0.1.11 interpolates pixelated profiles with the x and y field-of-view limits
    swapped, which does not matter there.
    """
    import jax

    from vaelens.models import LensSpec, simulate_lens

    blob = jnp.asarray(_blob())
    spec = LensSpec(include_lens_light=True, supersampling=2)
    truth = {"source_center_x": -0.04, "source_center_y": 0.04, "e1": 0.1, "e2": -0.06}
    data, full = simulate_lens(
        jax.random.PRNGKey(5), spec, truth, lambda z: blob, shape=(60, 60), pixel_scale=0.05,
        psf_size=9,
    )
    return data, spec, full, blob


def _load(path):
    from coolest.api.util import get_coolest_object

    return get_coolest_object(str(path)[: -len(".json")], check_external_files=True)


def test_template_round_trips_through_coolest_reader(mock, tmp_path):
    from coolest.template.json import JSONSerializer

    data, spec, truth, _ = mock
    path = export_coolest(FitPoint(truth, data, spec, "truth"), tmp_path / "out", "lens")
    assert path == (tmp_path / "out" / "lens.json").absolute()
    names = {p.name for p in path.parent.iterdir()}
    assert names == {"lens.json", "observation.fits", "noise_map.fits", "psf.fits", "mask.fits",
                     "source.fits"}
    c = _load(path)
    again = JSONSerializer(str(path)[:-5], check_external_files=True).load(skip_jsonpickle=True)
    assert c.mode == again.mode == "MAP"
    assert [e.type for e in c.lensing_entities] == ["Galaxy", "MassField", "Galaxy"]
    lens, shear, source = c.lensing_entities
    assert [p.type for p in lens.mass_model] == ["PEMD"]
    assert [p.type for p in lens.light_model] == ["Sersic"]
    assert [p.type for p in source.light_model] == ["PixelatedRegularGrid"]
    mass = {k: v.point_estimate.value for k, v in lens.mass_model[0].parameters.items()}
    q, phi = ellipticity_to_coolest(truth["e1"], truth["e2"])
    assert mass["theta_E"] == pytest.approx(truth["theta_E"])
    assert mass["gamma"] == pytest.approx(truth["gamma"])
    assert (mass["q"], mass["phi"]) == pytest.approx((q, phi))
    assert (mass["center_x"], mass["center_y"]) == pytest.approx(
        (-truth["center_x"], truth["center_y"])
    )
    sh = {k: v.point_estimate.value for k, v in shear.mass_model[0].parameters.items()}
    assert (sh["gamma_ext"], sh["phi_ext"]) == pytest.approx(
        shear_to_coolest(truth["gamma1"], truth["gamma2"])
    )
    light = {k: v.point_estimate.value for k, v in lens.light_model[0].parameters.items()}
    i_eff, theta_eff = to_lenstronomy_sersic(
        truth["light_amp"], truth["light_R_sersic"], truth["light_n_sersic"]
    )
    assert (light["I_eff"], light["theta_eff"]) == pytest.approx((float(i_eff), float(theta_eff)))
    grid = source.light_model[0].parameters["pixels"]
    pix = grid.get_pixels(directory=str(path.parent))
    assert pix.shape == (64, 64)
    width = truth["source_size"]
    assert grid.field_of_view_x == pytest.approx((0.04 - width / 2, 0.04 + width / 2))
    assert grid.field_of_view_y == pytest.approx((0.04 - width / 2, 0.04 + width / 2))
    # the source pixels: the decoded image mirrored in x, in flux per data pixel
    d = width / 64
    np.testing.assert_allclose(pix, truth["source"][:, ::-1] * (0.05 / d) ** 2, rtol=1e-10)
    obs = c.observation.pixels.get_pixels(directory=str(path.parent))
    np.testing.assert_array_equal(obs, data.image[:, ::-1])  # x grows with the column here
    assert c.instrument.pixel_size == pytest.approx(0.05)
    assert c.observation.noise.type == "NoiseMap"
    assert c.likelihoods[0].type == "ImagingDataLikelihood"
    meta = json.loads(path.read_text())["meta"]
    assert meta["vaelens"]["point_estimate"] == "truth" and "chain_file_name" not in meta


def test_coolest_analysis_einstein_radius_slope_and_source_image(mock, tmp_path):
    """coolest's analysis tools on the exported template against the model (stated tolerances:
    Einstein radius 1%, the half-pixel accuracy of the tool with supersampling 5; slope 0.02)."""
    import dataclasses

    from coolest.api.analysis import Analysis
    from coolest.api.composable_models import ComposableLensModel

    from vaelens.models import lens_components, render_lens

    data, spec, truth, blob = mock
    path = export_coolest(FitPoint(truth, data, spec, "truth"), tmp_path / "out")
    c = _load(path)
    an = Analysis(c, str(path.parent), supersampling=5)
    sel = dict(entity_selection=[0], profile_selection=[0])
    r_ein, accuracy = an.effective_einstein_radius(return_accuracy=True, **sel)
    assert r_ein == pytest.approx(truth["theta_E"], abs=max(accuracy, 0.01 * truth["theta_E"]))
    # log-spaced radii: the annulus means then sample a power law without bias
    r_vec = np.geomspace(0.3, 1.5, 25)
    slope = an.effective_radial_slope(r_vec=r_vec, **sel)[1:]
    assert np.median(1.0 - slope) == pytest.approx(truth["gamma"], abs=0.02)

    # the lensed source drawn by coolest (cubic B-spline interpolation, 4x4 rays per pixel)
    lens_model = ComposableLensModel(
        c, str(path.parent),
        kwargs_selection_source=dict(entity_selection=[2]),
        kwargs_selection_lens_mass=dict(entity_selection=[0, 1]),
    )
    image, _ = lens_model.model_image(supersampling=4)
    spec_src = dataclasses.replace(spec, include_lens_light=False)
    p = {k: jnp.asarray(v) for k, v in truth.items()}
    ours = np.asarray(render_lens(data, spec_src, lens_components(p, spec_src, lambda z: blob)))
    theirs = image[:, ::-1]
    assert theirs.sum() == pytest.approx(ours.sum(), rel=0.01)
    assert np.max(np.abs(theirs - ours)) < 0.06 * ours.max()


def test_posterior_statistics_and_chain_file(mock, tmp_path):
    import arviz as az
    from coolest.api.composable_models import ComposableMassModel

    from vaelens.export.point import posterior_mean

    data, spec, truth, _ = mock
    rng = np.random.default_rng(0)
    names = spec.parameter_names()
    post = {n: truth[n] + 0.01 * rng.standard_normal((2, 30)) for n in names}
    post["source"] = truth["source"] * (1 + 0.01 * rng.standard_normal((2, 30, 1, 1)))
    idata = az.from_dict(posterior=post)
    point = FitPoint(posterior_mean(idata, spec), data, spec, "posterior mean", idata, "nuts")
    path = export_coolest(point, tmp_path / "out")
    c = _load(path)
    assert c.meta["chain_file_name"] == "chain.csv"
    with open(path.parent / "chain.csv") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], np.array(rows[1:], float)
    assert header[-1] == "probability_weights" and body.shape == (60, len(header))
    theta = c.lensing_entities[0].mass_model[0].parameters["theta_E"]
    col = body[:, header.index(theta.id)]
    np.testing.assert_allclose(np.sort(col), np.sort(post["theta_E"].ravel()))
    assert theta.point_estimate.value == pytest.approx(post["theta_E"].mean())
    assert theta.posterior_stats.mean == pytest.approx(post["theta_E"].mean())
    assert theta.posterior_stats.percentile_84th == pytest.approx(
        np.percentile(post["theta_E"], 84)
    )
    phi = c.lensing_entities[0].mass_model[0].parameters["phi"]
    _, phis = ellipticity_to_coolest(post["e1"].ravel(), post["e2"].ravel())
    np.testing.assert_allclose(np.sort(body[:, header.index(phi.id)]), np.sort(phis))
    # coolest's posterior mode reads the chain
    mm = ComposableMassModel(c, str(path.parent), load_posterior_samples=True,
                             entity_selection=[0, 1])
    assert len(mm.post_param_list) == 60


def test_sie_without_shear_or_lens_light(mock, tmp_path):
    import dataclasses

    data, spec, truth, _ = mock
    sie = dataclasses.replace(spec, mass_profile="sie", include_shear=False,
                              include_lens_light=False)
    c = _load(export_coolest(FitPoint(truth, data, sie, "x"), tmp_path / "out"))
    assert [e.type for e in c.lensing_entities] == ["Galaxy", "Galaxy"]
    lens, source = c.lensing_entities
    assert [p.type for p in lens.mass_model] == ["SIE"] and len(lens.light_model) == 0
    assert [p.type for p in source.light_model] == ["PixelatedRegularGrid"]
    assert "gamma" not in lens.mass_model[0].parameters


def test_rotated_source_resampled_on_an_axis_aligned_grid(mock, tmp_path):
    import dataclasses

    data, spec, truth, _ = mock
    rot = dataclasses.replace(spec, source=dataclasses.replace(spec.source, angle_scale=0.3))
    c = _load(export_coolest(FitPoint({**truth, "source_angle": 0.5}, data, rot, "x"),
                             tmp_path / "out"))
    grid = c.lensing_entities[-1].light_model[0].parameters["pixels"]
    pix = grid.get_pixels(directory=str(tmp_path / "out"))
    n = int(np.ceil(64 * (np.cos(0.5) + np.sin(0.5))))
    assert pix.shape == (n, n)
    d = truth["source_size"] / 64
    assert grid.field_of_view_x[1] - grid.field_of_view_x[0] == pytest.approx(n * d)
    # flux is kept: pixels are flux per data pixel at the source pixel size d
    assert pix.sum() * (d / 0.05) ** 2 == pytest.approx(truth["source_amp"], rel=0.01)


def test_bad_input_to_export_coolest(mock, tmp_path):
    import dataclasses

    data, spec, truth, _ = mock
    sersic = dataclasses.replace(spec, source_model="sersic")
    p = {**truth, "source_R_sersic": 0.2, "source_n_sersic": 1.0, "source_e1": 0.0,
         "source_e2": 0.0}
    with pytest.raises(ValueError, match="VAE source"):
        export_coolest(FitPoint(p, data, sersic, "x"), tmp_path / "a")
    with pytest.raises(ValueError, match="plain file name"):
        export_coolest(FitPoint(truth, data, spec, "x"), tmp_path / "b", "lens.json")
    with pytest.raises(ValueError, match="lack"):
        FitPoint({"theta_E": 1.0}, data, spec)
    from vaelens.io_results import OutputExistsError

    (tmp_path / "c").mkdir()
    with pytest.raises(OutputExistsError):
        export_coolest(FitPoint(truth, data, spec, "x"), tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- LensSpec
def test_lens_spec_dict_round_trip():
    from vaelens.models import LensSpec
    from vaelens.models.priors import LensPriors, SourcePriors

    spec = LensSpec(
        mass_profile="sie", include_lens_light=True, supersampling=3,
        lens=LensPriors(theta_E=1.3, center_scale=0.1), source=SourcePriors(angle_scale=0.4),
    )
    again = LensSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    with pytest.raises(ValueError, match="unknown LensSpec fields: colour"):
        LensSpec.from_dict({**spec.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="unknown LensPriors fields: bogus"):
        LensSpec.from_dict({"lens": {"bogus": 1.0}})
    with pytest.raises(ValueError, match="mass_profile"):
        LensSpec.from_dict({"mass_profile": "nfw"})


# --------------------------------------------------------------------------- command line
def test_cli_refuses_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["export", tmp_path / "empty", "--coolest", tmp_path / "o"])
    assert_clean_error(code, err, "not a 'vaelens fit' output folder")
    code, _, err = run_cli(["export", tmp_path / "missing", "--coolest", tmp_path / "o"])
    assert_clean_error(code, err, "not found")
    code, _, err = run_cli(["export", tmp_path / "empty"])
    assert_clean_error(code, err, "--coolest")
    from vaelens.models import LensSpec

    fake = tmp_path / "sersic_fit"
    fake.mkdir()
    (fake / "posterior.nc").write_bytes(b"")
    summary = {"image": "image.fits", "psf": "psf.fits",
               "spec": LensSpec(source_model="sersic").to_dict()}
    (fake / "summary.json").write_text(json.dumps(summary))
    code, _, err = run_cli(["export", fake, "--coolest", tmp_path / "o"])
    assert_clean_error(code, err, "needs a VAE-source fit")
    (fake / "summary.json").write_text(json.dumps({**summary, "spec": {"colour": 1}}))
    code, _, err = run_cli(["export", fake, "--coolest", tmp_path / "o"])
    assert_clean_error(code, err, "bad model specification")
    vae = {**summary, "spec": LensSpec().to_dict(), "command": "vaelens fit image.fits"}
    (fake / "summary.json").write_text(json.dumps(vae))
    code, _, err = run_cli(["export", fake, "--coolest", tmp_path / "o"])
    assert_clean_error(code, err, "its command line cannot be read")
    (fake / "summary.json").write_text(json.dumps({**vae, "command": None}))
    code, _, err = run_cli(["export", fake, "--coolest", tmp_path / "o"])
    assert_clean_error(code, err, "image image.fits not found")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def fit_folder(mock, tmp_path_factory):
    """A real MAP fit of the mock (fixed source image, 4 latent dimensions it ignores) written
    by ``LensFit.write`` next to the FITS files it names."""
    import dataclasses

    import jax
    from astropy.io import fits

    from vaelens.infer import fit_lens

    data, spec, truth, blob = mock
    root = tmp_path_factory.mktemp("export_cli")
    hdr = fits.Header()
    hdr["PIXSCALE"], hdr["BKG_RMS"], hdr["EXPTIME"] = 0.05, data.bkg_rms, data.exposure_time
    fits.PrimaryHDU(data.image, header=hdr).writeto(root / "image.fits")
    fits.PrimaryHDU(data.psf, header=fits.Header({"PIXSCALE": 0.05})).writeto(root / "psf.fits")
    spec4 = dataclasses.replace(
        spec, source=dataclasses.replace(spec.source, latent_dim=4, amp=truth["source_amp"])
    )
    fit = fit_lens(
        data, spec4, method="map", key=jax.random.PRNGKey(1), decoder=lambda z: blob, starts=2,
        samples=30, chains=2, progress_bar=False,
    )
    command = (
        f"vaelens fit {root / 'image.fits'} --psf {root / 'psf.fits'} --method map "
        f"--out {root / 'fit'}"
    )
    fit.write(
        root / "fit",
        meta={"image": str(root / "image.fits"), "psf": str(root / "psf.fits"),
              "command": command},
    )
    return root, fit


def test_cli_exports_a_fit_folder(fit_folder):
    from vaelens.export.point import fit_point_from_folder
    from vaelens.fit_folder import best_draw

    root, fit = fit_folder
    code, out, err = run_cli(["export", root / "fit", "--coolest", root / "cool", "--name", "m"])
    assert code == 0, err
    assert "lowest-chi2 draw" in out
    c = _load(root / "cool" / "m.json")
    c_, d_ = best_draw(fit.idata)
    theta = float(fit.idata.posterior["theta_E"].values[c_, d_])
    value = c.lensing_entities[0].mass_model[0].parameters["theta_E"].point_estimate.value
    assert value == pytest.approx(theta, rel=1e-6)
    assert abs(value - float(fit.map.params["theta_E"])) < 0.05
    # the data read again from the recorded inputs are the fitted data
    point = fit_point_from_folder(root / "fit", fit.data)
    obs = c.observation.pixels.get_pixels(directory=str(root / "cool"))
    np.testing.assert_allclose(obs[:, ::-1], point.data.image, rtol=1e-6)
    code, _, err = run_cli(["export", root / "fit", "--coolest", root / "cool"])
    assert_clean_error(code, err, "already exists")
    code, _, err = run_cli(["export", root / "fit", "--coolest", root / "cool", "--force"])
    assert code == 0, err


def test_library_export_of_a_lens_fit(fit_folder, tmp_path):
    _, fit = fit_folder
    path = export_coolest(fit, tmp_path / "cool")
    c = _load(path)
    theta = c.lensing_entities[0].mass_model[0].parameters["theta_E"]
    assert theta.point_estimate.value == pytest.approx(float(fit.map.params["theta_E"]))
    assert theta.posterior_stats.mean == pytest.approx(
        float(fit.idata.posterior["theta_E"].mean()), rel=1e-9
    )
    assert "chain_file_name" not in c.meta  # a MAP fit: no chain by default
    path = export_coolest(fit, tmp_path / "cool2", chain=True)
    assert (path.parent / "chain.csv").is_file()


def test_fit_folder_takes_a_truth_with_labels(fit_folder, tmp_path):
    """A truth file may carry labels (source names, flags) beside the parameters."""
    import json

    _, fit = fit_folder
    truth = {"theta_E": 1.0, "source_name": "cosmos_1", "source_flip": True}
    summary = fit.write(tmp_path / "labelled", truth=truth)
    assert summary["parameters"]["theta_E"]["truth"] == 1.0
    saved = json.loads((tmp_path / "labelled" / "summary.json").read_text())
    assert saved["truth"]["source_name"] == "cosmos_1"
    assert saved["fit"]["arc_residuals"]["snr_threshold"] == 3.0
    assert saved["fit"]["arc_residuals"]["significant"] in (True, False)
