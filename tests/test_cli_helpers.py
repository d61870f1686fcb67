"""Building blocks of the command line: FITS reading, priors from the data, Laplace capping."""


import numpy as np
import pytest
from astropy.io import fits

from vaelens.cli import CLIError
from vaelens.commands import _common, _inputs
from vaelens.infer.fit_lens import default_optimizer
from vaelens.models import LensSpec
from vaelens.models.spec import _unit_sersic_flux


def test_header_pixel_scale_from_pixscale_cd_matrix_or_cdelt():
    assert _common.header_pixel_scale(fits.Header({"PIXSCALE": 0.05})) == 0.05
    deg = 0.04 / 3600
    cd = fits.Header({"CD1_1": -deg, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": deg})
    assert _common.header_pixel_scale(cd) == pytest.approx(0.04, rel=1e-9)
    assert _common.header_pixel_scale(fits.Header({"CDELT1": -deg})) == pytest.approx(0.04)
    assert _common.header_pixel_scale(fits.Header()) is None
    # CDELT of one degree with the scale in a rotated PC matrix (as astropy writes WCS headers)
    c, s = np.cos(0.3), np.sin(0.3)
    pc = fits.Header({"CDELT1": 1.0, "CDELT2": 1.0, "PC1_1": -deg * c, "PC1_2": deg * s,
                      "PC2_1": deg * s, "PC2_2": deg * c})
    assert _common.header_pixel_scale(pc) == pytest.approx(0.04, rel=1e-9)


def test_unit_sersic_flux_matches_numerical_integral():
    from vaelens.lensing import Sersic

    n, r_s, pix = 1.0, 0.5, 0.01  # exponential profile; the +-5" box holds > 99.9% of the flux
    g = (np.arange(-500, 500) + 0.5) * pix
    x, y = np.meshgrid(g, g)
    total = float(np.sum(Sersic(1.0, r_s, n).surface_brightness(x, y))) * pix**2
    assert _unit_sersic_flux(n, r_s) == pytest.approx(total, rel=0.01)


def test_optimizer_auto_follows_precision():
    import jax

    expected = "bfgs" if jax.config.jax_enable_x64 else "lbfgs"
    assert default_optimizer() == expected


def test_format_table_aligns_columns():
    text = _common.format_table(
        [{"p": "theta_E", "a": 1.23456789, "b": None}, {"p": "e1", "a": float("nan"), "b": 3}],
        ["a", "b"],
        index="p",
    )
    lines = text.splitlines()
    assert lines[0].split() == ["p", "a", "b"]
    assert lines[2].split() == ["theta_E", "1.235", "-"]
    assert lines[3].split() == ["e1", "nan", "3"]
    assert len({len(line) for line in (lines[0], lines[2], lines[3])}) == 1


def test_read_fits_image_errors(tmp_path):
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.BinTableHDU.from_columns([fits.Column(name="A", format="D", array=np.zeros(3))]),
        ]
    ).writeto(tmp_path / "t.fits")
    with pytest.raises(CLIError, match="holds no 2-d image"):
        _common.read_fits_image(tmp_path / "t.fits", "image", 0)
    with pytest.raises(CLIError, match=r"no HDU 'SCI'.*0:PRIMARY, 1:"):
        _common.read_fits_image(tmp_path / "t.fits", "image", "SCI")
    assert _common.parse_hdu("2") == 2 and _common.parse_hdu("EXPMAP") == "EXPMAP"


def test_real_lens_inputs_follow_the_header(shared_data):
    lens = shared_data / "lenses" / "lens_system1_F390W"
    data = _inputs.load_image_data(lens / "image.fits", lens / "psf.fits", mask_radius=2.0)
    assert data.shape == (120, 120)
    assert data.pixel_scale == pytest.approx(0.04, rel=1e-4)
    x, y = data.grid.coordinates_numpy()
    assert x[0, 1] < x[0, 0]  # CD1_1 < 0: RA (x) grows to the left
    assert y[1, 0] > y[0, 0]
    assert x[0, 0] == pytest.approx(fits.getheader(lens / "image.fits")["RA0"], abs=1e-6)
    assert isinstance(data.exposure_time, np.ndarray)  # the EXPMAP extension
    r = np.hypot(x, y)
    assert data.mask.sum() == np.sum(r <= 2.0)
    # priors centred on the data: the lens light carries about half of the flux in the mask
    spec = LensSpec.from_data(data)
    light_flux = spec.lens_light.amp * _unit_sersic_flux(4.0, spec.lens_light.R_sersic)
    assert light_flux == pytest.approx(0.5 * data.image[data.mask].sum(), rel=1e-6)
    assert spec.include_lens_light and spec.source_model == "vae"


