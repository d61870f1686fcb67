"""`vaelens fit-galaxy`: what it does to stamps of other sizes and scales; its input errors."""

import logging

import numpy as np
import pytest
from astropy.io import fits
from cli_util import assert_clean_error, run_cli

from vaelens import cli
from vaelens.commands import fit_galaxy


def galaxy_stamp(path, size, pixel_scale, *, header_scale=True, seed=0):
    """A noisy round Gaussian galaxy of 0.12 arcsec sigma, written as a FITS stamp."""
    rng = np.random.default_rng(seed)
    g = (np.arange(size) - (size - 1) / 2) * pixel_scale
    x, y = np.meshgrid(g, g)
    image = 100.0 * np.exp(-0.5 * (x**2 + y**2) / 0.12**2) + rng.normal(0, 1.0, (size, size))
    header = fits.Header({"PIXSCALE": pixel_scale, "NOISEVAR": 1.0}) if header_scale else None
    fits.PrimaryHDU(image, header=header).writeto(path)
    return path


def empty_catalog(folder):
    """A RealGalaxyCatalog table with the required columns and no rows."""
    fits.HDUList([fits.PrimaryHDU()]).writeto(folder / "gal.fits")
    cols = [
        fits.Column(name="IDENT", format="J", array=np.zeros(0, int)),
        fits.Column(name="GAL_FILENAME", format="20A", array=np.array([], dtype="S20")),
        fits.Column(name="GAL_HDU", format="J", array=np.zeros(0, int)),
        fits.Column(name="PIXEL_SCALE", format="D", array=np.zeros(0)),
        fits.Column(name="NOISE_VARIANCE", format="D", array=np.zeros(0)),
    ]
    path = folder / "catalog.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    return path


def test_empty_catalogue_is_one_clear_line(tmp_path):
    path = empty_catalog(tmp_path)
    code, _, err = run_cli(["fit-galaxy", path, "--out", tmp_path / "out"])
    assert_clean_error(code, err, "lists no galaxies", "catalog.fits")
    assert not (tmp_path / "out").exists()


def test_too_coarse_stamp_is_refused(tmp_path):
    path = galaxy_stamp(tmp_path / "coarse.fits", 20, 0.2)
    code, _, err = run_cli(["fit-galaxy", path, "--out", tmp_path / "out"])
    assert_clean_error(code, err, "coarse", "0.2 arcsec", "times coarser")
    assert not (tmp_path / "out").exists()


def test_preparation_notes_say_what_is_done():
    stamp = {"ident": "g", "image": np.zeros((40, 40)), "pixel_scale": 0.05}
    notes = fit_galaxy.preparation_notes(stamp, 0.03)
    assert notes == [
        "resampled from 0.05 to the decoder's 0.03 arcsec/px",
        "cropped about the light centre from 67 x 67 to 64 x 64 px",
    ]
    small = {"ident": "g", "image": np.zeros((30, 80)), "pixel_scale": 0.03}
    assert fit_galaxy.preparation_notes(small, 0.03) == [
        "cropped and padded with noise from 30 x 80 to 64 x 64 px"
    ]
    exact = {"ident": "g", "image": np.zeros((64, 64)), "pixel_scale": 0.03}
    assert fit_galaxy.preparation_notes(exact, 0.03) == []


def test_prepare_warns_with_counts_for_many_stamps(caplog):
    rng = np.random.default_rng(1)
    stamps = [
        {
            "ident": str(i),
            "image": rng.normal(size=(48, 48)) + 50.0 * np.pad(np.ones((4, 4)), 22),
            "noise_variance": 1.0,
            "pixel_scale": 0.03,
        }
        for i in range(3)
    ]
    with caplog.at_level(logging.WARNING, logger="vaelens"):
        out = fit_galaxy.prepare(stamps, 0, 0.03)
    assert out["images"].shape == (3, 64, 64)
    assert "3 of 3 stamps padded with noise from 48 x 48 to 64 x 64 px" in caplog.text
    assert "resampled" not in caplog.text


def test_stamp_at_another_scale_is_fitted_with_warnings(tmp_path, caplog):
    path = galaxy_stamp(tmp_path / "stamp.fits", 40, 0.05)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="vaelens"):
        code, stdout, err = run_cli(["fit-galaxy", path, "--out", out, "--steps", "3"])
    assert code == 0, err
    assert "stamp stamp: resampled from 0.05 to the decoder's 0.03 arcsec/px" in caplog.text
    assert "stamp stamp: cropped about the light centre from 67 x 67 to 64 x 64 px" in caplog.text
    with fits.open(out / "stamps.fits") as hdul:
        assert hdul["MODEL"].data.shape == (1, 64, 64)
        assert hdul["MODEL"].header["PIXSCALE"] == pytest.approx(0.03)
    assert "1 galaxies" in stdout


def test_stamp_without_pixel_scale_warns_about_the_assumption(tmp_path, caplog):
    path = galaxy_stamp(tmp_path / "bare.fits", 20, 0.3, header_scale=False)
    with caplog.at_level(logging.WARNING, logger="vaelens"):
        # the header has no scale: the decoder's is assumed (and the stamp is padded)
        stamps = fit_galaxy.read_stamps(
            cli.build_parser().parse_args(["fit-galaxy", str(path), "--out", "x"]), 0.03
        )
    assert stamps[0]["pixel_scale"] == 0.03
    assert "no pixel scale in its header" in caplog.text


def test_stamp_without_positive_flux_is_a_user_error():
    stamp = {
        "ident": "dark",
        "image": -np.ones((64, 64)),
        "noise_variance": 1.0,
        "pixel_scale": 0.03,
    }
    with pytest.raises(cli.CLIError, match="stamp dark: .*non-positive total flux"):
        fit_galaxy.prepare([stamp], 0, 0.03)
    with pytest.raises(cli.CLIError, match="no galaxy stamps"):
        fit_galaxy.prepare([], 0, 0.03)
