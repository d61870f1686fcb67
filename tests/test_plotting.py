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
        num_parameters=100,
    )
    panels = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in panels]
    assert titles[:2] == ["data", "model"]
    assert titles[2].startswith("normalised residual")
    assert titles[3:] == ["source mean", "source std"]
    # the title's chi^2_nu is chi^2 / (N_pix - N_par), the definition of reduced_chi2
    chi2 = np.sum(((data - model) / sigma) ** 2)
    shown = float(titles[2].split("=")[1].rstrip(")$"))
    assert shown == pytest.approx(chi2 / (data.size - 100), abs=0.005)
    assert shown != pytest.approx(chi2 / data.size, abs=0.005)
    # residual panel uses a symmetric +-5 sigma linear scale
    im = panels[2].get_images()[0]
    assert im.norm.vmin == -5 and im.norm.vmax == 5
    # image-plane panels have the arcsec extent given (RA increasing to the left)
    assert panels[0].get_images()[0].get_extent() == [1, -1, -1, 1]
    assert fig._suptitle.get_text() == "demo"


def test_plot_model_panels_show_the_arrays_they_claim():
    rng = np.random.default_rng(4)
    data = rng.normal(1.0, 0.1, (12, 14))
    model = rng.normal(1.0, 0.1, (12, 14))
    sigma = rng.uniform(0.05, 0.2, (12, 14))  # a per-pixel noise map
    src, src_std = rng.random((16, 16)), rng.random((16, 16))
    fig = plotting.plot_model(data, model, sigma, source_mean=src, source_std=src_std)
    panels = {ax.get_title().split(" (")[0]: ax for ax in fig.axes if ax.get_title()}
    shown = {k: np.ma.getdata(ax.get_images()[0].get_array()) for k, ax in panels.items()}
    np.testing.assert_array_equal(shown["data"], data)
    np.testing.assert_array_equal(shown["model"], model)
    np.testing.assert_allclose(shown["normalised residual"], (data - model) / sigma, rtol=1e-12)
    np.testing.assert_array_equal(shown["source mean"], src)
    np.testing.assert_array_equal(shown["source std"], src_std)
    # data and model share one colour scale, so equal values look equal
    assert panels["data"].get_images()[0].norm is panels["model"].get_images()[0].norm


def test_reduced_chi2_definition_and_errors():
    from vaelens.infer.diagnostics import reduced_chi2

    data = np.arange(12.0).reshape(3, 4)
    model = data - 2.0
    mask = np.zeros((3, 4), bool)
    mask[0] = True  # 4 pixels, each ((data - model) / 0.5)^2 = 16
    chi2, n_pix, red = reduced_chi2(data, model, 0.5, mask, num_parameters=1)
    assert (chi2, n_pix) == (64.0, 4) and red == pytest.approx(64.0 / 3)
    assert reduced_chi2(data, model, 0.5)[2] == pytest.approx(16.0)  # no mask, N_par = 0
    assert np.isnan(reduced_chi2(data, model, 0.5, mask, num_parameters=4)[2])
    with pytest.raises(ValueError, match="shape"):
        reduced_chi2(data, model[:, :3], 1.0)
    with pytest.raises(ValueError, match="mask"):
        reduced_chi2(data, model, 1.0, mask[:2])


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
    # one axis per parameter pair and one marginal per parameter
    assert len(_visible_axes(fig)) == n * (n + 1) // 2
    # every diagonal panel has a truth line at the true value and the 16/50/84 interval
    diag = [ax for ax in _visible_axes(fig) if ax.get_title()]
    assert len(diag) == n
    for ax, name in zip(diag, names, strict=True):
        xs = [line.get_xdata()[0] for line in ax.get_lines() if line.get_color() == "C1"]
        assert xs and np.isclose(xs[0], truth[name]), name
        draws = np.asarray(idata.posterior[name])
        shown = float(ax.get_title().strip("$").split("^")[0])  # "$median^{+up}_{-low}$"
        # printed to two significant figures of the error: within 5% of the sd
        assert shown == pytest.approx(np.median(draws), abs=0.05 * draws.std()), name
    # the 2-d panels of the bottom row hold KDE contours and are labelled with the parameter
    bottom = [ax for ax in _visible_axes(fig) if ax.get_xlabel()]
    assert len(bottom) == n
    assert any(ax.collections for ax in bottom[:-1])
    assert fig._suptitle.get_text() == "posterior (2 chains x 200 draws)"


