"""The ``vaelens`` command line: simulate -> fit -> compare end to end, and its error paths."""

import json
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from cli_util import assert_clean_error, run_cli

from vaelens.io_results import OutputExistsError, atomic_output_dir

# A small, fast mock: 40 x 40 pixels of 0.08" (3.2" across, the Einstein ring inside), Sersic
# source, no lens light; MAP with four starts.
SIM = [
    "--size",
    "40",
    "--pixel-scale",
    "0.08",
    "--psf-fwhm",
    "0.16",
    "--source",
    "sersic",
    "--no-lens-light",
]
FIT = [
    "--method",
    "map",
    "--source",
    "sersic",
    "--no-lens-light",
    "--starts",
    "4",
    "--samples",
    "60",
    "--chains",
    "2",
]


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    code, out, err = run_cli(["simulate", "--out", root / "mock", "--seed", "2", *SIM])
    assert code == 0, err
    return root


@pytest.fixture(scope="module")
def map_fit(mock):
    m = mock / "mock"
    argv = [
        "fit",
        m / "image.fits",
        "--psf",
        m / "psf.fits",
        *FIT,
        "--truth",
        m / "truth.json",
        "--out",
        mock / "fit_map",
    ]
    code, out, err = run_cli(argv)
    assert code == 0, err
    return mock / "fit_map", out


# --------------------------------------------------------------------------- simulate
def test_simulate_writes_fits_with_header_keys_and_truth(mock):
    m = mock / "mock"
    with fits.open(m / "image.fits") as hdul:
        hdr, image = hdul[0].header, hdul[0].data
        assert image.shape == (40, 40)
        assert hdr["PIXSCALE"] == pytest.approx(0.08)
        assert hdr["BKG_RMS"] > 0 and hdr["EXPTIME"] > 0
    psf = fits.getdata(m / "psf.fits")
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert fits.getheader(m / "psf.fits")["PIXSCALE"] == pytest.approx(0.08)
    truth = json.loads((m / "truth.json").read_text())
    assert truth["seed"] == 2 and truth["source"] == "sersic"
    for name in ("theta_E", "gamma", "e1", "e2", "gamma1", "gamma2", "source_R_sersic"):
        assert np.isfinite(truth["parameters"][name])
    # the noise is at the header level: image - noise-free model has the predicted rms
    model = fits.getdata(m / "model.fits").astype(float)
    var = hdr["BKG_RMS"] ** 2 + np.clip(model, 0, None) / hdr["EXPTIME"]
    chi2 = np.mean((image - model) ** 2 / var)
    assert 0.85 < chi2 < 1.15


def test_simulate_is_reproducible_and_never_overwrites(mock):
    code, _, err = run_cli(["simulate", "--out", mock / "mock", "--seed", "2", *SIM])
    assert_clean_error(code, err, "already exists", "--force")
    before = json.loads((mock / "mock" / "truth.json").read_text())["parameters"]
    image = fits.getdata(mock / "mock" / "image.fits")
    code, _, err = run_cli(["simulate", "--out", mock / "mock", "--seed", "2", *SIM, "--force"])
    assert code == 0, err
    after = json.loads((mock / "mock" / "truth.json").read_text())["parameters"]
    assert after == before
    np.testing.assert_array_equal(fits.getdata(mock / "mock" / "image.fits"), image)
    leftovers = [p.name for p in mock.iterdir() if p.name.startswith(".mock")]
    assert leftovers == []


