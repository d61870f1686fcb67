"""Figures of lens fits, posteriors and galaxy fits (matplotlib, no global state).

Every function returns a :class:`matplotlib.figure.Figure` built with the object-oriented
interface (no ``pyplot`` state machine, so it is safe under any backend, including ``Agg`` in a
headless process) and never calls ``show``; save with ``fig.savefig(path)``.

HST images span several decades in surface brightness, so images are shown with an ``asinh``
stretch (Lupton et al. 2004, PASP 116, 133): linear near the background, logarithmic in the
bright lens core. Normalised residuals ``(data - model) / sigma`` use a fixed symmetric linear
scale of +-5 sigma so that a good fit looks like white noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure

__all__ = [
    "LENS_PARAMETERS",
    "asinh_norm",
    "plot_model",
    "plot_corner",
    "plot_trace",
    "posterior_title",
    "plot_comparison",
    "plot_galaxy_fit",
    "lens_parameter_names",
]

#: Lens parameters shown in corner, trace and comparison plots, in this order, when present.
LENS_PARAMETERS: tuple[str, ...] = (
    "theta_E",
    "gamma",
    "e1",
    "e2",
    "center_x",
    "center_y",
    "gamma1",
    "gamma2",
)

_LABELS = {
    "theta_E": r"$\theta_E$ [arcsec]",
    "gamma": r"$\gamma$",
    "e1": r"$e_1$",
    "e2": r"$e_2$",
    "center_x": r"$x_c$ [arcsec]",
    "center_y": r"$y_c$ [arcsec]",
    "gamma1": r"$\gamma_1^{\rm ext}$",
    "gamma2": r"$\gamma_2^{\rm ext}$",
}


def asinh_norm(image: np.ndarray, *, softening: float | None = None) -> colors.Normalize:
    """An ``asinh`` colour normalisation suited to an HST image.

    Parameters
    ----------
    image
        The image (any units); NaNs are ignored.
    softening
        Linear width of the stretch in image units; by default a robust estimate of the noise
        (1.4826 x the median absolute deviation of the faint half of the pixels).

    Returns
    -------
    matplotlib.colors.AsinhNorm
        Limits from the 0.5th percentile to the maximum (99.9th percentile for robustness).
    """
    finite = np.asarray(image, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return colors.Normalize(0.0, 1.0)
    vmin = float(np.percentile(finite, 0.5))
    vmax = float(np.percentile(finite, 99.9))
    if softening is None:
        faint = finite[finite <= np.median(finite)]
        mad = np.median(np.abs(faint - np.median(faint))) if faint.size else 0.0
        softening = 1.4826 * float(mad)
    span = max(vmax - vmin, 1e-30)
    softening = float(np.clip(softening, 1e-3 * span, 0.5 * span))
    if vmax <= vmin:
        vmax = vmin + 1.0
    return colors.AsinhNorm(linear_width=softening, vmin=vmin, vmax=vmax)


def _image_panel(fig: Figure, ax, image, *, extent, norm=None, cmap="magma", title="", cbar=""):
    im = ax.imshow(
        image, origin="lower", extent=extent, norm=norm, cmap=cmap, interpolation="nearest"
    )
    ax.set_title(title, fontsize=10)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if isinstance(norm, colors.AsinhNorm):
        cb.set_ticks(_asinh_ticks(norm))
        cb.ax.yaxis.set_major_formatter(_tick_formatter())
        cb.ax.yaxis.set_minor_locator(_null_locator())
    if cbar:
        cb.set_label(cbar, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    ax.tick_params(labelsize=7)
    return im


def _asinh_ticks(norm: colors.AsinhNorm, n: int = 6) -> list[float]:
    """Ticks equally spaced in the stretched space, rounded to one significant figure."""
    values = norm.inverse(np.linspace(0.0, 1.0, n))
    ticks = []
    for v in np.asarray(values, dtype=float):
        if v == 0 or not np.isfinite(v):
            ticks.append(0.0)
            continue
        mag = 10 ** np.floor(np.log10(abs(v)))
        ticks.append(float(np.round(v / mag) * mag))
    if norm.vmin <= 0.0 <= norm.vmax:
        ticks.append(0.0)
    kept: list[float] = []
    for t in sorted({t for t in ticks if np.isfinite(t) and norm.vmin <= t <= norm.vmax}):
        if not kept or float(norm(t)) - float(norm(kept[-1])) > 0.1:
            kept.append(t)
    return kept


def _tick_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:.2g}")


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def plot_model(
    data: np.ndarray,
    model: np.ndarray,
    sigma: np.ndarray,
    *,
    extent: Sequence[float] | None = None,
    mask: np.ndarray | None = None,
    source_mean: np.ndarray | None = None,
    source_std: np.ndarray | None = None,
    source_extent: Sequence[float] | None = None,
    title: str | None = None,
    units: str = "e-/s",
    source_units: str = "e-/s per source px",
    num_parameters: int = 0,
) -> Figure:
    """Data, model, normalised residuals and (optionally) the source mean and standard deviation.

    Parameters
    ----------
    data, model
        (ny, nx) observed and model images in the same units (``units``).
    sigma
        (ny, nx) (or scalar) noise standard deviation of each pixel, same units.
    extent
        ``(left, right, bottom, top)`` in arcsec for the image-plane panels (``PixelGrid.extent``);
        pixel indices when None.
    mask
        (ny, nx) boolean, True where the pixel enters the likelihood; outside pixels are greyed
        out in the residual panel and the reduced chi^2 is computed inside it.
    source_mean, source_std
        Source-plane surface brightness (mean over the posterior, and its standard deviation),
        shown on ``source_extent`` (arcsec). ``source_std`` may be None (point estimate).
    title
        Figure title (e.g. method and chi^2).
    units
        Label of the colour bars of the image panels.
    source_units
        Label of the colour bars of the source panels.
    num_parameters
        Number of fitted parameters N_par: the residual panel's title gives the reduced chi^2
        chi^2 / (N_pix - N_par) over the unmasked pixels
        (:func:`vaelens.infer.diagnostics.reduced_chi2`).

    Returns
    -------
    matplotlib.figure.Figure
        Three to five panels, titled "data", "model", "normalised residual", "source mean",
        "source std".
    """
    from vaelens.infer.diagnostics import reduced_chi2

    data = np.asarray(data, dtype=float)
    model = np.asarray(model, dtype=float)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), data.shape)
    if data.shape != model.shape:
        raise ValueError(f"data {data.shape} and model {model.shape} differ in shape")
    resid = (data - model) / sigma
    inside = np.ones(data.shape, bool) if mask is None else np.asarray(mask, bool)
    _, _, chi2_nu = reduced_chi2(data, model, sigma, inside, num_parameters=num_parameters)
    panels = 3 + (source_mean is not None) + (source_std is not None)
    fig = Figure(figsize=(3.6 * panels, 3.6), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    norm = asinh_norm(data)
    _image_panel(fig, axes[0], data, extent=extent, norm=norm, title="data", cbar=units)
    _image_panel(fig, axes[1], model, extent=extent, norm=norm, title="model", cbar=units)
    shown = np.where(inside, resid, np.nan)
    cmap = _cmap_with_bad("RdBu_r")
    _image_panel(
        fig,
        axes[2],
        shown,
        extent=extent,
        norm=colors.Normalize(-5, 5),
        cmap=cmap,
        title=rf"normalised residual ($\chi^2_\nu$={chi2_nu:.2f})",
        cbar=r"(data - model) / $\sigma$",
    )
    k = 3
    if source_mean is not None:
        src = np.asarray(source_mean, dtype=float)
        _image_panel(
            fig,
            axes[k],
            src,
            extent=source_extent,
            norm=asinh_norm(src),
            cmap="viridis",
            title="source mean",
            cbar=source_units,
        )
        k += 1
    if source_std is not None:
        std = np.asarray(source_std, dtype=float)
        _image_panel(
            fig,
            axes[k],
            std,
            extent=source_extent,
            cmap="viridis",
            title="source std",
            cbar=source_units,
        )
    unit = "arcsec" if extent is not None else "pixel"
    for i, ax in enumerate(axes):
        if i >= 3 and source_extent is not None:
            ax.set_xlabel(r"$\beta_x$ [arcsec]", fontsize=8)
            ax.set_ylabel(r"$\beta_y$ [arcsec]", fontsize=8)
        else:
            ax.set_xlabel(f"x [{unit}]", fontsize=8)
            ax.set_ylabel(f"y [{unit}]", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _cmap_with_bad(name: str):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="0.8")


def lens_parameter_names(idata: Any, candidates: Sequence[str] = LENS_PARAMETERS) -> list[str]:
    """Names among ``candidates`` that are scalar variables of ``idata.posterior``.

    Parameters
    ----------
    idata
        ArviZ InferenceData (or anything with a ``posterior`` dataset).
    candidates
        Preferred names, in display order.
    """
    post = idata.posterior
    return [n for n in candidates if n in post.data_vars and post[n].ndim == 2]


def posterior_title(idata: Any) -> str:
    """What the draws of ``idata`` are, for a figure title.

    A MAP fit's InferenceData (``attrs["method"]`` ``"map_*"``) holds draws of the Laplace
    approximation at the MAP, not samples of the posterior, and its title says so:
    "Laplace approximation at the MAP (N draws)". SVI draws are "SVI guide <guide> (N draws)",
    MCMC output "<METHOD> posterior (C chains x D draws)".
    """
    post = idata.posterior
    chains, draws = int(post.sizes.get("chain", 1)), int(post.sizes.get("draw", 1))
    method = str(getattr(idata, "attrs", {}).get("method", ""))
    if method.startswith("map_"):
        return f"Laplace approximation at the MAP ({chains * draws} draws)"
    if method.startswith("svi_"):
        return f"SVI guide {method[4:]} ({chains * draws} draws)"
    what = f"{method.upper()} posterior" if method else "posterior"
    return f"{what} ({chains} chain{'s' if chains != 1 else ''} x {draws} draws)"


#: Probability mass inside the 1, 2 and 3 sigma contours of a 2-d Gaussian, 1 - exp(-k^2 / 2).
_SIGMA_LEVELS_2D = tuple(float(1.0 - np.exp(-0.5 * k**2)) for k in (1, 2, 3))


def plot_corner(
    idata: Any,
    var_names: Sequence[str] | None = None,
    truths: Mapping[str, float] | None = None,
    *,
    max_draws: int = 4000,
    title: str | None = None,
) -> Figure:
    """Corner plot via ``arviz.plot_pair``: 2-d KDE contours below the diagonal, marginals on it.

    The contours enclose 39.3%, 86.5% and 98.9% of the draws (the 1, 2 and 3 sigma regions of
    a 2-d Gaussian); each diagonal panel is titled with the median and the 16th-84th percentile
    interval.

    Parameters
    ----------
    idata
        ArviZ InferenceData with a ``posterior`` group (chain, draw).
    var_names
        Scalar parameters to show; default: the lens parameters present
        (:func:`lens_parameter_names`).
    truths
        Optional true values, drawn as orange lines (vertical in every panel of a parameter's
        column, horizontal in its row).
    max_draws
        The draws are thinned to at most this many for the density estimates (the percentiles
        in the titles use all draws).
    title
        Figure title; default :func:`posterior_title` (which says when the draws are those of
        the Laplace approximation of a MAP fit).

    Returns
    -------
    matplotlib.figure.Figure
        An ``n x n`` grid whose upper triangle is removed: ``n (n + 1) / 2`` axes.
    """
    import arviz as az

    names = list(var_names) if var_names is not None else lens_parameter_names(idata)
    if not names:
        raise ValueError("no scalar posterior variables to plot")
    post = idata.posterior
    samples = np.stack([np.asarray(post[n]).reshape(-1) for n in names], axis=1)
    n_total = post.sizes.get("chain", 1) * post.sizes.get("draw", 1)
    step = max(1, int(np.ceil(n_total / max_draws)))
    thinned = post[names].isel(draw=slice(None, None, step)) if step > 1 else post[names]
    n = len(names)
    size = max(1.7 * n, 4.0)
    fig = Figure(figsize=(size, size), layout="constrained")
    axes = fig.subplots(n, n, squeeze=False, sharex="col")
    for i in range(2, n):  # the 2-d panels of a row share y; the marginals have their own
        for j in range(1, i):
            axes[i, j].sharey(axes[i, 0])
    # a KDE needs spread: a single draw or a parameter held fixed is shown as points
    smooth = samples.shape[0] >= 10 and bool(np.all(np.std(samples, axis=0) > 0))
    if n == 1:
        az.plot_dist(samples[:, 0], ax=axes[0, 0], kind="kde" if smooth else "hist", color="C0")
    else:
        with az.rc_context(rc={"plot.max_subplots": None}):
            az.plot_pair(
                thinned,
                var_names=names,
                kind="kde" if smooth else "scatter",
                marginals=True,
                ax=axes,
                show=False,
                kde_kwargs={
                    "hdi_probs": list(_SIGMA_LEVELS_2D),
                    "fill_last": False,
                    "contourf_kwargs": {"cmap": "Blues"},
                    "contour_kwargs": {"colors": "k", "linewidths": 0.6},
                },
                marginal_kwargs={"kind": "kde" if smooth else "hist", "color": "C0"},
                scatter_kwargs={"color": "C0", "s": 4},
            )
    truths = dict(truths or {})
    for i in range(n):
        for j in range(i + 1):
            ax = axes[i, j]
            tj = truths.get(names[j])
            if tj is not None and np.isfinite(tj):
                ax.axvline(tj, color="C1", lw=1)
            ti = truths.get(names[i])
            if i != j and ti is not None and np.isfinite(ti):
                ax.axhline(ti, color="C1", lw=1)
            ax.tick_params(labelsize=6)
            ax.set_xlabel(_LABELS.get(names[j], names[j]) if i == n - 1 else "", fontsize=8)
            ax.set_ylabel(_LABELS.get(names[i], names[i]) if j == 0 and i > 0 else "", fontsize=8)
        q16, q50, q84 = np.percentile(samples[:, i], [16, 50, 84])
        axes[i, i].set_title(_format_interval(q16, q50, q84), fontsize=8)
        axes[i, i].set_yticks([])
    fig.suptitle(posterior_title(idata) if title is None else title, fontsize=10)
    return fig


def _format_interval(q16: float, q50: float, q84: float) -> str:
    """``median^{+upper}_{-lower}`` with the errors to two significant figures."""
    err = min(q84 - q50, q50 - q16)
    digits = 2 if err <= 0 else max(int(1 - np.floor(np.log10(err))), 0)
    return f"${q50:.{digits}f}^{{+{q84 - q50:.{digits}f}}}_{{-{q50 - q16:.{digits}f}}}$"


def plot_trace(
    idata: Any, var_names: Sequence[str] | None = None, *, title: str | None = None
) -> Figure:
    """Trace plots (marginal density per chain, and draw vs. iteration) via ``arviz.plot_trace``.

    Parameters
    ----------
    idata
        ArviZ InferenceData with a ``posterior`` group.
    var_names
        Scalar parameters; default: the lens parameters present.
    title
        Figure title; default :func:`posterior_title` (the draws of a MAP fit are independent
        draws of its Laplace approximation, so their "trace" shows no chain dynamics).

    Returns
    -------
    matplotlib.figure.Figure
        ``len(var_names)`` rows x 2 columns.
    """
    import arviz as az

    names = list(var_names) if var_names is not None else lens_parameter_names(idata)
    if not names:
        raise ValueError("no scalar posterior variables to plot")
    fig = Figure(figsize=(9, 1.6 * len(names) + 0.5), layout="constrained")
    axes = fig.subplots(len(names), 2, squeeze=False)
    az.plot_trace(
        idata,
        var_names=names,
        axes=axes,
        compact=False,
        show=False,
        plot_kwargs={"linewidth": 0.8},
        trace_kwargs={"linewidth": 0.4, "alpha": 0.8},
    )
    for row, name in zip(axes, names, strict=True):
        for ax in row:
            ax.set_title(_LABELS.get(name, name), fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle(posterior_title(idata) if title is None else title, fontsize=10)
    return fig


def plot_comparison(
    table: Mapping[str, Mapping[str, float]] | Any,
    *,
    labels: tuple[str, str] = ("BFGS (MAP $\\pm$ Laplace)", "NUTS (mean $\\pm$ sd)"),
) -> Figure:
    """Per-parameter comparison of the MAP +- Laplace sigma with the posterior mean +- sd.

    Each parameter gets its own small panel, with the two estimates as error bars, the truth
    (when known) as a dashed line, and the difference Delta = (MAP - mean) / sd in units of the
    posterior sd in the title: the ``diff_sigma`` (``vaelens compare``) or
    ``map_minus_mean_sigma`` (:class:`~vaelens.infer.FitComparison`) column of the table when it
    has one, else the same quantity (:func:`vaelens.infer.compare.difference_in_sd`).

    ``arviz.plot_forest`` draws credible intervals of sample sets on one shared axis; here one
    side is a point estimate with a Laplace sigma (no draws) and the parameters have different
    scales, so each parameter gets its own panel of error bars instead.

    Parameters
    ----------
    table
        ``{name: {"map", "map_sd", "mean", "sd", "truth" (optional), "diff_sigma"
        (optional)}}``, a pandas DataFrame
        indexed by name with those columns, or a :class:`vaelens.infer.FitComparison`
        (``map_sigma`` is accepted for ``map_sd``; missing or NaN entries are skipped).
    labels
        Legend labels of the two estimates.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = _comparison_rows(table)
    if not rows:
        raise ValueError("empty comparison table")
    n = len(rows)
    ncol = min(n, 4)
    nrow = int(np.ceil(n / ncol))
    fig = Figure(figsize=(2.6 * ncol, 2.2 * nrow + 0.4), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, (name, r) in zip(axes, rows, strict=False):
        handles = []
        for k, (val, err, color, marker) in enumerate(
            [(r["map"], r["map_sd"], "C3", "s"), (r["mean"], r["sd"], "C0", "o")]
        ):
            if np.isfinite(val):
                h = ax.errorbar(
                    [k],
                    [val],
                    yerr=[err if np.isfinite(err) else 0.0],
                    fmt=marker,
                    color=color,
                    capsize=4,
                    ms=5,
                )
                handles.append(h)
        truth = r.get("truth", np.nan)
        if np.isfinite(truth):
            ax.axhline(truth, color="k", ls="--", lw=1)
        ax.set_xlim(-0.7, 1.7)
        ax.set_xticks([0, 1], [lab.split()[0] for lab in labels], fontsize=8)
        diff = r["diff_sigma"]
        sub = f"  ($\\Delta$ = {diff:+.1f} sd)" if np.isfinite(diff) else ""
        ax.set_title(_LABELS.get(name, name) + sub, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    legend = [
        Line2D([], [], color="C3", marker="s", ls="", label=labels[0]),
        Line2D([], [], color="C0", marker="o", ls="", label=labels[1]),
    ]
    if any(np.isfinite(r.get("truth", np.nan)) for _, r in rows):
        legend.append(Line2D([], [], color="k", ls="--", label="truth"))
    fig.legend(
        handles=legend, loc="outside upper center", ncol=len(legend), fontsize=8, frameon=False
    )
    fig.supxlabel(
        rf"$\Delta$ = (MAP $-$ mean) / sd, in units of the {labels[1].split()[0]} sd", fontsize=8
    )
    return fig


def _comparison_rows(table) -> list[tuple[str, dict[str, float]]]:
    from vaelens.infer.compare import difference_in_sd

    if hasattr(table, "to_dataframe"):  # vaelens.infer.FitComparison
        table = table.to_dataframe()
    if hasattr(table, "iterrows"):
        items = [(str(idx), dict(row)) for idx, row in table.iterrows()]
    else:
        items = [(str(k), dict(v)) for k, v in table.items()]
    out = []
    for name, r in items:
        if "map_sd" not in r and "map_sigma" in r:
            r["map_sd"] = r["map_sigma"]
        clean = {
            key: float(r[key]) if r.get(key) is not None else np.nan
            for key in ("map", "map_sd", "mean", "sd", "truth")
        }
        # the table's own number when it has one, else the same definition
        diff = r.get("diff_sigma", r.get("map_minus_mean_sigma"))
        clean["diff_sigma"] = (
            float(diff)
            if diff is not None
            else difference_in_sd(clean["map"], clean["mean"], clean["sd"])
        )
        out.append((name, clean))
    return out


def plot_galaxy_fit(
    stamps: np.ndarray,
    models: np.ndarray,
    noise_sigma: np.ndarray | float,
    *,
    pixel_scale: float | None = None,
    titles: Sequence[str] | None = None,
    max_rows: int = 6,
) -> Figure:
    """Galaxy stamps, their decoder models and normalised residuals, one galaxy per row.

    Parameters
    ----------
    stamps, models
        (n, ny, nx) (or (ny, nx)) observed stamps and fitted models.
    noise_sigma
        Per-stamp noise standard deviation: scalar, (n,) or an array broadcastable to stamps.
    pixel_scale
        arcsec per pixel for the axes; pixels when None.
    titles
        Row labels (e.g. galaxy id and reduced chi^2).
    max_rows
        At most this many galaxies are drawn.

    Returns
    -------
    matplotlib.figure.Figure
        Columns "stamp", "decoder model", "normalised residual".
    """
    from vaelens.infer.diagnostics import reduced_chi2

    stamps = np.asarray(stamps, dtype=float)
    models = np.asarray(models, dtype=float)
    if stamps.ndim == 2:
        stamps, models = stamps[None], models[None]
    sig = np.asarray(noise_sigma, dtype=float)
    if sig.ndim == 1:
        sig = sig[:, None, None]
    sig = np.broadcast_to(sig, stamps.shape)
    n = min(len(stamps), max_rows)
    fig = Figure(figsize=(10, 3.0 * n), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        ny, nx = stamps[i].shape
        ext = None
        if pixel_scale is not None:
            hx, hy = 0.5 * nx * pixel_scale, 0.5 * ny * pixel_scale
            ext = (-hx, hx, -hy, hy)
        norm = asinh_norm(stamps[i])
        _image_panel(fig, axes[i, 0], stamps[i], extent=ext, norm=norm, title="stamp")
        _image_panel(fig, axes[i, 1], models[i], extent=ext, norm=norm, title="decoder model")
        resid = (stamps[i] - models[i]) / sig[i]
        chi2 = reduced_chi2(stamps[i], models[i], sig[i])[2]  # chi^2 per pixel
        _image_panel(
            fig,
            axes[i, 2],
            resid,
            extent=ext,
            norm=colors.Normalize(-5, 5),
            cmap="RdBu_r",
            title=rf"normalised residual ($\chi^2_\nu$={chi2:.2f})",
        )
        if titles is not None:
            axes[i, 0].set_ylabel(titles[i], fontsize=9)
    return fig