def test_corner_plot_of_a_map_fit_says_laplace():
    idata, _ = _posterior(chains=1, draws=300)
    idata.attrs["method"] = "map_lbfgs_laplace"
    fig = plotting.plot_corner(idata, ["theta_E", "gamma", "e1"])
    assert fig._suptitle.get_text() == "Laplace approximation at the MAP (300 draws)"
    assert len(_visible_axes(fig)) == 6
    idata.attrs["method"] = "nuts"
    assert "Laplace" not in plotting.plot_corner(idata, ["theta_E", "gamma"])._suptitle.get_text()


def test_corner_plot_of_a_single_point_and_a_single_parameter():
    one = az.from_dict(posterior={"theta_E": np.ones((1, 1)), "gamma": 2 * np.ones((1, 1))})
    assert len(_visible_axes(plotting.plot_corner(one))) == 3  # a MAP point: no KDE, no crash
    idata, _ = _posterior()
    assert len(_visible_axes(plotting.plot_corner(idata, ["theta_E"]))) == 1


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
    np.testing.assert_array_equal(lines[0].get_ydata(), idata.posterior["theta_E"][0])


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("map_bfgs_laplace", "Laplace approximation at the MAP (400 draws)"),
        ("svi_mvn", "SVI guide mvn (400 draws)"),
        ("nuts", "NUTS posterior (2 chains x 200 draws)"),
    ],
)
def test_trace_plot_title_says_what_the_draws_are(method, expected):
    idata, _ = _posterior()
    idata.attrs["method"] = method
    assert plotting.plot_trace(idata, ["theta_E"])._suptitle.get_text() == expected


def test_comparison_figure_panels_and_sigma_difference():
    table = {
        "theta_E": dict(map=1.21, map_sd=0.01, mean=1.20, sd=0.02, truth=1.2),
        "gamma": dict(map=2.0, map_sd=0.02, mean=2.0, sd=0.02),
    }
    fig = plotting.plot_comparison(table)
    axes = _visible_axes(fig)
    assert len(axes) == 2
    assert "+0.5 sd" in axes[0].get_title()  # (1.21 - 1.20) / 0.02, the posterior sd
    assert len(axes[0].containers) == 2  # two error bars
    # the bars are MAP +- map_sd and mean +- sd
    (_, caps_map, _), (_, caps_post, _) = (c.lines for c in axes[0].containers)
    assert np.ptp([c.get_ydata()[0] for c in caps_map]) == pytest.approx(0.02)
    assert np.ptp([c.get_ydata()[0] for c in caps_post]) == pytest.approx(0.04)
    dashed = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1  # truth line only where known
    assert not [ln for ln in axes[1].get_lines() if ln.get_linestyle() == "--"]


def test_comparison_figure_shows_the_tables_number():
    from vaelens.infer.compare import difference_in_sd

    table = {"e1": dict(map=0.1, map_sd=0.01, mean=0.09, sd=0.005, diff_sigma=2.0)}
    title = _visible_axes(plotting.plot_comparison(table))[0].get_title()
    assert "+2.0 sd" in title and difference_in_sd(0.1, 0.09, 0.005) == pytest.approx(2.0)
    assert np.isnan(difference_in_sd(1.0, 0.0, 0.0))


def test_comparison_accepts_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"map": [1.0], "map_sd": [0.1], "mean": [1.1], "sd": [0.1]}, index=["e1"])
    fig = plotting.plot_comparison(df)
    assert len(_visible_axes(fig)) == 1
    assert "-1.0 sd" in _visible_axes(fig)[0].get_title()


def test_galaxy_fit_rows_and_columns():
    rng = np.random.default_rng(3)
    stamps = rng.random((3, 16, 16))
    fig = plotting.plot_galaxy_fit(stamps, stamps, 0.1, pixel_scale=0.03, titles=list("abc"))
    titles = [ax.get_title() for ax in _visible_axes(fig)]
    assert titles.count("stamp") == 3 and titles.count("decoder model") == 3
    assert sum(t.startswith("normalised residual") for t in titles) == 3
    assert "0.00" in titles[2]
