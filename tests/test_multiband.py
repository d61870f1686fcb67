"""Multi-band lenses: the joint likelihood, the one-band identity, the angular frame from the
WCS, and the command line's multi-band inputs and errors."""

import json

import jax
import numpy as np
import pytest
from astropy.io import fits
from cli_util import assert_clean_error, run_cli
from numpyro import handlers
from numpyro.infer.util import log_density

from vaelens.data import ImageData, MultiBandData, as_multiband
from vaelens.data.multiband import frame_offsets, place_band
from vaelens.models import (
    BandSetup,
    LensSpec,
    band_params,
    lens_model,
    multiband_lens_model,
    simulate_multiband,
)

SPEC = LensSpec(include_lens_light=True, source_model="sersic", supersampling=1)
BANDS = [
    BandSetup("F814W", (28, 28), 0.1, psf_fwhm=0.12, psf_size=7, bkg_rms=0.01),
    BandSetup("F160W", (20, 20), 0.13, offset=(0.05, -0.04), psf_fwhm=0.25, psf_size=7,
              bkg_rms=0.02, exposure_time=None, source_ratio=2.0, light_ratio=3.0),
]


@pytest.fixture(scope="module")
def mock():
    """The two-band mock of ``SPEC`` (Sersic source and lens light) and its truth."""
    return simulate_multiband(jax.random.PRNGKey(0), BANDS, SPEC)


def _draw(model, *args, key=0):
    tr = handlers.trace(handlers.seed(model, jax.random.PRNGKey(key))).get_trace(*args)
    return {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}


def _obs_logp(model, params, *args):
    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args)
    return {k: float(s["fn"].log_prob(s["value"]).sum()) for k, s in tr.items()
            if s["type"] == "sample" and s["is_observed"]}


def test_joint_log_likelihood_is_the_sum_of_the_bands(mock):
    spec = SPEC
    data, _ = mock
    params = _draw(multiband_lens_model, data, spec, None, key=3)
    assert {"source_amp_F160W", "light_amp_F160W"} <= set(params)
    joint = _obs_logp(multiband_lens_model, params, data, spec, None)
    assert set(joint) == {"obs_F814W", "obs_F160W"}
    for name, band in zip(data.names, data.bands, strict=True):
        p = band_params(params, name, data.names[0])
        single = _obs_logp(lens_model, p, band, spec, None)["obs"]
        assert joint[f"obs_{name}"] == pytest.approx(single, rel=1e-6)
    # the band amplitude really enters: another F160W amplitude changes that band only
    other = dict(params, source_amp_F160W=params["source_amp_F160W"] * 1.5)
    moved = _obs_logp(multiband_lens_model, other, data, spec, None)
    assert moved["obs_F814W"] == pytest.approx(joint["obs_F814W"], rel=1e-9)
    assert abs(moved["obs_F160W"] - joint["obs_F160W"]) > 1.0


def test_one_band_through_the_multiband_model_is_lens_model(mock):
    data = MultiBandData(mock[0].bands[:1], ("F814W",))
    params = _draw(lens_model, data[0], SPEC, None, key=5)
    lp_single, _ = log_density(lens_model, (data[0], SPEC, None), {}, params)
    lp_multi, tr = log_density(multiband_lens_model, (data, SPEC, None), {}, params)
    assert float(lp_multi) == pytest.approx(float(lp_single), rel=1e-7)
    assert "obs_F814W" in tr and "obs" not in tr
    # a list of one band is that band: fit_lens then uses lens_model itself
    assert as_multiband([data[0]]) is data[0]


def test_colours_are_deterministic_magnitudes(mock):
    data, truth = mock
    tr = handlers.trace(handlers.substitute(handlers.seed(multiband_lens_model, 0),
                                            data=truth)).get_trace(data, SPEC, None)
    assert tr["source_colour_F160W"]["type"] == "deterministic"
    assert float(tr["source_colour_F160W"]["value"]) == pytest.approx(-2.5 * np.log10(2.0))
    assert float(tr["light_colour_F160W"]["value"]) == pytest.approx(-2.5 * np.log10(3.0))
    assert truth["source_colour_F160W"] == pytest.approx(-2.5 * np.log10(2.0))
    # the prior of a band amplitude is centred on that band's flux ratio
    assert data.flux_ratios[0] == 1.0 and data.flux_ratios[1] > 1.0