# --------------------------------------------------------------------------- fit
def test_fit_map_writes_every_output(map_fit):
    folder, out = map_fit
    for name in (
        "posterior.nc",
        "summary.csv",
        "summary.json",
        "model.png",
        "corner.png",
        "trace.png",
    ):
        assert (folder / name).is_file(), name
        assert (folder / name).stat().st_size > 0
    assert "theta_E" in out and "reduced chi2" in out  # the printed table
    import arviz as az

    idata = az.from_netcdf(folder / "posterior.nc")
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 60
    for name in ("theta_E", "gamma", "e1", "e2", "gamma1", "gamma2"):
        assert name in idata.posterior
    csv = (folder / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("parameter,mean,sd") and any(r.startswith("theta_E,") for r in csv)


def test_fit_map_recovers_theta_E_and_reports_chi2(map_fit):
    folder, _ = map_fit
    s = json.loads((folder / "summary.json").read_text())
    assert s["method"] == "map" and s["seed"] == 0
    assert {"jax", "numpyro"} <= set(s["versions"])
    assert s["timings_s"]["map"] > 0
    te = s["parameters"]["theta_E"]
    assert te["truth"] == pytest.approx(te["map"], abs=max(5 * te["laplace_sd"], 0.03))
    assert abs(te["map"] - te["truth"]) < 0.05
    assert 0 < te["laplace_sd"] < 0.05
    fit = s["fit"]
    assert fit["num_pixels"] == 1600
    assert 0.7 < fit["reduced_chi2"] < 1.3  # the right model fits down to the noise


@pytest.fixture(scope="module")
def lib_fit(mock):
    """The fit of the ``map_fit`` fixture's command, run through the library."""
    import jax

    from vaelens.commands._inputs import load_image_data
    from vaelens.infer import fit_lens
    from vaelens.models import LensSpec

    m = mock / "mock"
    data = load_image_data(m / "image.fits", m / "psf.fits")
    spec = LensSpec.from_data(data, include_lens_light=False, source_model="sersic")
    return fit_lens(data, spec, method="map", key=jax.random.PRNGKey(0), starts=4, chains=2,
                    samples=60)


def test_cli_and_fit_lens_give_identical_results(map_fit, lib_fit):
    import arviz as az

    folder, _ = map_fit
    post = az.from_netcdf(folder / "posterior.nc").posterior
    for name in lib_fit.parameter_names():
        np.testing.assert_array_equal(post[name].values, lib_fit.idata.posterior[name].values)
    s = json.loads((folder / "summary.json").read_text())
    table = lib_fit.summary()
    for name in ("theta_E", "gamma", "e1", "gamma1"):
        assert s["parameters"][name]["map"] == table.loc[name, "map"]
        assert s["parameters"][name]["laplace_sd"] == table.loc[name, "laplace_sd"]
        assert s["parameters"][name]["sd"] == pytest.approx(table.loc[name, "sd"], rel=1e-12)
    assert s["map_loss"] == lib_fit.info["map_loss"]


def test_fit_folder_is_readable_like_any_new_folder(map_fit):
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (map_fit[0].stat().st_mode & 0o777) == (0o777 & ~umask)


def test_fit_refuses_existing_folder(map_fit, mock):
    m = mock / "mock"
    before = (map_fit[0] / "summary.json").read_text()
    code, _, err = run_cli(
        ["fit", m / "image.fits", "--psf", m / "psf.fits", *FIT, "--out", map_fit[0]]
    )
    assert_clean_error(code, err, "already exists")
    assert (map_fit[0] / "summary.json").read_text() == before


def test_compare_two_folders(map_fit, mock):
    import shutil

    out = mock / "cmp"
    copy = shutil.copytree(map_fit[0], mock / "fit_map_copy")
    code, text, err = run_cli(["compare", map_fit[0], copy, "--out", out])
    assert code == 0, err
    for name in ("comparison.csv", "comparison.json", "comparison.png"):
        assert (out / name).is_file()
    rows = json.loads((out / "comparison.json").read_text())["parameters"]
    assert set(rows) >= {"theta_E", "gamma", "e1", "e2", "gamma1", "gamma2"}
    # the Laplace draws scatter around the MAP with the Laplace sigma
    te = rows["theta_E"]
    assert abs(te["diff_sigma"]) < 1.0 and 0.6 < te["sd_ratio"] < 1.6
    assert "theta_E" in text and "diff_sigma" in text
    code, _, err = run_cli(["compare", mock / "nope", map_fit[0]])
    assert_clean_error(code, err, "not found")


def test_fit_init_from_an_earlier_fit(map_fit, mock):
    m = mock / "mock"
    first = json.loads((map_fit[0] / "summary.json").read_text())
    base = ["fit", m / "image.fits", "--psf", m / "psf.fits", *FIT]
    base[base.index("--starts") + 1] = "2"
    out = mock / "fit_restart"
    code, _, err = run_cli([*base, "--init-from", map_fit[0], "--out", out])
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["init_from"] == str(map_fit[0].resolve())
    assert len(s["map_losses"]) == 2  # one start per chain of the earlier fit
    # started from draws around the earlier optimum, BFGS returns to it
    te0, te = first["parameters"]["theta_E"], s["parameters"]["theta_E"]
    assert abs(te["map"] - te0["map"]) < 0.5 * te0["laplace_sd"]
    assert s["map_loss"] <= first["map_loss"] + 1.0

    # an earlier fit of another model (no lens light) cannot start this one
    other = [a for a in base if a != "--no-lens-light"]
    code, _, err = run_cli([*other, "--init-from", map_fit[0], "--out", mock / "bad"])
    assert_clean_error(code, err, "--init-from", "light_amp")
    assert not (mock / "bad").exists()
    code, _, err = run_cli([*base, "--init-from", mock / "nope", "--out", mock / "bad"])
    assert_clean_error(code, err, "not found")


def test_fit_nuts_with_the_gauss_newton_metric(map_fit, mock):
    import arviz as az

    m = mock / "mock"
    argv = ["fit", m / "image.fits", "--psf", m / "psf.fits", *FIT, "--init-from", map_fit[0]]
    argv[argv.index("--method") + 1] = "nuts"
    argv[argv.index("--samples") + 1] = "40"
    argv[argv.index("--chains") + 1] = "1"
    out = mock / "fit_nuts_gn"
    code, _, err = run_cli([*argv, "--init-mass", "gauss-newton", "--warmup", "40",
                            "--max-tree-depth", "6", "--chunk-size", "20", "--out", out])
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "nuts" and s["init_mass"] == "gauss-newton"
    # two chunks recorded for --resume; a Sersic source has no image-valued draws to keep
    assert sorted(p.name for p in (out / "sampling").glob("chunk_*")) == [
        "chunk_00000.npz", "chunk_00001.npz"]
    idata = az.from_netcdf(out / "posterior.nc")
    assert not [k for k in idata.posterior.data_vars if idata.posterior[k].ndim > 3]
    code, _, err = run_cli(["fit", "--resume", mock / "nope"])
    assert_clean_error(code, err, "--resume", "no interrupted sampling run")
    post = idata.posterior
    assert post.sizes["draw"] == 40
    # the chain stays around the MAP it started from, with a width like the Laplace sigma
    te0 = json.loads((map_fit[0] / "summary.json").read_text())["parameters"]["theta_E"]
    te = post["theta_E"].values.ravel()
    assert abs(te.mean() - te0["map"]) < 3 * te0["laplace_sd"]
    assert 0.2 < te.std() / te0["laplace_sd"] < 5
    code, _, err = run_cli([*argv, "--init-mass", "fisher", "--out", mock / "bad"])
    assert code == 2 and "--init-mass" in err


# --------------------------------------------------------------------------- errors
@pytest.fixture()
def small_fits(tmp_path):
    """An image with header noise keys and a PSF at the same pixel scale."""
    img = fits.PrimaryHDU(np.random.default_rng(0).normal(0, 0.01, (30, 30)).astype(np.float32))
    img.header.update(PIXSCALE=0.05, BKG_RMS=0.01, EXPTIME=1000.0)
    img.writeto(tmp_path / "image.fits")
    psf = np.zeros((5, 5), np.float32)
    psf[2, 2] = 1
    p = fits.PrimaryHDU(psf)
    p.header["PIXSCALE"] = 0.05
    p.writeto(tmp_path / "psf.fits")
    return tmp_path


def _fit(small_fits, *extra, image="image.fits", psf="psf.fits"):
    return run_cli(
        [
            "fit",
            small_fits / image,
            "--psf",
            small_fits / psf,
            "--method",
            "map",
            "--out",
            small_fits / "out",
            *extra,
        ]
    )


def test_missing_image(small_fits):
    code, _, err = _fit(small_fits, image="nope.fits")
    assert_clean_error(code, err, "nope.fits", "not found")
    assert not (small_fits / "out").exists()


def test_wrong_hdu(small_fits):
    code, _, err = _fit(small_fits, "--hdu", "3")
    assert_clean_error(code, err, "no HDU 3")


def test_not_a_fits_file(small_fits):
    (small_fits / "junk.fits").write_text("not a FITS file\n")
    code, _, err = _fit(small_fits, psf="junk.fits")
    assert_clean_error(code, err, "junk.fits")


def test_psf_pixel_scale_mismatch(small_fits):
    psf = fits.PrimaryHDU(np.ones((5, 5), np.float32) / 25)
    psf.header["PIXSCALE"] = 0.1
    psf.writeto(small_fits / "psf_coarse.fits")
    code, _, err = _fit(small_fits, psf="psf_coarse.fits")
    assert_clean_error(code, err, "pixel-scale mismatch", "0.05", "0.1")


def test_no_noise_model(small_fits):
    fits.PrimaryHDU(np.zeros((30, 30), np.float32)).writeto(small_fits / "bare.fits")
    code, _, err = _fit(small_fits, "--pixel-scale", "0.05", image="bare.fits")
    assert_clean_error(code, err, "no noise model", "--bkg-rms")


def test_no_pixel_scale(small_fits):
    fits.PrimaryHDU(np.zeros((30, 30), np.float32)).writeto(small_fits / "bare.fits")
    code, _, err = _fit(small_fits, "--bkg-rms", "0.01", image="bare.fits")
    assert_clean_error(code, err, "pixel scale", "--pixel-scale")


@pytest.mark.parametrize(
    "flag,value",
    [("--bkg-rms", "-1"), ("--bkg-rms", "nan"), ("--chains", "0"), ("--mask-radius", "abc")],
)
def test_bad_numbers(small_fits, flag, value):
    code, _, err = _fit(small_fits, flag, value)
    assert_clean_error(code, err, flag)


def test_mask_radius_excluding_everything(small_fits):
    code, _, err = _fit(small_fits, "--mask-radius", "1e-6")
    assert_clean_error(code, err, "--mask-radius")


def test_interrupted_fit_leaves_no_folder(lib_fit, small_fits, monkeypatch):
    from vaelens import fit_folder
    from vaelens.commands import fit

    def interrupted(folder, *args, **kwargs):
        (folder / "posterior.nc").write_text("half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "fit_lens_from_args", lambda args: (lib_fit, {}, None))
    monkeypatch.setattr(fit_folder, "_write_files", interrupted)
    code, _, err = _fit(small_fits)
    assert code == 130 and "interrupted" in err
    assert not (small_fits / "out").exists()
    assert not [p for p in small_fits.iterdir() if p.name.startswith(".out")]


def test_full_disk_prints_the_fit_and_leaves_nothing(lib_fit, small_fits, monkeypatch):
    import collections
    import shutil

    from vaelens.commands import fit

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(fit, "fit_lens_from_args", lambda args: (lib_fit, {}, None))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    code, out, err = _fit(small_fits)
    assert code == 1
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("vaelens: warning")]
    assert len(lines) == 1 and "disk space" in lines[0] and "Traceback" not in err
    assert "theta_E" in out  # the fitted numbers are printed, not lost
    assert not (small_fits / "out").exists()
    assert not [p for p in small_fits.iterdir() if p.name.startswith(".out")]


def test_write_failure_midway_cleans_up(lib_fit, tmp_path, monkeypatch):
    from vaelens import fit_folder

    def no_space(folder, *args, **kwargs):
        (folder / "posterior.nc").write_text("half written")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fit_folder, "_write_files", no_space)
    with pytest.raises(fit_folder.OutputWriteError, match="No space left"):
        lib_fit.write(tmp_path / "res")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_dir_force_keeps_old_until_done(tmp_path):
    out = tmp_path / "res"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(OutputExistsError):
        with atomic_output_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, force=True) as tmp:
            (tmp / "a.txt").write_text("new")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "old"
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


# --------------------------------------------------------------------------- info, usage
def test_info_lists_versions_devices_and_model_card():
    code, out, _ = run_cli(["info"])
    assert code == 0
    for word in ("vaelens", "jax", "numpyro", "JAX devices", "cpu", "Pretrained VAE model card"):
        assert word in out


def test_console_script_usage_errors_are_one_line():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaelens.cli",
            "fit",
            "missing.fits",
            "--psf",
            "p.fits",
            "--method",
            "map",
            "--out",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "missing.fits" in proc.stderr and "not found" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "vaelens.cli", "fit", "--method", "bogus"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
