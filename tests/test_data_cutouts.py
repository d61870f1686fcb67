"""`vaelens.data.cutouts` and `vaelens cutouts`: galaxies found, stamps written, bad input
refused."""

import numpy as np
import pytest
from astropy.io import fits
from cli_util import assert_clean_error, run_cli
from scipy.signal import fftconvolve

pytest.importorskip("photutils")

from vaelens.data import load_real_galaxy_catalog  # noqa: E402
from vaelens.data.cutouts import (  # noqa: E402
    CutoutError,
    check_psf,
    field_pixel_scale,
    make_cutouts,
    write_real_galaxy_catalog,
)
from vaelens.lensing.light import Sersic  # noqa: E402
from vaelens.lensing.light.sersic import sersic_total_flux  # noqa: E402
from vaelens.lensing.psf import gaussian_psf  # noqa: E402

SCALE = 0.03
SIGMA = 0.005
SIZE = 200
# x, y (0-based pixel centre), total flux, R_sersic (arcsec), n, e1, e2
GALAXIES = [
    (50.3, 60.7, 40.0, 0.15, 1.0, 0.1, 0.05),
    (140.6, 45.2, 25.0, 0.10, 2.0, -0.1, 0.1),
    (155.5, 120.5, 15.0, 0.10, 1.0, 0.0, 0.0),
    (100.1, 140.4, 30.0, 0.12, 1.5, 0.0, -0.15),  # a blended pair, 14 px apart
    (112.0, 148.0, 20.0, 0.08, 1.0, 0.2, 0.0),
]
BLENDED = (3, 4)


def simulate(galaxies=GALAXIES, seed=1, sub=2):
    """PSF-convolved Sersic galaxies (supersampled by ``sub``) plus white noise of SIGMA."""
    g = ((np.arange(SIZE * sub) + 0.5) / sub - 0.5) * SCALE
    x, y = np.meshgrid(g, g)
    image = np.zeros_like(x)
    for cx, cy, flux, r, n, e1, e2 in galaxies:
        amp = flux / float(sersic_total_flux(1.0, r, n))
        prof = Sersic(amp, r, n, e1, e2, cx * SCALE, cy * SCALE)
        image += np.asarray(prof.surface_brightness(x, y), np.float64) * (SCALE / sub) ** 2
    image = image.reshape(SIZE, sub, SIZE, sub).sum(axis=(1, 3))
    psf = np.asarray(gaussian_psf(0.09, SCALE, 25), np.float64)
    image = fftconvolve(image, psf, mode="same")
    return image + np.random.default_rng(seed).normal(0.0, SIGMA, image.shape), psf


@pytest.fixture(scope="module")
def field():
    return simulate()


@pytest.fixture(scope="module")
def cutouts(field):
    image, psf = field
    return make_cutouts(image, psf, pixel_scale=SCALE, stamp_size=48, seed=3)


def _match(cutouts):
    """Index of the selected source nearest to each true galaxy, and the distance (px)."""
    rows = cutouts.selected
    out = []
    for cx, cy, *_ in GALAXIES:
        d = np.hypot(np.asarray(rows["x"]) - cx, np.asarray(rows["y"]) - cy)
        out.append((int(np.argmin(d)), float(d.min())))
    return out


def test_finds_every_galaxy_with_its_position_and_flux(cutouts):
    matches = _match(cutouts)
    assert len(cutouts) == len(GALAXIES)
    assert len({k for k, _ in matches}) == len(GALAXIES)  # one stamp per galaxy
    for (_, dist), gal in zip(matches, GALAXIES, strict=True):
        assert dist < 1.0, (gal, dist)
    kron = np.asarray(cutouts.selected["flux"])
    stamp_flux = cutouts.stamps.sum(axis=(1, 2))  # noise of the sum: 48 SIGMA = 0.24
    for i, ((k, _), gal) in enumerate(zip(matches, GALAXIES, strict=True)):
        if i in BLENDED:  # the deblender's split of the pair's light is approximate
            assert stamp_flux[k] == pytest.approx(gal[2], rel=0.10)
        else:
            assert stamp_flux[k] == pytest.approx(gal[2], rel=0.03)
            # a 2.5 r_Kron aperture misses a few per cent of the wings (most for n = 2)
            assert kron[k] == pytest.approx(gal[2], rel=0.07)
            assert kron[k] < gal[2] + 3 * 0.24
    pair = sum(stamp_flux[matches[i][0]] for i in BLENDED)
    assert pair == pytest.approx(sum(GALAXIES[i][2] for i in BLENDED), rel=0.03)


