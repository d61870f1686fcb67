"""The output folder of a lens fit: ``posterior.nc``, ``summary.csv``, ``summary.json``,
``model.png``, ``corner.png`` and ``trace.png``.

:func:`write_fit_folder` (behind :meth:`vaelens.infer.LensFit.write`) writes them into a
temporary folder that is renamed when complete (:func:`vaelens.io_results.atomic_output_dir`)
and returns the summary dictionary; :func:`format_summary` is the table ``vaelens fit`` prints.

Columns of the summary (``summary.csv`` and ``summary.json``):

- ``mean``, ``sd``, ``hdi_3%``, ``hdi_97%``, ``q16``/``q50``/``q84``: of the posterior draws,
  i.e. of the Laplace draws for a MAP fit (after the capping of unconstrained directions wider
  than the prior, :func:`vaelens.infer.cap_covariance`, and of raw ellipticities at |e| <= 0.995);
- ``r_hat``, ``ess_bulk``, ``ess_tail``: MCMC convergence (NUTS/HMC only);
- ``map`` and ``laplace_sd``: the MAP value and its delta-method Laplace sigma (uncapped). The
  two sigmas agree where the posterior is close to Gaussian in the unconstrained parameters; they
  differ where a direction was capped or a constraining transform is far from linear over one
  sigma (e.g. ellipticities near the tanh bound).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.data.multiband import MultiBandData

log = logging.getLogger("vaelens")

#: Meaning of the columns of a MAP fit's summary, recorded in its ``summary.json``.
MAP_COLUMNS = {
    "sd": "standard deviation of the Laplace draws (unconstrained directions wider than the "
    "prior capped at the prior width)",
    "laplace_sd": "delta-method sigma of the Laplace approximation at the MAP (uncapped)",
}

#: Diagnostics thresholds R-hat, bulk/tail ESS.
RHAT_MAX = 1.01
ESS_MIN = 400


#: Name prefixes of the band amplitudes and colours of a multi-band fit
#: (:func:`vaelens.models.band_parameter_names`).
BAND_PREFIXES = ("source_amp_", "light_amp_", "source_colour_", "light_colour_")


def scalar_names(idata, spec) -> list[str]:
    """Physical scalar parameters of ``spec`` present in the posterior, in spec order, then the
    band amplitudes and colours of a multi-band fit."""
    post = idata.posterior
    names = [n for n in spec.parameter_names() if n in post.data_vars and post[n].ndim == 2]
    bands = [n for n in post.data_vars if str(n).startswith(BAND_PREFIXES) and post[n].ndim == 2]
    return names + sorted(str(n) for n in bands)


def draw_params(idata, chain: int, draw: int) -> dict[str, np.ndarray]:
    """Every posterior variable at one ``(chain, draw)`` (images included)."""
    post = idata.posterior
    return {k: np.asarray(post[k].values[chain, draw]) for k in post.data_vars}


def best_draw(idata) -> tuple[int, int]:
    """``(chain, draw)`` of the draw with the lowest chi^2 (or the highest ``lp``)."""
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "chi2" in stats:
        arr = np.asarray(stats["chi2"].values, float)
        idx = np.unravel_index(np.nanargmin(arr), arr.shape)
    elif stats is not None and "lp" in stats:
        arr = np.asarray(stats["lp"].values, float)
        idx = np.unravel_index(np.nanargmax(arr), arr.shape)
    else:
        idx = (0, 0)
    return int(idx[0]), int(idx[1])


def _arc_check(best, model, sigma, data, spec, decoder) -> dict[str, Any]:
    """:func:`vaelens.infer.residuals.arc_residuals` of the best fit; warns on an excess."""
    import dataclasses

    from vaelens.infer.residuals import arc_residual_message, arc_residuals

    source_only = model
    if spec.include_lens_light:
        source_only = render_model(
            best, data, dataclasses.replace(spec, include_lens_light=False), decoder
        )
    check = arc_residuals(data.image, model, sigma, data.mask, source_model=source_only)
    message = arc_residual_message(check)
    if message:
        log.warning(message)
    check["warning"] = message
    return check


def render_model(params: dict[str, Any], data, spec, decoder) -> np.ndarray:
    """Noise-free model image of one parameter set on the data's grid."""
    import jax

    from vaelens.models import lens_components, render_lens

    keys = [k for k in spec.parameter_names() if k in params] + (
        ["z"] if spec.source_model == "vae" else []
    )
    for prefix in ("", "light_", "source_"):
        for e in ("e1", "e2"):
            if f"{prefix}{e}" in params and f"{prefix}{e}" not in keys:
                keys.append(f"{prefix}{e}")
    p = {k: np.asarray(params[k], dtype=float) for k in keys}
    for prefix in ("", "light_", "source_"):
        if f"{prefix}e1" in p:  # |e| -> 1 can round to 1 in float32; keep the profile valid
            e = float(np.hypot(p[f"{prefix}e1"], p[f"{prefix}e2"]))
            if e >= 0.999:
                log.warning("best-fit %se = %.4f clipped to 0.999 for rendering", prefix, e)
                p[f"{prefix}e1"] = p[f"{prefix}e1"] * 0.999 / e
                p[f"{prefix}e2"] = p[f"{prefix}e2"] * 0.999 / e
    p = {k: jax.numpy.asarray(v) for k, v in p.items()}

    @jax.jit
    def render(p):
        return render_lens(data, spec, lens_components(p, spec, decoder))

    return np.asarray(render(p), dtype=np.float64)


