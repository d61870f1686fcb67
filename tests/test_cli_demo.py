"""``vaelens demo``: the README's first command, end to end."""

import contextlib
import io
import json

import pytest

from vaelens import cli


@pytest.mark.slow
def test_demo_simulates_fits_and_records_final_paths(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["demo", "--out", str(tmp_path / "demo"), "--seed", "0"])
    assert code == 0, err.getvalue()
    demo = tmp_path / "demo"
    for name in ("data/image.fits", "data/psf.fits", "data/truth.json", "fit/posterior.nc",
                 "fit/summary.json", "fit/model.png", "fit/corner.png", "fit/trace.png"):
        assert (demo / name).is_file(), name
    s = json.loads((demo / "fit" / "summary.json").read_text())
    # the recorded inputs are the files the user has, not those of the temporary folder
    assert s["image"] == str(demo / "data" / "image.fits")
    assert s["psf"] == str(demo / "data" / "psf.fits")
    assert s["method"] == "map" and s["decoder"] == "pretrained"
    te = s["parameters"]["theta_E"]
    assert abs(te["map"] - te["truth"]) < 0.05
    assert 0.8 < s["fit"]["reduced_chi2"] < 1.2
    text = out.getvalue()
    assert "theta_E" in text and "truth" in text and "reduced chi2" in text
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temporary folder left
