"""ImageData: construction, validation, noise model and FITS reading."""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from vaelens.data import ImageData
from vaelens.lensing import PixelGrid

SHAPE = (12, 10)


def _image(seed=0):
    return np.random.default_rng(seed).normal(size=SHAPE)


def test_defaults_and_repr():
    data = ImageData(_image(), bkg_rms=0.1, exposure_time=100.0, pixel_scale=0.05)
    assert data.shape == SHAPE
    assert data.num_pixels == SHAPE[0] * SHAPE[1]
    assert data.mask.dtype == bool
    assert data.grid.pixel_scale == pytest.approx(0.05)
    assert "ImageData(shape=(12, 10)" in repr(data)


def test_variance_models():
    model = np.full(SHAPE, 4.0)
    model[0, 0] = -1.0  # negative model flux adds no Poisson variance
    data = ImageData(_image(), bkg_rms=0.5, exposure_time=8.0, pixel_scale=0.05)
    var = np.asarray(data.variance(model))
    assert var[1, 1] == pytest.approx(0.25 + 4.0 / 8.0)
    assert var[0, 0] == pytest.approx(0.25)
    expmap = np.full(SHAPE, 2.0)
    data_map = ImageData(_image(), bkg_rms=0.5, exposure_time=expmap, pixel_scale=0.05)
    assert np.asarray(data_map.variance(model))[1, 1] == pytest.approx(0.25 + 2.0)
    noise = np.full(SHAPE, 0.3)
    data_nm = ImageData(_image(), noise_map=noise, pixel_scale=0.05)
    np.testing.assert_allclose(np.asarray(data_nm.variance(model)), 0.09)


def test_nan_pixels_are_masked_with_warning():
    img = _image()
    img[2, 3] = np.nan
    img[4, 4] = np.inf
    with pytest.warns(UserWarning, match="non-finite image pixels"):
        data = ImageData(img, bkg_rms=0.1, pixel_scale=0.05)
    assert not data.mask[2, 3] and not data.mask[4, 4]
    assert data.num_pixels == SHAPE[0] * SHAPE[1] - 2
    assert np.all(np.isfinite(data.image))


def test_psf_normalised_with_warning():
    psf = np.ones((5, 5))
    with pytest.warns(UserWarning, match="normalised"):
        data = ImageData(_image(), psf=psf, bkg_rms=0.1, pixel_scale=0.05)
    assert data.psf.sum() == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageData(_image(), psf=psf / 25.0, bkg_rms=0.1, pixel_scale=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_map": np.ones((3, 3))}, "noise_map has shape"),
        ({"noise_map": np.zeros(SHAPE)}, "noise_map must be positive"),
        ({"bkg_rms": -1.0}, "bkg_rms must be positive"),
        ({"bkg_rms": 0.1, "exposure_time": 0.0}, "exposure_time must be positive"),
        ({"bkg_rms": 0.1, "exposure_time": np.ones((2, 2))}, "exposure map has shape"),
        ({"bkg_rms": 0.1, "mask": np.ones((2, 2))}, "mask has shape"),
        ({"bkg_rms": 0.1, "mask": np.zeros(SHAPE)}, "excludes every pixel"),
        ({"bkg_rms": 0.1, "psf": -np.ones((3, 3))}, "positive sum"),
        ({}, "no noise model"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageData(_image(), pixel_scale=0.05, **kwargs)


def test_grid_shape_mismatch_raises():
    with pytest.raises(ValueError, match="grid has shape"):
        ImageData(_image(), grid=PixelGrid((5, 5), 0.1), bkg_rms=0.1)


def test_from_fits_self_written(tmp_path):
    img = _image(1).astype(np.float32)
    header = fits.Header()
    header["PIXSCALE"] = 0.08
    header["BKG_RMS"] = 0.02
    header["EXPTIME"] = 500.0
    header["RA0"] = -0.4
    header["DEC0"] = -0.5
    hdul = fits.HDUList([fits.PrimaryHDU(img, header=header)])
    hdul.writeto(tmp_path / "img.fits")
    psf = np.zeros((3, 3))
    psf[1, 1] = 2.0
    fits.PrimaryHDU(psf).writeto(tmp_path / "psf.fits")
    with pytest.warns(UserWarning, match="normalised"):
        data = ImageData.from_fits(tmp_path / "img.fits", psf=tmp_path / "psf.fits")
    assert data.bkg_rms == pytest.approx(0.02)
    assert data.exposure_time == pytest.approx(500.0)
    assert data.pixel_scale == pytest.approx(0.08)
    x, y = data.grid.coordinates()
    assert float(x[0, 0]) == pytest.approx(-0.4) and float(y[0, 0]) == pytest.approx(-0.5)
    assert float(x[0, 1]) == pytest.approx(-0.4 + 0.08)
    np.testing.assert_allclose(data.image, img)

    # explicit noise map and mask override the header noise model
    mask = np.ones(SHAPE, bool)
    mask[0] = False
    data2 = ImageData.from_fits(
        tmp_path / "img.fits", noise_map=np.full(SHAPE, 0.5), mask=mask, pixel_scale=0.1
    )
    assert data2.noise_map is not None and data2.bkg_rms is None
    assert data2.num_pixels == SHAPE[0] * (SHAPE[1] - 0) - SHAPE[1]
    assert data2.pixel_scale == pytest.approx(0.1)


def test_from_fits_missing_information(tmp_path):
    fits.PrimaryHDU(_image()).writeto(tmp_path / "bare.fits")
    with pytest.raises(ValueError, match="pixel_scale"):
        ImageData.from_fits(tmp_path / "bare.fits", bkg_rms=0.1)
    with pytest.raises(ValueError, match="no noise model"):
        ImageData.from_fits(tmp_path / "bare.fits", pixel_scale=0.05)
    with pytest.raises(ValueError, match="noise_map has shape"):
        ImageData.from_fits(tmp_path / "bare.fits", pixel_scale=0.05, noise_map=np.ones((2, 2)))


def test_from_fits_real_lens(shared_data):
    folder = shared_data / "lenses" / "lens_system1_F390W"
    data = ImageData.from_fits(folder / "image.fits", psf=folder / "psf.fits")
    assert data.shape == (120, 120)
    assert data.pixel_scale == pytest.approx(0.04, rel=1e-4)
    # CD1_1 < 0: x (RA) decreases with the column index; pixel (0, 0) at (RA0, DEC0)
    x, y = data.grid.coordinates()
    assert float(x[0, 1]) < float(x[0, 0])
    assert float(x[0, 0]) == pytest.approx(2.4000405, abs=1e-6)
    assert float(y[0, 0]) == pytest.approx(-2.3999833, abs=1e-6)
    assert isinstance(data.exposure_time, np.ndarray) and data.exposure_time.shape == (120, 120)
    assert data.bkg_rms == pytest.approx(0.001734827645123)
    assert data.psf.shape == (41, 41) and data.psf.sum() == pytest.approx(1.0)
    var = np.asarray(data.variance(np.zeros((120, 120))))
    assert np.allclose(var, data.bkg_rms**2)
