"""Figures of vaelens.plotting: panels, titles, truth lines, colour normalisation."""

import matplotlib

matplotlib.use("Agg")

import arviz as az
import numpy as np
import pytest
from matplotlib import colors

from vaelens import plotting


def _posterior(seed=0, chains=2, draws=200):
    rng = np.random.default_rng(seed)
    truth = dict(theta_E=1.2, gamma=2.05, e1=0.1, e2=-0.05, gamma1=0.02, gamma2=-0.01)
    post = {k: rng.normal(v, 0.01, (chains, draws)) for k, v in truth.items()}
    post["z"] = rng.normal(size=(chains, draws, 4))  # a vector site, never in lens plots
    return az.from_dict(posterior=post), truth


def _visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_asinh_norm_spans_data_and_is_monotonic():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 0.01, (50, 50))
    image[25, 25] = 10.0
    norm = plotting.asinh_norm(image)
    assert isinstance(norm, colors.AsinhNorm)
    assert norm.vmin < 0 < norm.vmax <= 10.0
    values = np.linspace(norm.vmin, norm.vmax, 20)
    assert np.all(np.diff(norm(values)) > 0)
    # the stretch is far from linear: the noise level sits well above 1% of the range
    assert norm(0.03) - norm(0.0) > 0.05


def test_plot_model_has_five_panels_with_titles_and_reduced_chi2():
    rng = np.random.default_rng(2)
    model = np.exp(-np.hypot(*np.mgrid[-20:20, -20:20]) / 5.0)
    sigma = 0.05
    data = model + rng.normal(0, sigma, model.shape)
    src = rng.random((64, 64))
    fig = plotting.plot_model(
        data,
        model,
        sigma,
        extent=(1, -1, -1, 1),
        source_mean=src,
        source_std=0.1 * src,
        source_extent=(-0.5, 0.5, -0.5, 0.5),
        title="demo",
    )
    panels = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in panels]
    assert titles[:2] == ["data", "model"]
    assert titles[2].startswith("normalised residual")
    assert titles[3:] == ["source mean", "source std"]
    # chi^2_nu of pure noise residuals is ~1 and is written in the title
    chi2 = float(titles[2].split("=")[1].rstrip(")$"))
    assert 0.8 < chi2 < 1.2
    # residual panel uses a symmetric +-5 sigma linear scale
    im = panels[2].get_images()[0]
    assert im.norm.vmin == -5 and im.norm.vmax == 5
    # image-plane panels have the arcsec extent given (RA increasing to the left)
    assert panels[0].get_images()[0].get_extent() == [1, -1, -1, 1]
    assert fig._suptitle.get_text() == "demo"


def test_plot_model_without_source_and_shape_check():
    data = np.ones((10, 10))
    fig = plotting.plot_model(data, data, 1.0)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
    with pytest.raises(ValueError, match="shape"):
        plotting.plot_model(data, np.ones((10, 11)), 1.0)


def test_plot_model_masks_residuals_outside_mask():
    data = np.ones((10, 10))
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    fig = plotting.plot_model(data, data + 1.0, 1.0, mask=mask)
    resid = fig.axes[2].get_images()[0].get_array()
    assert np.ma.count_masked(resid) + np.isnan(np.ma.filled(resid, 0)).sum() == 100 - 9
    assert "1.00" in fig.axes[2].get_title()  # chi^2 / N over the 9 unmasked pixels


def test_corner_plot_grid_and_truth_lines():
    idata, truth = _posterior()
    fig = plotting.plot_corner(idata, truths=truth)
    names = plotting.lens_parameter_names(idata)
    assert names == ["theta_E", "gamma", "e1", "e2", "gamma1", "gamma2"]
    n = len(names)
    assert len(_visible_axes(fig)) == n * (n + 1) // 2
    # every diagonal panel has a truth line at the true value
    diag = [ax for ax in _visible_axes(fig) if ax.get_title()]
    assert len(diag) == n
    xs = [line.get_xdata()[0] for line in diag[0].get_lines() if line.get_color() == "C1"]
    assert xs and np.isclose(xs[0], truth["theta_E"])


def test_corner_plot_rejects_empty():
    idata = az.from_dict(posterior={"z": np.zeros((1, 10, 3))})
    with pytest.raises(ValueError):
        plotting.plot_corner(idata)


def test_trace_plot_rows():
    idata, _ = _posterior()
    fig = plotting.plot_trace(idata, var_names=["theta_E", "gamma"])
    axes = _visible_axes(fig)
    assert len(axes) == 4
    # right column: one line per chain with `draws` points
    lines = axes[1].get_lines()
    assert len(lines) >= 2 and len(lines[0].get_xdata()) == 200


def test_comparison_figure_panels_and_sigma_difference():
    table = {
        "theta_E": dict(map=1.21, map_sd=0.01, mean=1.20, sd=0.01, truth=1.2),
        "gamma": dict(map=2.0, map_sd=0.02, mean=2.0, sd=0.02),
    }
    fig = plotting.plot_comparison(table)
    axes = _visible_axes(fig)
    assert len(axes) == 2
    assert "+0.7" in axes[0].get_title()  # 0.01 / hypot(0.01, 0.01)
    assert len(axes[0].containers) == 2  # two error bars
    dashed = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1  # truth line only where known
    assert not [ln for ln in axes[1].get_lines() if ln.get_linestyle() == "--"]


def test_comparison_accepts_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"map": [1.0], "map_sd": [0.1], "mean": [1.1], "sd": [0.1]}, index=["e1"])
    fig = plotting.plot_comparison(df)
    assert len(_visible_axes(fig)) == 1


def test_galaxy_fit_rows_and_columns():
    rng = np.random.default_rng(3)
    stamps = rng.random((3, 16, 16))
    fig = plotting.plot_galaxy_fit(stamps, stamps, 0.1, pixel_scale=0.03, titles=list("abc"))
    titles = [ax.get_title() for ax in _visible_axes(fig)]
    assert titles.count("stamp") == 3 and titles.count("decoder model") == 3
    assert sum(t.startswith("normalised residual") for t in titles) == 3
    assert "0.00" in titles[2]