def test_noise_from_source_free_pixels(cutouts):
    assert cutouts.noise_source == "source-free pixels"
    assert cutouts.noise_rms == pytest.approx(SIGMA, rel=0.03)
    assert abs(cutouts.background) < 0.1 * SIGMA
    assert cutouts.noise_correlation == pytest.approx(1.0, abs=0.05)  # white noise
    np.testing.assert_allclose(cutouts.noise_variance, cutouts.noise_rms**2)


def test_neighbour_of_a_blend_is_replaced_by_noise(cutouts):
    """The stamp of one galaxy of the pair: the other's light is gone, noise of SIGMA instead."""
    (k3, _), (k4, _) = (_match(cutouts)[i] for i in BLENDED)
    stamp = cutouts.stamps[k3]
    half = stamp.shape[0] // 2
    x3, y3 = (
        np.floor(np.asarray(cutouts.selected["x"])[k3] + 0.5),
        np.floor(np.asarray(cutouts.selected["y"])[k3] + 0.5),
    )
    dx, dy = int(round(GALAXIES[4][0] - x3)), int(round(GALAXIES[4][1] - y3))
    patch = stamp[half + dy - 2 : half + dy + 3, half + dx - 2 : half + dx + 3]
    assert abs(patch.mean()) < 3 * SIGMA / 5  # the neighbour's peak (~1) is gone
    assert cutouts.selected["neighbour_fraction"][k3] > 0


def test_noise_map_and_weight_map_give_the_same_stamps(field):
    image, psf = field
    noise = np.full(image.shape, SIGMA)
    a = make_cutouts(image, psf, pixel_scale=SCALE, stamp_size=48, noise_map=noise)
    b = make_cutouts(image, psf, pixel_scale=SCALE, stamp_size=48, weight=noise**-2.0)
    assert a.noise_source == "noise map" and b.noise_source == "weight map"
    assert len(a) == len(GALAXIES)
    np.testing.assert_allclose(a.stamps, b.stamps, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.noise_variance, SIGMA**2)


def test_catalogue_reads_back(cutouts, tmp_path):
    path = write_real_galaxy_catalog(cutouts, tmp_path / "cat", ident_offset=1000)
    assert path.name == "real_galaxy_catalog.fits"
    with load_real_galaxy_catalog(path) as cat:
        assert len(cat) == len(cutouts)
        for k, stamp in enumerate(cat):
            np.testing.assert_allclose(stamp.image, cutouts.stamps[k], rtol=1e-6, atol=1e-7)
            assert stamp.noise_variance == pytest.approx(cutouts.noise_variance[k])
            assert stamp.pixel_scale == pytest.approx(SCALE)
            assert stamp.ident == 1000 + int(cutouts.selected["label"][k])
            assert stamp.psf.shape == cutouts.psf.shape
            assert stamp.psf.sum() == pytest.approx(1.0)
    # written atomically: no temporary folder left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat"]


def test_field_without_sources_is_refused():
    rng = np.random.default_rng(0)
    psf = np.asarray(gaussian_psf(0.09, SCALE, 25))
    with pytest.raises(CutoutError, match="no source found|none usable"):
        make_cutouts(rng.normal(0, SIGMA, (120, 120)), psf, pixel_scale=SCALE, stamp_size=48)


@pytest.mark.parametrize(
    "psf, match",
    [
        (np.ones((24, 24)), "even size"),
        (np.ones((61, 61)), "larger than the stamp"),
        (np.full((5, 5), np.nan), "non-finite"),
        (np.zeros((5, 5)), "non-positive sum"),
    ],
)
def test_bad_psf_is_refused(field, psf, match):
    with pytest.raises(CutoutError, match=match):
        make_cutouts(field[0], psf, pixel_scale=SCALE, stamp_size=48)