def test_gamma_range_sets_the_slope_prior_and_rejects_unsupported_slopes():
    from vaelens.data.image_data import ImageData
    from vaelens.lensing import PixelGrid

    rng = np.random.default_rng(0)
    data = ImageData(rng.normal(0.0, 0.01, (20, 20)), grid=PixelGrid((20, 20), 0.05),
                     psf=np.ones((3, 3)) / 9.0, bkg_rms=0.01, exposure_time=1000.0)
    default = LensSpec.from_data(data)
    assert (default.lens.gamma_low, default.lens.gamma_high) == (1.5, 2.5)
    wide = LensSpec.from_data(data, gamma_range=(1.2, 2.8))
    assert (wide.lens.gamma_low, wide.lens.gamma_high) == (1.2, 2.8)
    assert wide.lens.gamma_loc == default.lens.gamma_loc
    for bad in [(1.0, 2.5), (1.5, 3.0), (2.1, 2.5), (1.5, 1.9)]:
        with pytest.raises(ValueError, match="gamma range"):
            LensSpec.from_data(data, gamma_range=bad)


def _tiny_data():
    from vaelens.data.image_data import ImageData
    from vaelens.lensing import PixelGrid

    rng = np.random.default_rng(1)
    return ImageData(rng.normal(0.0, 0.01, (20, 20)), grid=PixelGrid((20, 20), 0.05),
                     psf=np.ones((3, 3)) / 9.0, bkg_rms=0.01, exposure_time=1000.0)


def test_fit_options_choose_the_mass_profile_shear_and_centre_prior():
    from vaelens.cli import build_parser
    from vaelens.commands.fit import spec_from_args

    base = ["fit", "i.fits", "--psf", "p.fits", "--method", "map", "--out", "o"]
    args = build_parser().parse_args(base)
    spec = spec_from_args(args, _tiny_data())
    assert (spec.mass_profile, spec.include_shear, spec.lens.center_scale) == ("epl", True, 0.05)
    args = build_parser().parse_args(
        [*base, "--mass-profile", "sie", "--no-shear", "--center-prior-sigma", "0.2"]
    )
    spec = spec_from_args(args, _tiny_data())
    assert (spec.mass_profile, spec.include_shear, spec.lens.center_scale) == ("sie", False, 0.2)
    assert "gamma" not in spec.parameter_names() and "gamma1" not in spec.parameter_names()
    args = build_parser().parse_args([*base, "--gamma-range", "1.0", "2.5"])
    with pytest.raises(CLIError, match="gamma range"):
        spec_from_args(args, _tiny_data())


def test_even_sized_psf_is_accepted_with_a_warning(tmp_path):
    img = fits.PrimaryHDU(np.zeros((16, 16), np.float32))
    img.header.update(PIXSCALE=0.05, BKG_RMS=0.01, EXPTIME=1000.0)
    img.writeto(tmp_path / "image.fits")
    fits.PrimaryHDU(np.ones((4, 4), np.float32)).writeto(tmp_path / "psf.fits")
    with pytest.warns(UserWarning, match="even size"):
        data = _inputs.load_image_data(tmp_path / "image.fits", tmp_path / "psf.fits")
    assert data.psf.shape == (4, 4)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file", b"\x08\x00\x00\x00\x00"])
def test_unreadable_weights_are_a_clean_error(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    _common.load_vae.cache_clear()
    with pytest.raises(CLIError, match="--weights"):
        _common.load_vae(str(path))


def test_missing_pretrained_weights_never_fall_back_to_random(monkeypatch):
    import vaelens.vae as vae_pkg
    from vaelens.vae import WeightsError

    def broken():
        raise WeightsError("sha256 mismatch")

    monkeypatch.setattr(vae_pkg, "load_pretrained", broken)
    _common.load_vae.cache_clear()
    try:
        with pytest.raises(CLIError, match="pretrained VAE weights cannot be loaded"):
            _common.make_decoder("vae")
    finally:
        _common.load_vae.cache_clear()