def source_images(
    idata, spec, best: dict[str, Any] | None = None, *, max_draws: int = 200
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Source image (posterior mean, or ``best``'s) with its standard deviation and extent.

    For a VAE source the deterministic ``source`` site (flux per source pixel) is used, on the
    footprint ``source_size`` around ``source_center``; for a Sersic source the profile is
    evaluated (flux per 0.03" pixel) on a 64 x 64 grid of 1.92" around its centre. With ``best``
    (a MAP point) the image shown is that of ``best`` and the spread is a robust standard
    deviation (1.4826 x MAD) of the draws, insensitive to a few wild Laplace draws. A sampler
    that stored no per-draw ``source`` gives the accumulated mean and standard deviation of its
    ``posterior_moments`` group (:func:`vaelens.infer.chunked.image_moments`).
    """
    from vaelens.infer.chunked import image_moments

    post = idata.posterior

    def centre(name, default):
        if best is not None and name in best:
            return float(np.asarray(best[name]))
        return float(post[name].median()) if name in post else default

    cx, cy = centre("source_center_x", 0.0), centre("source_center_y", 0.0)
    half = 0.5 * centre("source_size", 1.92)
    if "source" in post:
        draws = np.asarray(post["source"].values, float).reshape(-1, *post["source"].shape[2:])
        ext = (cx - half, cx + half, cy - half, cy + half)
        if best is not None and "source" in best:
            return np.asarray(best["source"], float), _robust_std(draws), ext
        return draws.mean(0), draws.std(0), ext
    moments = image_moments(idata, "source")
    if moments is not None:  # a sampler's accumulated moments (no per-draw source stored)
        ext = (cx - half, cx + half, cy - half, cy + half)
        if best is not None and "source" in best:
            return np.asarray(best["source"], float), moments[1], ext
        return moments[0], moments[1], ext
    from vaelens.lensing import Sersic

    n = post.sizes["chain"] * post.sizes["draw"]
    idx = np.linspace(0, n - 1, min(n, max_draws)).astype(int)
    pix = 1.92 / 64
    g = cx + (np.arange(64) - 31.5) * pix
    h = cy + (np.arange(64) - 31.5) * pix
    x, y = np.meshgrid(g, h)
    names = ["amp", "R_sersic", "n_sersic", "e1", "e2", "center_x", "center_y"]

    def image(vals):
        sersic = Sersic(*(float(vals[k]) for k in names))
        return np.asarray(sersic.surface_brightness(x, y), float) * pix**2

    flat = {k: np.asarray(post[f"source_{k}"].values, float).reshape(-1)[idx] for k in names}
    imgs = np.stack([image({k: flat[k][i] for k in names}) for i in range(len(idx))])
    ext = (g[0] - pix / 2, g[-1] + pix / 2, h[0] - pix / 2, h[-1] + pix / 2)
    if best is not None:
        return image({k: best[f"source_{k}"] for k in names}), _robust_std(imgs), ext
    return imgs.mean(0), imgs.std(0), ext


def _robust_std(draws: np.ndarray) -> np.ndarray:
    med = np.median(draws, axis=0)
    return 1.4826 * np.median(np.abs(draws - med), axis=0)


def diagnostics(idata, table) -> dict[str, Any]:
    """Divergences, E-BFMI, worst R-hat and ESS of the scalar parameters, and the failed checks.

    The checks are those of :func:`vaelens.infer.diagnostics` (R-hat <= 1.01, bulk and tail
    ESS >= 400, no divergence, E-BFMI >= 0.3).
    """
    from vaelens.infer import diagnostics as infer_diagnostics

    d = infer_diagnostics(idata, list(table.index), rhat_max=RHAT_MAX, ess_min=ESS_MIN, warn=False)
    out: dict[str, Any] = {
        "divergences": int(d.num_divergent),
        "num_draws": int(d.num_draws),
        "bfmi": [float(b) for b in np.atleast_1d(d.bfmi)],
    }
    if len(table):
        out["r_hat_max"] = float(np.nanmax(table["r_hat"])) if "r_hat" in table else None
        out["ess_bulk_min"] = float(np.nanmin(table["ess_bulk"])) if "ess_bulk" in table else None
        out["ess_tail_min"] = float(np.nanmin(table["ess_tail"])) if "ess_tail" in table else None
    out["warnings"] = list(d.problems)
    return out


def summary_table(idata, names: list[str]):
    """``arviz.summary`` of ``names`` plus 16/50/84 percentiles (a pandas DataFrame).

    Independent draws (Laplace, SVI) get the statistics only: R-hat and ESS describe Markov
    chains.
    """
    import arviz as az

    from vaelens.infer.diagnostics import independent_draws

    arviz_log = getattr(az, "_log", None)  # arviz's own logger (not in logging's registry)
    if arviz_log is not None and idata.posterior.sizes.get("chain", 1) < 2:
        arviz_log.setLevel(logging.ERROR)  # "Shape validation failed" for one chain
    kind = "stats" if independent_draws(idata) else "all"
    table = az.summary(idata, var_names=names, hdi_prob=0.94, round_to="none", kind=kind)
    chains = idata.posterior.sizes.get("chain", 1)
    if chains < 2 and "r_hat" in table:
        table["r_hat"] = np.nan  # R-hat is undefined for one chain
    for q in (16, 50, 84):
        table[f"q{q}"] = [
            float(np.percentile(np.asarray(idata.posterior[n].values), q)) for n in table.index
        ]
    return table


def _estimated_bytes(idata) -> int:
    """Upper estimate of the size of the folder's files (the posterior dominates)."""
    total = 0
    for group in idata.groups():
        ds = getattr(idata, group)
        total += sum(int(ds[k].size) * min(ds[k].dtype.itemsize, 8) for k in ds.data_vars)
    return int(1.2 * total) + 8 * 2**20  # netCDF overhead and three figures


class OutputWriteError(OSError):
    """The output folder could not be written (e.g. the disk is full); nothing was left."""


def write_fit_folder(
    path,
    fit,
    *,
    force: bool = False,
    truth: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    dpi: int = 110,
    carry: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write the output folder of a :class:`vaelens.infer.LensFit` and return the summary.

    Parameters
    ----------
    path
        The folder to create (replaced only with ``force``).
    fit
        The fit.
    truth
        True parameters of a simulated lens, drawn on the plots and compared in the summary.
    meta
        Extra entries of ``summary.json`` (command line, input files, ...).
    carry
        Entries of an existing ``path`` copied into the new folder (e.g. the ``sampling``
        record of a chunked NUTS run, which ``--resume`` reads).

    Raises
    ------
    vaelens.io_results.OutputExistsError
        ``path`` exists and ``force`` is False.
    OutputWriteError
        Too little free disk space, or a write failed; the temporary folder is removed.
    """
    import shutil

    from vaelens.io_results import atomic_output_dir, check_output_dir

    out = check_output_dir(path, force=force)
    need = _estimated_bytes(fit.idata)
    free = shutil.disk_usage(out.parent).free
    if free < need:
        raise OutputWriteError(
            f"not enough free disk space for {out} ({free / 2**20:.0f} MiB free, about "
            f"{need / 2**20:.0f} MiB needed); nothing was written"
        )
    try:
        with atomic_output_dir(out, force=force) as tmp:
            summary = _write_files(tmp, fit, truth=truth, meta=meta or {}, dpi=dpi)
            for name in carry:
                if (out / name).is_dir():
                    shutil.copytree(out / name, tmp / name)
            return summary
    except OSError as err:
        if isinstance(err, OutputWriteError | FileExistsError):
            raise
        raise OutputWriteError(f"writing {out} failed ({err}); nothing was written") from err


def fit_record(fit) -> dict[str, Any]:
    """What ``summary.json`` records of a fit besides its parameters: the settings, the model
    specification, the MAP statistics and the package versions."""
    from vaelens.infer.convert import package_versions

    return {
        **fit.settings,
        "spec": fit.spec.to_dict(),
        "versions": package_versions(),
        **fit.info,
    }


def _write_files(folder: Path, fit, *, truth, meta, dpi) -> dict[str, Any]:
    from vaelens import plotting
    from vaelens.infer.convert import clean_attrs
    from vaelens.infer.diagnostics import reduced_chi2
    from vaelens.io_results import to_jsonable, write_json

    idata, map_result, data, spec = fit.idata, fit.map, fit.data, fit.spec
    record = {**fit_record(fit), **meta}
    method = fit.method
    names = scalar_names(idata, spec)
    with np.errstate(all="ignore"):
        table = summary_table(idata, names)
    table.to_csv(folder / "summary.csv", index_label="parameter")

    if method == "map":
        best = {k: np.asarray(v) for k, v in map_result.params.items()}
        best_label = "MAP"
    else:
        c, d = best_draw(idata)
        best = draw_params(idata, c, d)
        best_label = f"lowest-chi2 draw (chain {c}, draw {d})"
    n_par = int(record.get("num_parameters", 0))
    if isinstance(data, MultiBandData):
        bands = band_renders(best, data, spec, fit.decoder)
        band_quality = _band_quality(bands, n_par)
        data, model, sigma = bands[0][1:]  # the reference band, for model.png
        chi2 = sum(q["chi2"] for q in band_quality.values())
        n_pix = sum(q["num_pixels"] for q in band_quality.values())
        reduced = chi2 / (n_pix - n_par) if n_pix > n_par else float("nan")
    else:
        bands, band_quality = [], None
        model = render_model(best, data, spec, fit.decoder)
        sigma = np.sqrt(np.asarray(data.variance(model), float))
        chi2, n_pix, reduced = reduced_chi2(
            data.image, model, sigma, data.mask, num_parameters=n_par
        )
    fit_quality = {
        "best_fit": best_label,
        "chi2": chi2,
        "num_pixels": n_pix,
        "num_parameters": n_par,
        "reduced_chi2": reduced,
        "chi2_per_pixel": chi2 / max(n_pix, 1),
        "arc_residuals": _arc_check(best, model, sigma, data, spec, fit.decoder),
    }
    if band_quality is not None:
        fit_quality["bands"] = band_quality

    values, sd = map_result.summary_values(), map_result.sigma
    laplace = {n: {"map": values.get(n), "laplace_sd": sd.get(n)} for n in names}
    diag = diagnostics(idata, table) if method != "map" else {"warnings": []}
    for w in diag["warnings"]:
        log.warning("diagnostics: %s", w)

    params_out = {}
    for name in table.index:
        row = {k: float(v) for k, v in table.loc[name].items()}
        row["best_fit"] = float(np.asarray(best[name])) if name in best else None
        if name in laplace:
            row.update(laplace[name])
        if truth and name in truth and np.ndim(truth[name]) == 0:
            row["truth"] = float(truth[name])
            row["truth_minus_mean_in_sd"] = (
                (row["truth"] - row["mean"]) / row["sd"] if row["sd"] > 0 else None
            )
        params_out[name] = row

    summary = {
        **record,
        "timings_s": fit.timings,
        "fit": fit_quality,
        "parameters": params_out,
        "columns": MAP_COLUMNS if method == "map" else None,
        "diagnostics": diag,
        "truth": truth,
    }
    if bands:
        summary["bands"] = list(fit.data.names)
        summary["units"] = list(fit.data.units)
        summary["colours"] = _colours(params_out, fit.data.names)
    write_json(folder / "summary.json", summary)

    idata.attrs.update(
        clean_attrs(
            {"vaelens_fit": to_jsonable({k: v for k, v in record.items() if k != "map_losses"})}
        )
    )
    post = idata.posterior
    for k in post.data_vars:
        if post[k].ndim > 3 and post[k].dtype == np.float64:
            post[k] = post[k].astype(np.float32)
    idata.to_netcdf(str(folder / "posterior.nc"))

    src_mean, src_std, src_ext = source_images(idata, spec, best if method == "map" else None)
    what = "MAP" if best_label == "MAP" else f"{method.upper()}, {best_label}"
    decoder_kind = record.get("decoder")
    title = rf"{what}: $\chi^2$ = {chi2:.0f} over {n_pix} pixels"
    if decoder_kind:
        title += f" (decoder: {decoder_kind})"
    fig = plotting.plot_model(
        data.image,
        model,
        sigma,
        extent=data.grid.extent,
        mask=data.mask,
        source_mean=src_mean,
        source_std=src_std,
        source_extent=src_ext,
        title=title,
        num_parameters=n_par,
    )
    fig.savefig(folder / "model.png", dpi=dpi)
    for name, band, band_model, band_sigma in bands:
        q = band_quality[name]
        fig = plotting.plot_model(
            band.image,
            band_model,
            band_sigma,
            extent=band.grid.extent,
            mask=band.mask,
            source_mean=src_mean,
            source_std=src_std,
            source_extent=src_ext,
            title=rf"{name}, {what}: $\chi^2$ = {q['chi2']:.0f} over {q['num_pixels']} pixels "
            f"(source of {fit.data.names[0]})",
            num_parameters=n_par,
        )
        fig.savefig(folder / f"model_{name}.png", dpi=dpi)
    truth_scalars = {
        k: float(v)
        for k, v in (truth or {}).items()
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    }
    lens_names = plotting.lens_parameter_names(idata)
    plotting.plot_corner(idata, lens_names, truths=truth_scalars).savefig(
        folder / "corner.png", dpi=dpi
    )
    plotting.plot_trace(idata, lens_names).savefig(folder / "trace.png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close("all")
    return summary


def band_renders(params: dict[str, Any], data, spec, decoder) -> list[tuple]:
    """``(name, band, model, sigma)`` of every band of a :class:`vaelens.data.MultiBandData`:
    the noise-free model of ``params`` on the band's grid and its noise sigma."""
    from vaelens.models import band_params

    out = []
    for name, band in zip(data.names, data.bands, strict=True):
        model = render_model(band_params(params, name, data.names[0]), band, spec, decoder)
        out.append((name, band, model, np.sqrt(np.asarray(band.variance(model), float))))
    return out


def _band_quality(bands: list[tuple], num_parameters: int) -> dict[str, dict[str, float]]:
    """chi^2 and reduced chi^2 of every band; the shared parameters are counted against the
    bands in proportion to their pixels (the reduced chi^2 of the bands then average to the
    joint one)."""
    from vaelens.infer.diagnostics import reduced_chi2

    total = sum(int(np.sum(b[1].mask)) for b in bands)
    out = {}
    for name, band, model, sigma in bands:
        n_b = int(np.sum(band.mask))
        share = num_parameters * n_b / max(total, 1)
        chi2, n_pix, _ = reduced_chi2(band.image, model, sigma, band.mask)
        out[name] = {
            "chi2": chi2,
            "num_pixels": n_pix,
            "parameter_share": share,
            "reduced_chi2": chi2 / (n_pix - share) if n_pix > share else float("nan"),
            "chi2_per_pixel": chi2 / max(n_pix, 1),
        }
    return out


def _colours(params_out: dict[str, dict], names) -> dict[str, dict]:
    """Posterior of the colours (magnitudes relative to the reference band) of every band."""
    keys = ("mean", "sd", "q16", "q50", "q84", "map", "laplace_sd", "truth")
    out = {}
    for name in names[1:]:
        row = {}
        for what in ("source", "light"):
            r = params_out.get(f"{what}_colour_{name}")
            if r is not None:
                row[what] = {k: r[k] for k in keys if k in r}
        out[name] = row
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """The table printed at the end of ``vaelens fit``."""
    from vaelens.io_results import format_table

    rows = []
    has_truth = any("truth" in r for r in summary["parameters"].values())
    for name, r in summary["parameters"].items():
        rows.append({"parameter": name, **r})
    cols = ["mean", "sd", "hdi_3%", "hdi_97%"]
    if summary["method"] in ("nuts", "hmc"):
        cols += ["r_hat", "ess_bulk", "ess_tail"]
    cols += ["map", "laplace_sd"] + (["truth"] if has_truth else [])
    fit = summary["fit"]
    t = summary["timings_s"]
    lines = [
        "",
        format_table(rows, cols, index="parameter"),
        f"best fit ({fit['best_fit']}): chi2 = {fit['chi2']:.1f} over {fit['num_pixels']} "
        f"pixels, reduced chi2 = {fit['reduced_chi2']:.3f} ({fit['num_parameters']} parameters)",
    ]
    for name, q in fit.get("bands", {}).items():
        lines.append(
            f"  band {name}: chi2 = {q['chi2']:.1f} over {q['num_pixels']} pixels, reduced "
            f"chi2 = {q['reduced_chi2']:.3f}"
        )
    lines += [
        "wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()),
    ]
    if "map_losses" in summary:
        n_starts = len(summary["map_losses"])
        lines.append(
            f"MAP: {summary.get('map_starts_converged', 0)} of {n_starts} starts met their "
            "tolerance (the best start is the MAP; in float32 the gradient tolerance is often "
            "out of reach and a start stops on its iteration or progress limit)"
        )
    if summary["method"] == "map":
        lines.append(
            "sd: of the Laplace draws (directions wider than the prior capped); laplace_sd: "
            "delta-method sigma at the MAP"
        )
    for w in summary["diagnostics"].get("warnings", []):
        lines.append(f"WARNING: {w}")
    arc_warning = (fit.get("arc_residuals") or {}).get("warning")
    if arc_warning:
        lines.append(f"WARNING: {arc_warning}")
    return "\n".join(lines) + "\n"