def _header(n, scale, ra, dec, flip=False, **extra):
    """A TAN WCS centred on the image; x (RA) grows with the column unless ``flip`` (the usual
    orientation of sky images, east to the left)."""
    return {
        "NAXIS1": n, "NAXIS2": n, "CRPIX1": (n + 1) / 2.0, "CRPIX2": (n + 1) / 2.0,
        "CRVAL1": ra, "CRVAL2": dec, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
        "CD1_1": (-1 if flip else 1) * scale / 3600.0, "CD1_2": 0.0, "CD2_1": 0.0,
        "CD2_2": scale / 3600.0, **extra,
    }


def test_wcs_places_a_shifted_band_in_the_reference_frame(mock):
    ra0, dec0 = 150.1, 2.2
    dx, dy = 0.05, -0.04  # arcsec east and north of the reference centre
    ha = _header(28, 0.1, ra0, dec0)
    hb = _header(20, 0.13, ra0 + dx / 3600.0 / np.cos(np.radians(dec0)), dec0 + dy / 3600.0)
    origins = frame_offsets([ha, hb], [(28, 28), (20, 20)])
    # pixel (0, 0) lies (n-1)/2 pixels from the centre; x grows east, like RA
    np.testing.assert_allclose(origins[0], (-0.1 * 13.5, -0.1 * 13.5), atol=1e-6)
    np.testing.assert_allclose(origins[1], (dx - 0.13 * 9.5, dy - 0.13 * 9.5), atol=1e-5)
    flipped = frame_offsets([_header(28, 0.1, ra0, dec0, flip=True)], [(28, 28)])
    np.testing.assert_allclose(flipped[0], (0.1 * 13.5, -0.1 * 13.5), atol=1e-6)

    # the band simulated at that offset is matched by the truth only on the placed grid
    data, truth = mock
    from vaelens.models import lens_components, render_lens

    params = band_params(
        {k: jax.numpy.asarray(v) for k, v in truth.items() if np.ndim(v) <= 1}, "F160W", "F814W"
    )
    band = data["F160W"]
    centred = ImageData(band.image, psf=band.psf, bkg_rms=band.bkg_rms, pixel_scale=0.13)

    def chi2(b):
        model = np.asarray(render_lens(b, SPEC, lens_components(params, SPEC, None)))
        return float(np.sum((b.image - model) ** 2 / np.asarray(b.variance(model))))

    placed = place_band(centred, origins[1])
    assert placed.grid.ra_at_xy_0 == pytest.approx(band.grid.ra_at_xy_0, abs=1e-5)
    assert chi2(placed) < 1.3 * band.num_pixels < chi2(centred)


def test_bands_must_overlap_and_share_units(mock):
    data, _ = mock
    a, b = data.bands
    far = place_band(b, (30.0, 30.0))
    with pytest.raises(ValueError, match="does not overlap band F814W"):
        MultiBandData((a, far), ("F814W", "F160W"))
    with pytest.raises(ValueError, match="different flux units"):
        MultiBandData((a, b), units=("ELECTRONS/S", "COUNTS"))
    MultiBandData((a, b), units=("electrons/s", "ELECTRONS/S"))  # the same unit
    with pytest.raises(ValueError, match="distinct"):
        MultiBandData((a, b), ("F814W", "F814W"))
    with pytest.raises(ValueError, match="band name"):
        MultiBandData((a, b), ("F814W", "1band"))


# --------------------------------------------------------------------------- command line
def _write_band(folder, name, band, header, bunit="ELECTRONS/S"):
    hdu = fits.PrimaryHDU(band.image.astype(np.float32))
    hdu.header.update({k: v for k, v in header.items() if not k.startswith("NAXIS")})
    hdu.header.update(BKG_RMS=band.bkg_rms, FILTER=name, BUNIT=bunit)
    if band.exposure_time is not None:
        hdu.header["EXPTIME"] = band.exposure_time
    hdu.writeto(folder / f"{name}.fits")
    fits.PrimaryHDU(band.psf.astype(np.float32)).writeto(folder / f"{name}_psf.fits")


