"""``vaelens compare``: one sigma for the table and the figure, and the same folder refused.

The two fit folders are written directly (``summary.json`` and ``posterior.nc`` as ``vaelens
fit`` writes them), with posterior draws of known mean and sd, so every number of the table is
known in advance.
"""

import json
import os

import arviz as az
import numpy as np
import pytest
from cli_util import run_cli

from vaelens import plotting

MAP = {"theta_E": (1.21, 0.01), "gamma": (2.00, 0.03), "e1": (0.05, 0.02)}
POSTERIOR = {"theta_E": (1.20, 0.02), "gamma": (2.06, 0.03), "e1": (0.05, 0.01)}


def _draws(mean, sd, shape, seed):
    """Draws whose sample mean and sd (ddof=1) are exactly ``mean`` and ``sd``."""
    x = np.random.default_rng(seed).normal(size=shape)
    return mean + sd * (x - x.mean()) / x.std(ddof=1)


def _write_fit(folder, method, parameters, posterior):
    folder.mkdir()
    idata = az.from_dict(posterior=posterior)
    idata.attrs["method"] = method
    idata.to_netcdf(str(folder / "posterior.nc"))
    summary = {
        "method": method,
        "parameters": parameters,
        "fit": {"chi2": 1650.0, "reduced_chi2": 1.02},
        "timings_s": {"inference_total": 1.0},
        "truth": None,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture()
def fits(tmp_path):
    map_dir = _write_fit(
        tmp_path / "fit_map",
        "map",
        {n: {"map": m, "laplace_sd": s} for n, (m, s) in MAP.items()},
        {n: _draws(m, s, (1, 400), k) for k, (n, (m, s)) in enumerate(MAP.items())},
    )
    nuts_dir = _write_fit(
        tmp_path / "fit_nuts",
        "nuts",
        {n: {"mean": m, "sd": s} for n, (m, s) in POSTERIOR.items()},
        {n: _draws(m, s, (2, 300), 10 + k) for k, (n, (m, s)) in enumerate(POSTERIOR.items())},
    )
    return map_dir, nuts_dir


def test_table_and_figure_use_the_posterior_sd(fits, tmp_path, monkeypatch):
    figures = []
    original = plotting.plot_comparison

    def keep(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plotting, "plot_comparison", keep)
    out = tmp_path / "cmp"
    code, text, err = run_cli(["compare", *fits, "--out", out])
    assert code == 0, err
    rows = json.loads((out / "comparison.json").read_text())["parameters"]
    for name, (m, msd) in MAP.items():
        mean, sd = POSTERIOR[name]
        assert rows[name]["map"] == pytest.approx(m) and rows[name]["map_sd"] == pytest.approx(msd)
        assert rows[name]["mean"] == pytest.approx(mean) and rows[name]["sd"] == pytest.approx(sd)
        # (MAP - mean) in units of the posterior sd, not of the two sigmas in quadrature
        assert rows[name]["diff_sigma"] == pytest.approx((m - mean) / sd)
        assert rows[name]["sd_ratio"] == pytest.approx(msd / sd)
    # the figure's panels show the table's numbers
    (fig,) = figures
    titles = {ax.get_title().split("  ")[0]: ax.get_title() for ax in fig.axes if ax.get_title()}
    assert "+0.5 sd" in titles[r"$\theta_E$ [arcsec]"]  # (1.21 - 1.20) / 0.02
    assert "-2.0 sd" in titles[r"$\gamma$"]  # (2.00 - 2.06) / 0.03
    assert "+0.0 sd" in titles[r"$e_1$"]
    assert "diff_sigma" in text and (out / "comparison.png").is_file()


def _assert_refused(code, err, *fragments):
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_the_same_folder_twice_is_refused(fits, tmp_path):
    map_dir, _ = fits
    spellings = [
        map_dir,
        f"{map_dir}/",
        map_dir.parent / "." / map_dir.name,
        map_dir.parent / "fit_nuts" / ".." / map_dir.name,
    ]
    link = tmp_path / "link_to_map"
    os.symlink(map_dir, link, target_is_directory=True)
    spellings.append(link)
    for other in spellings:
        code, _, err = run_cli(["compare", map_dir, other, "--out", tmp_path / "cmp"])
        _assert_refused(code, err, "same folder")
    assert not (tmp_path / "cmp").exists()
    # relative spellings too
    cwd = os.getcwd()
    try:
        os.chdir(map_dir.parent)
        code, _, err = run_cli(["compare", "fit_map", "./fit_map", "--out", "cmp"])
    finally:
        os.chdir(cwd)
    _assert_refused(code, err, "same folder")


def test_the_first_folder_must_be_a_map_fit(fits, tmp_path):
    map_dir, nuts_dir = fits
    code, _, err = run_cli(["compare", nuts_dir, map_dir, "--out", tmp_path / "cmp"])
    _assert_refused(code, err, "'nuts' fit", "--method map")
    code, _, err = run_cli(["compare", tmp_path / "nope", nuts_dir])
    _assert_refused(code, err, "not found")