def test_psf_repairs_on_request():
    even = np.zeros((10, 10))
    even[4, 4], even[4, 5], even[5, 4] = 4.0, 1.0, 1.0
    fixed = check_psf(even, 48, recentre=True)
    assert fixed.shape == (9, 9) and fixed[4, 4] == pytest.approx(4.0 / 6.0)
    big = np.asarray(gaussian_psf(0.09, SCALE, 61))
    cropped = check_psf(big, 48, psf_size=25)
    assert cropped.shape == (25, 25) and cropped.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(cropped, big[18:43, 18:43] / big[18:43, 18:43].sum())


def test_missing_noise_estimate_is_refused(field):
    image, psf = field
    with pytest.raises(CutoutError, match="no scatter"):
        make_cutouts(np.ones((100, 100)), psf, pixel_scale=SCALE, stamp_size=48)
    with pytest.raises(CutoutError, match="differ in shape"):
        make_cutouts(image, psf, pixel_scale=SCALE, stamp_size=48, noise_map=np.ones((10, 10)))
    with pytest.raises(CutoutError, match="no finite positive pixel"):
        make_cutouts(image, psf, pixel_scale=SCALE, stamp_size=48, weight=np.zeros(image.shape))


def test_pixel_scale_from_the_wcs():
    header = fits.Header(
        {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CUNIT1": "deg",
            "CUNIT2": "deg",
            "CDELT1": 1.0,
            "CDELT2": 1.0,
            "PC1_1": -SCALE / 3600,
            "PC2_2": SCALE / 3600,
            "CRVAL1": 150.0,
            "CRVAL2": 2.0,
            "CRPIX1": 1.0,
            "CRPIX2": 1.0,
        }
    )
    assert field_pixel_scale(header) == pytest.approx(SCALE)
    header["PC1_1"], header["PC2_2"] = -1.0, 1.0  # a placeholder WCS: 3600 arcsec per pixel
    with pytest.raises(CutoutError, match="not a plausible pixel scale"):
        field_pixel_scale(header)
    assert field_pixel_scale(fits.Header()) is None


def test_cli_writes_a_catalogue(field, tmp_path):
    image, psf = field
    fits.PrimaryHDU(image.astype(np.float32), header=fits.Header({"PIXSCALE": SCALE})).writeto(
        tmp_path / "field.fits"
    )
    fits.PrimaryHDU(psf).writeto(tmp_path / "psf.fits")
    out = tmp_path / "stamps"
    code, stdout, err = run_cli(
        [
            "-q",
            "cutouts",
            tmp_path / "field.fits",
            "--psf",
            tmp_path / "psf.fits",
            "--out",
            out,
            "--stamp-size",
            "48",
        ]
    )
    assert code == 0, err
    assert f"{len(GALAXIES)} of" in stdout
    for name in ("sources.csv", "segmentation.fits", "summary.json", "cutouts.png", "field.png"):
        assert (out / name).is_file()
    with load_real_galaxy_catalog(out / "real_galaxy_catalog.fits") as cat:
        assert len(cat) == len(GALAXIES)


def test_cli_errors_are_one_line(field, tmp_path):
    image, _ = field
    fits.PrimaryHDU(image).writeto(tmp_path / "field.fits")
    fits.PrimaryHDU(np.ones((24, 24))).writeto(tmp_path / "even.fits")
    out = tmp_path / "stamps"
    code, _, err = run_cli(
        [
            "cutouts",
            tmp_path / "field.fits",
            "--psf",
            tmp_path / "even.fits",
            "--out",
            out,
            "--pixel-scale",
            SCALE,
        ]
    )
    assert_clean_error(code, err, "even size", "--recentre-psf")
    code, _, err = run_cli(
        ["cutouts", tmp_path / "field.fits", "--psf", tmp_path / "even.fits", "--out", out]
    )
    assert_clean_error(code, err, "no pixel scale", "--pixel-scale")
    assert not out.exists()