@pytest.fixture(scope="module")
def two_bands(tmp_path_factory):
    """The two-band mock as FITS files whose WCS places F160W at its offset."""
    root = tmp_path_factory.mktemp("bands")
    spec = LensSpec(include_lens_light=False, source_model="sersic", supersampling=1)
    data, truth = simulate_multiband(jax.random.PRNGKey(4), BANDS, spec)
    ra0, dec0 = 40.0, -10.0
    ha = _header(28, 0.1, ra0, dec0)
    dx, dy = BANDS[1].offset
    hb = _header(20, 0.13, ra0 + dx / 3600.0 / np.cos(np.radians(dec0)), dec0 + dy / 3600.0)
    _write_band(root, "F814W", data[0], ha)
    _write_band(root, "F160W", data[1], hb)
    _write_band(root, "F110W", data[1], hb, bunit="COUNTS")
    far = _header(20, 0.13, ra0 + 0.01, dec0)
    _write_band(root, "FAR", data[1], far)
    return root, truth


def _fit_bands(root, images, psfs, *extra):
    return run_cli(
        ["fit", *(root / f"{i}.fits" for i in images), "--psf",
         *(root / f"{p}_psf.fits" for p in psfs), "--method", "map", "--source", "sersic",
         "--no-lens-light", "--out", root / "out", *extra]
    )


def test_cli_psf_count_must_match_images(two_bands):
    root, _ = two_bands
    code, _, err = _fit_bands(root, ["F814W", "F160W"], ["F814W"])
    assert_clean_error(code, err, "2 image(s) but 1 PSF(s)")
    assert not (root / "out").exists()


def test_cli_bands_that_do_not_overlap(two_bands):
    root, _ = two_bands
    code, _, err = _fit_bands(root, ["F814W", "FAR"], ["F814W", "FAR"])
    assert_clean_error(code, err, "band FAR", "does not overlap")


def test_cli_bands_with_different_units(two_bands):
    root, _ = two_bands
    code, _, err = _fit_bands(root, ["F814W", "F110W"], ["F814W", "F110W"])
    assert_clean_error(code, err, "different flux units", "COUNTS")


def test_cli_single_band_options_are_refused_for_several_images(two_bands):
    root, _ = two_bands
    code, _, err = _fit_bands(root, ["F814W", "F160W"], ["F814W", "F160W"], "--bkg-rms", "0.1")
    assert_clean_error(code, err, "--bkg-rms", "several images")
    code, _, err = _fit_bands(root, ["F814W", "F160W"], ["F814W", "F160W"], "--band-names", "a")
    assert_clean_error(code, err, "2 image(s) but 1 --band-names")


@pytest.mark.slow
def test_cli_joint_fit_writes_the_bands_and_recovers_the_source(two_bands):
    root, truth = two_bands
    out = root / "joint"
    code, stdout, err = run_cli(
        ["fit", root / "F814W.fits", root / "F160W.fits", "--psf", root / "F814W_psf.fits",
         root / "F160W_psf.fits", "--method", "map", "--source", "sersic", "--no-lens-light",
         "--starts", "3", "--samples", "40", "--supersampling", "1", "--out", out]
    )
    assert code == 0, err
    assert "model_F160W.png" in stdout
    for f in ("model.png", "model_F814W.png", "model_F160W.png", "summary.json"):
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    assert s["bands"] == ["F814W", "F160W"]  # from the FILTER keys
    q = s["fit"]["bands"]
    assert set(q) == {"F814W", "F160W"}
    assert q["F814W"]["num_pixels"] == 28 * 28 and q["F160W"]["num_pixels"] == 20 * 20
    for b in q.values():
        assert 0.7 < b["reduced_chi2"] < 1.3
    assert s["fit"]["chi2"] == pytest.approx(q["F814W"]["chi2"] + q["F160W"]["chi2"])
    p = s["parameters"]
    # the WCS placement: the source and lens positions are those of the simulation
    for name in ("source_center_x", "source_center_y", "center_x", "center_y", "theta_E"):
        assert abs(p[name]["map"] - truth[name]) < 4 * p[name]["laplace_sd"] + 0.01, name
    colour = s["colours"]["F160W"]["source"]
    assert abs(colour["map"] - truth["source_colour_F160W"]) < 4 * colour["laplace_sd"] + 0.05
