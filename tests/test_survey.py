"""vaelens.survey and ``vaelens batch``: catalogue, options, results table, Dask engine, resume.

The fits run on one tiny simulated lens (28 x 28 pixels of 0.14", Sersic source; fitted by an
SIE without shear or lens light, 2 MAP starts, 20 Laplace draws) referenced by several catalogue
rows: the rows share one model, so a worker compiles its programs once and reuses them.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil

import numpy as np
import pytest
from astropy.table import Table

from vaelens.survey import (
    COLUMNS,
    PARAMETER_UNITS,
    LensCatalogError,
    ResultsTable,
    column_description,
    fit_catalog,
    read_catalog,
)
from vaelens.survey.options import OPTIONS, check_options, is_missing, parse_option

distributed = pytest.importorskip("distributed")

#: The cheapest model of the mock: a batch-wide option set (the catalogue overrides ``seed``).
TINY = {
    "source": "sersic",
    "lens_light": False,
    "mass_profile": "sie",
    "shear": False,
    "supersampling": 1,
    "starts": 2,
    "samples": 20,
}


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """One simulated lens (image.fits, psf.fits, truth.json) and a corrupt FITS file."""
    from vaelens.commands.simulate import simulate_mock, write_mock

    root = tmp_path_factory.mktemp("survey_mock")
    (root / "lens").mkdir()
    write_mock(
        root / "lens",
        simulate_mock(
            seed=4, source="sersic", size=28, pixel_scale=0.14, psf_fwhm=0.3, lens_light=False
        ),
    )
    (root / "corrupt.fits").write_bytes(b"SIMPLE  = this is not a FITS file\n" * 20)
    return root


def _catalog(root, rows, name="cat.csv"):
    path = root / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image", "psf", "seed", "ra"])
        w.writerows(rows)
    return path


GOOD = [
    ["a1", "lens/image.fits", "lens/psf.fits", "", "10.1"],
    ["a2", "lens/image.fits", "lens/psf.fits", "1", "10.2"],
    ["a3", "lens/image.fits", "lens/psf.fits", "", "10.3"],
]
BAD = [
    ["corrupt", "corrupt.fits", "lens/psf.fits", "", ""],
    ["missing", "lens/no_such_image.fits", "lens/psf.fits", "", ""],
]


@pytest.fixture(scope="module")
def client():
    """A 2-worker LocalCluster of the survey engine (processes, one thread each)."""
    from vaelens.survey.engine import dask_client

    with dask_client(2) as c:
        yield c


@pytest.fixture(scope="module")
def batch(mock, client, tmp_path_factory):
    """The first run: three good rows, a corrupt and a missing image, on the 2 workers."""
    out = tmp_path_factory.mktemp("survey_out") / "fits"
    cat = _catalog(mock, GOOD + BAD)
    res = fit_catalog(cat, out, options=TINY, client=client, progress=False)
    return cat, out, res


# --------------------------------------------------------------------------- catalogue
def test_catalog_rows_paths_and_overrides(tmp_path):
    path = tmp_path / "sub" / "cat.csv"
    path.parent.mkdir()
    path.write_text(
        "id,image,psf,mask_radius,exptime,shear,gamma_range,redshift\n"
        "007,img.fits,/abs/psf.fits,1.5,,no,1.6 2.4,0.5\n"
        "x.2,img2.fits,psf.fits,-1,2000,maybe,,0.7\n"
    )
    rows = read_catalog(path)
    assert [r.id for r in rows] == ["007", "x.2"]  # read as text: the zeros stay
    assert rows[0].image == str(path.parent.absolute() / "img.fits")
    assert rows[0].psf == "/abs/psf.fits"
    assert rows[0].options == {"mask_radius": 1.5, "shear": False, "gamma_range": (1.6, 2.4)}
    assert rows[0].error is None
    # bad cells make the row fail (named), not the catalogue; exptime is exposure_time
    assert "mask_radius" in rows[1].error and "shear" in rows[1].error
    assert rows[1].options == {"exposure_time": 2000.0}


def test_catalog_fits_and_ecsv_read_like_csv(tmp_path):
    t = Table({"id": ["a", "b"], "image": ["i.fits", "j.fits"], "psf": ["p.fits", "p.fits"],
               "bkg_rms": [0.01, np.nan], "starts": [4, 2]})
    for name in ("cat.fits", "cat.ecsv"):
        t.write(tmp_path / name)
        rows = read_catalog(tmp_path / name)
        assert [r.id for r in rows] == ["a", "b"]
        assert rows[0].options == {"bkg_rms": 0.01, "starts": 4}
        assert rows[1].options == {"starts": 2}  # NaN: not given
        assert rows[1].image == str(tmp_path.absolute() / "j.fits")


@pytest.mark.parametrize(
    "text, match",
    [
        ("id,image\na,i.fits\n", "no column psf"),
        ("id,image,psf\na,i,p\na,j,p\n", "appears twice"),
        ("id,image,psf\n../up,i,p\n", "not a folder name"),
        ("id,image,psf\n,i,p\n", "no id"),
        ("id,image,psf,bkg_rms,BKG_RMS\na,i,p,1,2\n", "both set bkg_rms"),
    ],
)
def test_catalog_errors(tmp_path, text, match):
    (tmp_path / "cat.csv").write_text(text)
    with pytest.raises(LensCatalogError, match=match):
        read_catalog(tmp_path / "cat.csv")


def test_catalog_missing_file(tmp_path):
    with pytest.raises(LensCatalogError, match="not found"):
        read_catalog(tmp_path / "nope.csv")


def test_options_are_parsed_and_checked():
    assert parse_option("starts", "8") == 8 and parse_option("starts", np.int64(3)) == 3
    assert parse_option("dense_mass", "True") is True and parse_option("shear", 0) is False
    assert parse_option("hdu", "SCI") == "SCI" and parse_option("hdu", "1") == 1
    assert parse_option("gamma_range", [1.7, 2.3]) == (1.7, 2.3)
    for name, value in [("bkg_rms", "0"), ("starts", "2.5"), ("method", "mcmc"),
                        ("seed", "-1"), ("gamma_range", "1.5")]:
        with pytest.raises(ValueError, match=name):
            parse_option(name, value)
    with pytest.raises(ValueError, match="unknown option 'nsteps'"):
        check_options({"nsteps": 3})
    opts = check_options({"method": "nuts", "exptime": "100", "theta_E": None})
    assert opts["method"] == "nuts" and opts["exposure_time"] == 100.0
    assert opts["theta_E"] is None and opts["starts"] == 8  # the vaelens fit defaults
    assert is_missing(np.ma.masked) and is_missing(" ") and is_missing(float("nan"))
    assert not is_missing(0.0) and not is_missing("0")


def test_batch_parser_has_exactly_the_survey_options():
    """Every option of the survey is a ``vaelens batch`` argument and every fit option of
    ``vaelens fit`` (but the image, PSF, output and precision) is a survey option."""
    from vaelens.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    # besides the inputs and output: the band names of a multi-band fit and the checkpoint
    # controls of one sampling run are not per-object options
    fit_dests = {a.dest for a in sub["fit"]._actions} - {
        "help", "image", "psf", "out", "force", "precision", "band_names", "resume",
        "resume_cwd", "chunk_size", "save_source_draws"}
    batch_dests = {a.dest for a in sub["batch"]._actions}
    assert fit_dests == set(OPTIONS)
    assert set(OPTIONS) <= batch_dests
    args = parser.parse_args(["batch", "cat.csv", "--out", "o", "--starts", "3", "--no-shear"])
    from vaelens.commands.batch import batch_options

    opts = check_options(batch_options(args))
    assert opts["method"] == "map" and opts["starts"] == 3 and opts["shear"] is False
    assert opts["hdu"] == 0


# --------------------------------------------------------------------------- results table
def test_results_columns_are_documented():
    from vaelens.models import LensSpec

    for m, s, ll, src in itertools.product(["epl", "sie"], [True, False], [True, False],
                                           ["vae", "sersic"]):
        spec = LensSpec(mass_profile=m, include_shear=s, include_lens_light=ll,
                        source_model=src)
        for name in spec.parameter_names():
            assert name in PARAMETER_UNITS, name
            assert PARAMETER_UNITS[name] in column_description(f"{name}_sd")
    import vaelens.survey.results as results

    for name in COLUMNS:  # the module docstring documents every fixed column
        assert f"``{name}``" in results.__doc__, name
    with pytest.raises(KeyError, match="undocumented"):
        column_description("foo")


def test_results_table_round_trip_keeps_earlier_rows(tmp_path):
    path = tmp_path / "results.csv"
    t = ResultsTable(path)
    t.add({"id": "a", "status": "ok", "theta_E": 1.0 / 3.0, "theta_E_sd": 0.01, "wall_s": 2.5})
    t.add({"id": "b", "status": "failed", "error": "ValueError: bad\nsecond line"})
    t.write()
    before = path.read_text().splitlines()
    assert before[0].startswith("id,status,error,method,reduced_chi2")
    assert before[0].endswith("theta_E,theta_E_sd")
    t2 = ResultsTable(path)
    assert t2.status("a") == "ok" and t2.status("b") == "failed" and t2.status("c") is None
    t2.add({"id": "b", "status": "ok", "gamma": 2.0, "gamma_sd": 0.1})  # retried: moves last
    t2.write()
    after = path.read_text().splitlines()
    assert after[1] == before[1] + ",,"  # row a as it was, plus empty gamma, gamma_sd cells
    assert after[2].startswith("b,ok,") and after[2].endswith(",2.0,0.1")
    assert float(t2.to_pandas().loc[0, "theta_E"]) == 1.0 / 3.0  # repr round trip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temp file left
    (tmp_path / "other.csv").write_text("name,value\nx,1\n")
    with pytest.raises(ValueError, match="not a vaelens results table"):
        ResultsTable(tmp_path / "other.csv")


# --------------------------------------------------------------------------- engine
def test_worker_env_sizes_xla_to_the_worker(monkeypatch):
    from vaelens.survey.engine import worker_env

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_foo=1")
    env = worker_env(1)
    assert env["NPROC"] == "1"
    assert env["XLA_FLAGS"].split() == ["--xla_foo=1", "--xla_force_host_platform_device_count=1"]


def test_local_cluster_workers_get_the_environment(client):
    import os

    envs = client.run(lambda: (os.environ.get("NPROC"), os.environ.get("XLA_FLAGS")))
    assert len(envs) == 2
    for nproc, flags in envs.values():
        assert int(nproc) >= 1
        assert f"--xla_force_host_platform_device_count={nproc}" in flags


# --------------------------------------------------------------------------- batch runs
def test_batch_fits_good_rows_and_records_bad_ones(batch):
    cat, out, res = batch
    assert sorted(res.fitted) == ["a1", "a2", "a3"]
    assert sorted(res.failed) == ["corrupt", "missing"] and res.skipped == ()
    table = res.results.set_index("id")
    assert "not a readable FITS file" in table.loc["corrupt", "error"]
    assert "not found" in table.loc["missing", "error"]
    for obj in ("corrupt", "missing"):
        assert "\n" not in table.loc[obj, "error"] and not (out / obj).exists()
    log = (out / "errors.log").read_text()
    assert "--- corrupt" in log and "--- missing" in log and "Traceback" in log
    # every column is documented; the MAP columns are there and finite
    for col in res.results.columns:
        column_description(col)
    for name in ("theta_E", "e1", "e2", "center_x", "center_y", "source_R_sersic"):
        assert np.all(np.isfinite(table.loc[["a1", "a2", "a3"], [name, f"{name}_sd"]]))
    assert "gamma" not in table.columns  # an SIE
    assert table.loc["a1", "status"] == "ok" and table.loc["a1", "method"] == "map"
    assert np.all(table.loc[["a1", "a2", "a3"], "wall_s"] > 0)
    assert set(table.loc[["a1", "a2", "a3"], "worker"]) <= {"0", "1"}  # LocalCluster names
    truth = json.loads((cat.parent / "lens" / "truth.json").read_text())["parameters"]
    assert abs(table.loc["a1", "theta_E"] - truth["theta_E"]) < 0.2  # (EPL + shear truth)
    # the folders are those of vaelens fit; the catalogue's seed column reached the fit
    s1 = json.loads((out / "a1" / "summary.json").read_text())
    s2 = json.loads((out / "a2" / "summary.json").read_text())
    assert (s1["seed"], s2["seed"], s1["id"]) == (0, 1, "a1")
    assert (s1["starts"], s1["method"], s1["spec"]["mass_profile"]) == (2, "map", "sie")
    assert s1["x64"] is True  # the default precision of a MAP fit, as in vaelens fit
    assert (out / "a1" / "posterior.nc").is_file() and (out / "a1" / "model.png").is_file()
    assert any((out / ".jax_cache").iterdir())  # the shared compilation cache


def test_resume_fits_only_the_missing_rows(batch, client, tmp_path):
    cat, first, res = batch
    out = tmp_path / "fits"
    shutil.copytree(first, out)
    # an interrupted run: a3 never finished (no row, a half-written folder left)
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(line for line in lines
                                             if not line.startswith("a3,")))
    shutil.rmtree(out / "a3")
    (out / "a3").mkdir()
    (out / ".a3.tmp-killed").mkdir()  # the temporary folder of a write that was killed
    kept = {line.split(",")[0]: line for line in lines[1:] if line[:3] in ("a1,", "a2,")}
    mtime = (out / "a1" / "summary.json").stat().st_mtime_ns
    again = fit_catalog(cat, out, options=TINY, client=client, progress=False)
    assert again.skipped == ("a1", "a2")
    assert sorted(again.fitted) == ["a3"] and sorted(again.failed) == ["corrupt", "missing"]
    new = (out / "results.csv").read_text().splitlines(keepends=True)
    assert new[0] == lines[0]
    for obj, line in kept.items():
        assert line in new, obj  # finished rows unchanged, character for character
    assert sorted(line.split(",")[0] for line in new[1:]) == sorted(
        ["a1", "a2", "a3", "corrupt", "missing"]
    )
    assert (out / "a1" / "summary.json").stat().st_mtime_ns == mtime
    assert (out / "a3" / "summary.json").is_file() and not (out / ".a3.tmp-killed").exists()
    # a third run has nothing left but the failed rows
    third = fit_catalog(cat, out, options=TINY, client=client, progress=False)
    assert sorted(third.skipped) == ["a1", "a2", "a3"] and third.fitted == ()


def test_cli_batch_reports_failures_with_exit_status_1(mock, tmp_path, capsys):
    from vaelens.cli import main

    cat = _catalog(mock, BAD, name="bad.csv")
    code = main(["-q", "batch", str(cat), "--out", str(tmp_path / "o"), "--workers", "0",
                 "--source", "sersic"])
    out = capsys.readouterr().out
    assert code == 1
    assert "0 fitted, 2 failed, 0 skipped" in out and "failed corrupt:" in out
    rows = list(csv.DictReader(open(tmp_path / "o" / "results.csv")))
    assert [r["status"] for r in rows] == ["failed", "failed"]
    # a broken catalogue is a usage error (exit 2, one line)
    (tmp_path / "broken.csv").write_text("name,file\nx,y\n")
    assert main(["batch", str(tmp_path / "broken.csv"), "--out", str(tmp_path / "p")]) == 2
    assert "no column id, image, psf" in capsys.readouterr().err
