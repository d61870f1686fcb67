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

    Returns
    -------
    matplotlib.figure.Figure
        Three to five panels, titled "data", "model", "normalised residual", "source mean",
        "source std".
    """
    data = np.asarray(data, dtype=float)
    model = np.asarray(model, dtype=float)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), data.shape)
    if data.shape != model.shape:
        raise ValueError(f"data {data.shape} and model {model.shape} differ in shape")
    resid = (data - model) / sigma
    inside = np.ones(data.shape, bool) if mask is None else np.asarray(mask, bool)
    chi2 = float(np.sum(resid[inside] ** 2))
    n_pix = int(inside.sum())
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
        title=rf"normalised residual ($\chi^2_\nu$={chi2 / max(n_pix, 1):.2f})",
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


def plot_corner(
    idata: Any,
    var_names: Sequence[str] | None = None,
    truths: Mapping[str, float] | None = None,
    *,
    max_draws: int = 4000,
) -> Figure:
    """Corner plot (2-d histograms below the diagonal, marginals on it) with truth lines.

    Parameters
    ----------
    idata
        ArviZ InferenceData with a ``posterior`` group (chain, draw).
    var_names
        Scalar parameters to show; default: the lens parameters present
        (:func:`lens_parameter_names`).
    truths
        Optional true values, drawn as orange lines and markers.
    max_draws
        Thinning limit on the number of points shown (all draws are used for histograms when
        fewer).

    Returns
    -------
    matplotlib.figure.Figure
        An ``n x n`` grid (upper triangle hidden).
    """
    names = list(var_names) if var_names is not None else lens_parameter_names(idata)
    if not names:
        raise ValueError("no scalar posterior variables to plot")
    samples = np.stack([np.asarray(idata.posterior[n]).reshape(-1) for n in names], axis=1)
    if samples.shape[0] > max_draws:
        samples = samples[:: int(np.ceil(samples.shape[0] / max_draws))]
    n = len(names)
    size = max(1.7 * n, 4.0)
    fig = Figure(figsize=(size, size), layout="constrained")
    axes = fig.subplots(n, n, squeeze=False)
    truths = dict(truths or {})
    bins2d = int(np.clip(np.sqrt(samples.shape[0]) / 2, 10, 40))
    lo = np.percentile(samples, 0.5, axis=0)
    hi = np.percentile(samples, 99.5, axis=0)
    for j, name in enumerate(names):
        t = truths.get(name)
        if t is not None and np.isfinite(t):
            lo[j], hi[j] = min(lo[j], t), max(hi[j], t)
        pad = 0.05 * (hi[j] - lo[j]) or 1e-6 * (abs(lo[j]) + 1.0)
        lo[j], hi[j] = lo[j] - pad, hi[j] + pad
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(
                    samples[:, j],
                    bins=30,
                    range=(lo[j], hi[j]),
                    histtype="stepfilled",
                    color="C0",
                    alpha=0.6,
                )
                q16, q50, q84 = np.percentile(samples[:, j], [16, 50, 84])
                for q in (q16, q50, q84):
                    ax.axvline(q, color="k", ls="--", lw=0.7)
                ax.set_title(_format_interval(q16, q50, q84), fontsize=8)
                ax.set_yticks([])
            else:
                ax.hist2d(
                    samples[:, j],
                    samples[:, i],
                    bins=bins2d,
                    range=[[lo[j], hi[j]], [lo[i], hi[i]]],
                    cmap="Blues",
                    cmin=1,
                )
                ti = truths.get(names[i])
                if ti is not None and np.isfinite(ti):
                    ax.axhline(ti, color="C1", lw=1)
                ax.set_ylim(lo[i], hi[i])
            tj = truths.get(names[j])
            if tj is not None and np.isfinite(tj):
                ax.axvline(tj, color="C1", lw=1)
            ax.set_xlim(lo[j], hi[j])
            ax.tick_params(labelsize=6)
            if i == n - 1:
                ax.set_xlabel(_LABELS.get(names[j], names[j]), fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(_LABELS.get(names[i], names[i]), fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
    return fig


def _format_interval(q16: float, q50: float, q84: float) -> str:
    """``median^{+upper}_{-lower}`` with the errors to two significant figures."""
    err = min(q84 - q50, q50 - q16)
    digits = 2 if err <= 0 else max(int(1 - np.floor(np.log10(err))), 0)
    return f"${q50:.{digits}f}^{{+{q84 - q50:.{digits}f}}}_{{-{q50 - q16:.{digits}f}}}$"


def plot_trace(idata: Any, var_names: Sequence[str] | None = None) -> Figure:
    """Trace plots (marginal density per chain, and draw vs. iteration) via ``arviz.plot_trace``.

    Parameters
    ----------
    idata
        ArviZ InferenceData with a ``posterior`` group.
    var_names
        Scalar parameters; default: the lens parameters present.

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
    return fig


def plot_comparison(
    table: Mapping[str, Mapping[str, float]] | Any,
    *,
    labels: tuple[str, str] = ("BFGS (MAP $\\pm$ Laplace)", "NUTS (mean $\\pm$ sd)"),
) -> Figure:
    """Per-parameter comparison of the MAP +- Laplace sigma with the posterior mean +- sd.

    Each parameter gets its own small panel, with the two estimates as error bars, the truth
    (when known) as a dashed line, and the difference in units of the combined sigma in the
    title.

    Parameters
    ----------
    table
        ``{name: {"map", "map_sd", "mean", "sd", "truth" (optional)}}``, a pandas DataFrame
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
        ax.set_xticks([0, 1], ["BFGS", "NUTS"], fontsize=8)
        diff = r["map"] - r["mean"]
        comb = np.hypot(r["map_sd"], r["sd"])
        sub = f"  ({diff / comb:+.1f}$\\sigma$)" if np.isfinite(diff / comb) and comb > 0 else ""
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
    return fig


def _comparison_rows(table) -> list[tuple[str, dict[str, float]]]:
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
        chi2 = float(np.mean(resid**2))
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
