"""The mock generator and arguments of ``benchmarks/bench_calibration.py``."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name):
    sys.path.insert(0, str(_BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(_BENCH))
    return module


@pytest.fixture(scope="module")
def cm():
    return _load("calibration_mocks")


def _gaussian_stamp(n=61, sigma=5.0, offset=(0.0, 0.0), amp=1.0):
    y, x = np.indices((n, n)) - (n - 1) / 2
    return amp * np.exp(-0.5 * ((x - offset[0]) ** 2 + (y - offset[1]) ** 2) / sigma**2)


def test_prepare_source_isolates_the_central_galaxy(cm):
    rng = np.random.default_rng(0)
    image = _gaussian_stamp(101, 4.0) + _gaussian_stamp(101, 3.0, offset=(38, 30), amp=0.8)
    image = 2.0 + 100 * image + rng.normal(size=image.shape)  # pedestal, S/N ~ 100
    src = cm.prepare_source(image, "two", 0.03)
    assert src.image.sum() == pytest.approx(1.0)
    assert src.smoothing_sigma == 0.0
    # the half-light radius of a circular Gaussian is sqrt(2 ln 2) sigma
    assert src.r50_pix == pytest.approx(np.sqrt(2 * np.log(2)) * 4.0, rel=0.1)
    assert src.image.shape[0] < 60  # the neighbour is cut away


def test_prepare_source_smooths_a_noisy_stamp_and_rejects_an_empty_one(cm):
    rng = np.random.default_rng(1)
    noisy = 8 * _gaussian_stamp(81, 4.0) + rng.normal(size=(81, 81))
    assert cm.prepare_source(noisy, "noisy", 0.03).smoothing_sigma > 0
    with pytest.raises(ValueError, match="no galaxy"):
        cm.prepare_source(rng.normal(size=(64, 64)) * 0 + 1.0, "flat", 0.03)


def test_mock_is_deterministic_for_a_seed(cm):
    pytest.importorskip("lenstronomy")
    from vaelens.lensing import gaussian_psf

    stamp = 300 * _gaussian_stamp(61, 5.0) + np.random.default_rng(2).normal(size=(61, 61))
    src = cm.prepare_source(stamp, "g", 0.03)
    psf = np.asarray(gaussian_psf(0.1, cm.PIXEL_SCALE, 15))
    a, b, c = (cm.make_mock(s, [src], psf) for s in (3, 3, 4))
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["truth"] == b["truth"]
    assert not np.allclose(a["image"], c["image"])
    # the requested peak S/N is met by the noise-free model
    peak = a["model"].max()
    snr = peak / np.sqrt(cm.BKG_RMS**2 + peak / cm.EXPOSURE_TIME)
    assert snr == pytest.approx(a["truth"]["peak_snr"], rel=1e-6)
    lo, hi = cm.POPULATION["theta_E"]
    assert lo <= a["truth"]["theta_E"] <= hi
    with pytest.raises(ValueError, match="no source"):
        cm.make_mock(0, [], psf)
    with pytest.raises(ValueError, match="non-negative"):
        cm.make_mock(-1, [src], psf)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-real", "-1"], "non-negative"),
        (["--n-real", "0", "--n-control", "0"], "not both zero"),
        (["--n-real", "0", "--option", "starts"], "NAME=VALUE"),
        (["--n-real", "0", "--workers", "-2"], "--workers"),
    ],
)
def test_bad_arguments_give_clear_errors(argv, message, capsys):
    bench = _load("bench_calibration")
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
