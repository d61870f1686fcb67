"""``vaelens fit``: fit a lens image by MAP (BFGS + Laplace), SVI, NUTS or HMC.

Pipeline: read and check the FITS inputs (:func:`load_image_data`), choose data-driven prior
centres (:func:`data_driven_spec`), run the multi-start MAP (always; it initialises the other
methods), run the requested method, and write the output folder (:mod:`vaelens.io_results`,
:func:`vaelens.commands._outputs.write_fit_outputs`) atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.commands._common import (
    StageTimer,
    cli_error,
    header_pixel_scale,
    make_decoder,
    parse_hdu,
    read_fits_image,
    require_file,
)

log = logging.getLogger("vaelens")

#: Relative tolerance of the image / PSF pixel-scale check.
PIXEL_SCALE_RTOL = 0.01


# --------------------------------------------------------------------------- data
def load_image_data(
    image: str | Path,
    psf: str | Path,
    *,
    hdu: int | str = 0,
    noise_map: str | Path | None = None,
    bkg_rms: float | None = None,
    exposure_time: float | None = None,
    pixel_scale: float | None = None,
    mask: str | Path | None = None,
    mask_radius: float | None = None,
):
    """Read and validate the inputs of a fit; returns a :class:`vaelens.data.ImageData`.

    Header keys are used when the arguments are None: ``PIXSCALE`` or the CD matrix (pixel
    scale), ``RA0``/``DEC0`` (grid origin), ``BKG_RMS``, ``EXPTIME`` and an ``EXPMAP``
    extension (noise). ``mask_radius`` (arcsec) keeps the pixels within that distance of the
    coordinate origin (the image centre unless ``RA0``/``DEC0`` place it elsewhere).

    Raises
    ------
    vaelens.cli.CLIError
        Missing or unreadable files, a bad HDU, a PSF whose pixel scale differs from the image's,
        a PSF larger than the image, no noise model, or an empty mask.
    """
    from vaelens.data import ImageData

    image_path = require_file(image, "image")
    psf_path = require_file(psf, "PSF")
    pixels, header = read_fits_image(image_path, "image", hdu)
    psf_arr, psf_header = read_fits_image(psf_path, "PSF")

    scale = pixel_scale if pixel_scale is not None else header_pixel_scale(header)
    if scale is None:
        raise cli_error(
            f"image {image_path} has no pixel scale (no PIXSCALE or CD matrix); pass --pixel-scale"
        )
    psf_scale = header_pixel_scale(psf_header)
    if psf_scale is not None and abs(psf_scale / scale - 1.0) > PIXEL_SCALE_RTOL:
        raise cli_error(
            f'pixel-scale mismatch: image {scale:.5g}"/px but PSF {psf_path.name} '
            f'{psf_scale:.5g}"/px; resample the PSF to the image pixel scale'
        )
    if psf_arr.shape[0] > pixels.shape[0] or psf_arr.shape[1] > pixels.shape[1]:
        raise cli_error(f"PSF {psf_arr.shape} is larger than the image {pixels.shape}")
    if not np.all(np.isfinite(psf_arr)) or not psf_arr.sum() > 0:
        raise cli_error(f"PSF {psf_path} has non-finite values or a non-positive sum")

    noise_arr = None
    if noise_map is not None:
        noise_arr, _ = read_fits_image(require_file(noise_map, "noise map"), "noise map")
        if noise_arr.shape != pixels.shape:
            raise cli_error(f"noise map {noise_arr.shape} and image {pixels.shape} differ in shape")
    elif bkg_rms is None and "BKG_RMS" not in header:
        raise cli_error(
            f"no noise model for {image_path.name}: give --noise-map, or --bkg-rms (and "
            "--exposure-time), or put BKG_RMS (and EXPTIME) in the image header"
        )
    mask_arr = None
    if mask is not None:
        mask_arr, _ = read_fits_image(require_file(mask, "mask"), "mask")
        if mask_arr.shape != pixels.shape:
            raise cli_error(f"mask {mask_arr.shape} and image {pixels.shape} differ in shape")
        mask_arr = mask_arr != 0

    data = ImageData.from_fits(
        image_path,
        psf=psf_arr,
        noise_map=noise_arr,
        mask=mask_arr,
        pixel_scale=pixel_scale if pixel_scale is not None else None,
        bkg_rms=bkg_rms,
        exposure_time=exposure_time,
        hdu=hdu,
    )
    if pixel_scale is None and abs(data.pixel_scale / scale - 1.0) > PIXEL_SCALE_RTOL:
        log.warning("header pixel scale %.5g differs from the grid's %.5g", scale, data.pixel_scale)
    if mask_radius is not None:
        x, y = data.grid.coordinates_numpy()
        inside = np.hypot(x, y) <= mask_radius
        if not (data.mask & inside).any():
            raise cli_error(f"--mask-radius {mask_radius} arcsec leaves no pixel in the fit")
        data = dataclasses.replace(data, mask=data.mask & inside)
    return data


def _sersic_total_factor(n: float, r: float) -> float:
    """Total flux of a round Sersic profile of unit surface brightness at ``R_sersic = r``.

    ``L = 2 pi n r^2 e^b b^(-2n) Gamma(2n)`` with ``b ~ 2n - 1/3 + 4/(405 n)`` (Ciotti &
    Bertin 1999, A&A 352, 447).
    """
    b = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)
    return 2.0 * math.pi * n * r**2 * math.exp(b) * b ** (-2.0 * n) * math.gamma(2.0 * n)


def data_driven_spec(
    data,
    *,
    lens_light: bool = True,
    source: str = "vae",
    supersampling: int = 2,
    theta_E: float | None = None,
    gamma_range: tuple[float, float] | None = None,
):
    """A :class:`vaelens.models.LensSpec` whose amplitude priors are centred on the data.

    The default priors are in arbitrary flux units; here the total flux ``F`` in the mask fixes
    the medians: the lens light carries about half of ``F`` (Sersic ``n = 4`` at the prior
    ``R_sersic``), and the source half of ``F`` divided by a typical magnification of 10 (for a
    Sersic source, that flux spread over the prior ``R_sersic``). The log-normal widths (a
    factor ``e`` per sigma) are those of the default priors.
    """
    from vaelens.models import LensLightPriors, LensPriors, LensSpec, SersicPriors, SourcePriors

    flux = float(np.sum(data.image[data.mask]))
    flux = max(flux, 10.0 * float(np.sqrt(np.sum(data.variance(np.zeros(data.shape))))))
    light = LensLightPriors()
    source_flux = (0.5 if lens_light else 1.0) * flux / 10.0
    light = dataclasses.replace(light, amp=0.5 * flux / _sersic_total_factor(4.0, light.R_sersic))
    sersic = SersicPriors()
    sersic = dataclasses.replace(
        sersic, amp=source_flux / _sersic_total_factor(1.5, sersic.R_sersic)
    )
    lens = LensPriors() if theta_E is None else dataclasses.replace(LensPriors(), theta_E=theta_E)
    if gamma_range is not None:
        low, high = (float(g) for g in gamma_range)
        if not 1.2 <= low < lens.gamma_loc < high <= 2.8:
            raise cli_error(
                f"--gamma-range {low:g} {high:g}: need 1.2 <= LOW < {lens.gamma_loc:g} < HIGH "
                "<= 2.8 (the EPL slopes supported)"
            )
        lens = dataclasses.replace(lens, gamma_low=low, gamma_high=high)
    return LensSpec(
        source_model=source,
        include_lens_light=lens_light,
        supersampling=supersampling,
        lens=lens,
        lens_light=light,
        source=dataclasses.replace(SourcePriors(), amp=source_flux),
        sersic_source=sersic,
    )


# --------------------------------------------------------------------------- inference
def optimizer(choice: str) -> str:
    """``bfgs`` or ``lbfgs``; ``auto`` picks BFGS in float64 and L-BFGS in float32."""
    if choice != "auto":
        return choice
    import jax

    return "bfgs" if jax.config.jax_enable_x64 else "lbfgs"


def regularised_laplace(res, max_variance: float = 1.0):
    """The MAP result with its unconstrained Laplace covariance capped at ``max_variance``.

    Directions where the Hessian at the MAP is flat or negative (floored eigenvalues, e.g. when
    the optimiser stopped near a saddle) get huge Laplace variances, which would throw the
    jittered chain starts and the initial mass matrix of NUTS far outside the prior. In the
    unconstrained space every prior here has a standard deviation of at most ~1 (``z`` is
    N(0, 1)), so eigenvalues are capped at 1; well-constrained directions are untouched.
    """
    cov = np.asarray(res.cov_unconstrained, dtype=np.float64)
    if not np.all(np.isfinite(cov)):
        return res
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    n_capped = int(np.sum(w > max_variance))
    if n_capped:
        log.warning(
            "Laplace covariance: %d direction(s) wider than the prior capped for the sampler",
            n_capped,
        )
    capped = (v * np.clip(w, 0.0, max_variance)) @ v.T
    return dataclasses.replace(res, cov_unconstrained=capped)


def laplace_inference_data(res, key, chains: int, samples: int):
    """InferenceData of ``chains x samples`` independent Laplace draws around the MAP."""
    import jax

    from vaelens.infer.convert import to_inference_data

    k_draw, k_eval = jax.random.split(key)
    draws = dict(res.laplace_draws(k_draw, chains * samples))
    # A poorly constrained direction can throw raw ellipticities far out, where tanh(|u|)
    # rounds to |e| = 1 in float32 and the profiles reject the draw: cap |u| at 3 (|e| <= 0.995).
    for name in [k for k in draws if k.endswith("e1_raw")]:
        other = name.replace("e1_raw", "e2_raw")
        u1, u2 = np.asarray(draws[name], float), np.asarray(draws[other], float)
        scale = np.minimum(1.0, 3.0 / np.maximum(np.hypot(u1, u2), 1e-30))
        draws[name], draws[other] = u1 * scale, u2 * scale
    posterior = {
        k: np.asarray(v).reshape(chains, samples, *np.shape(v)[1:]) for k, v in draws.items()
    }
    attrs = {
        "method": f"map_{res.method}_laplace",
        "map_loss": res.loss,
        "map_chi2": res.chi2,
        "num_starts": len(res.losses),
        "timing": res.timings,
    }
    return to_inference_data(
        res.model,
        res.model_args,
        res.model_kwargs,
        posterior,
        key=k_eval,
        log_likelihood=False,
        attrs=attrs,
    )


def load_init_draws(path: str | os.PathLike, num: int) -> list[dict[str, np.ndarray]]:
    """Starting points taken from an earlier fit: the lowest-chi^2 draw of each of its chains.

    ``path`` is the output folder of an earlier ``vaelens fit`` (or its ``posterior.nc``). The
    draws are ordered by chi^2 (``sample_stats.chi2``; draw order without it) and at most
    ``num`` are returned, as dictionaries of constrained values of every posterior variable.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "posterior.nc"
    p = require_file(p, "--init-from posterior")
    import arviz as az

    try:
        idata = az.from_netcdf(p)
        post = idata.posterior
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise cli_error(f"--init-from: cannot read {p} as ArviZ InferenceData ({exc})") from None
    nchain, ndraw = post.sizes["chain"], post.sizes["draw"]
    if "sample_stats" in idata.groups() and "chi2" in idata.sample_stats:
        chi2 = np.asarray(idata.sample_stats["chi2"].values, dtype=np.float64)
        chi2 = np.where(np.isfinite(chi2), chi2, np.inf).reshape(nchain, ndraw)
    else:
        chi2 = np.zeros((nchain, ndraw))
    best_draw = np.argmin(chi2, axis=1)
    order = np.argsort(chi2[np.arange(nchain), best_draw], kind="stable")[: max(1, num)]
    return [{k: np.asarray(post[k].values[c, best_draw[c]]) for k in post.data_vars} for c in order]


def init_points_from(model, model_args, draws, key) -> np.ndarray:
    """Flat unconstrained starting points of ``model`` for constrained ``draws``.

    Raises a CLI error when the draws do not hold every latent site of the model with the right
    shape (the earlier fit used other model options, e.g. ``--source`` or ``--no-lens-light``).
    """
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to

    tr = handlers.trace(handlers.seed(model, key)).get_trace(*model_args)
    sites = {
        name: site
        for name, site in sorted(tr.items())
        if site["type"] == "sample" and not site["is_observed"]
    }
    points = []
    for draw in draws:
        missing = sorted(set(sites) - set(draw))
        if missing:
            raise cli_error(
                f"--init-from: the earlier fit has no parameter(s) {', '.join(missing)}; "
                "it was run with other model options"
            )
        parts = []
        for name, site in sites.items():
            value = np.asarray(draw[name], dtype=np.float64)
            if value.shape != np.shape(site["value"]):
                raise cli_error(
                    f"--init-from: parameter {name} has shape {value.shape} in the earlier fit, "
                    f"{np.shape(site['value'])} here"
                )
            u = np.asarray(biject_to(site["fn"].support).inv(value), dtype=np.float64)
            parts.append(u.reshape(-1))
        x = np.concatenate(parts)
        if not np.all(np.isfinite(x)):
            raise cli_error("--init-from: a starting point lies outside the prior's support")
        points.append(x)
    return np.stack(points)


def chain_method(chains: int) -> str:
    """How NumPyro runs the chains: one device each where there are enough devices ("parallel";
    ``vaelens fit`` asks for one CPU host device per chain), in one batch on a single
    accelerator ("vectorized"), else one after the other ("sequential")."""
    import jax

    if chains > 1 and jax.local_device_count() >= chains:
        return "parallel"
    if chains > 1 and jax.default_backend() != "cpu":
        return "vectorized"
    return "sequential"


def run_inference(args: argparse.Namespace, data, spec, decoder, timer: StageTimer):
    """MAP (always), then the requested method; returns ``(idata, map_result, info)``."""
    import jax

    from vaelens.infer.map import map_fit, staged_map_fit
    from vaelens.models import lens_model

    key = jax.random.PRNGKey(args.seed)
    k_map, k_post, k_conv = jax.random.split(key, 3)
    with timer("map"):
        points = None
        if getattr(args, "init_from", None):
            # restart: refine the best draw of each chain of an earlier fit
            draws = load_init_draws(args.init_from, args.starts)
            points = init_points_from(
                lens_model, (data, spec, decoder), draws, jax.random.fold_in(k_map, 1)
            )
            log.info("MAP from %d draw(s) of %s", len(points), args.init_from)
        if points is None and spec.source_model == "vae":
            # stage 1: ``--starts`` prior draws with the source held at the decoder's mean galaxy
            # (z = 0); stage 2, everything free: the best half of them refined plus half as
            # many plain prior draws (see vaelens.infer.staged_map_fit)
            res = staged_map_fit(
                lens_model,
                data,
                spec,
                decoder,
                key=k_map,
                fixed={"z": np.zeros(spec.source.latent_dim, np.float32)},
                num_starts=args.starts,
                num_refine=max(1, min(4, args.starts // 2)),
                num_plain=max(1, args.starts // 2),
                method=optimizer(args.optimizer),
            )
        else:
            res = map_fit(
                lens_model,
                data,
                spec,
                decoder,
                key=k_map,
                num_starts=args.starts if points is None else len(points),
                init_points=points,  # cast to the model's dtype by map_fit
                method=optimizer(args.optimizer),
            )
    info: dict[str, Any] = {
        "map_loss": res.loss,
        "map_chi2": res.chi2,
        "map_starts_converged": int(np.sum(res.converged)),
        "map_losses": np.sort(res.losses),
        "map_timings": res.timings,
        "num_parameters": int(res.x.size),
    }
    if args.method == "map":
        with timer("laplace draws"):
            idata = laplace_inference_data(
                regularised_laplace(res), k_post, args.chains, args.samples
            )
        return idata, res, info
    from vaelens.infer.mcmc import hmc, nuts
    from vaelens.infer.svi import svi

    progress = os.environ.get("TQDM_DISABLE", "0") in ("", "0")
    res_init = regularised_laplace(res)
    if args.method == "svi":
        with timer("svi"):
            idata = svi(
                lens_model,
                data,
                spec,
                decoder,
                key=k_post,
                init=res_init,
                num_steps=args.svi_steps,
                num_samples=args.samples * args.chains,
                progress_bar=progress,
                log_likelihood=False,
            )
        return _as_chains(idata, args.chains), res, info
    sampler = nuts if args.method == "nuts" else hmc
    extra = {"max_tree_depth": args.max_tree_depth} if args.method == "nuts" else {}
    with timer(args.method):
        idata = sampler(
            lens_model,
            data,
            spec,
            decoder,
            key=k_post,
            init=res_init,
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            chain_method=chain_method(args.chains),
            dense_mass=args.dense_mass,
            init_mass=getattr(args, "init_mass", "laplace"),
            progress_bar=progress,
            log_likelihood=False,
            **extra,
        )
    return idata, res, info


def _as_chains(idata, chains: int):
    """Reshape a one-chain InferenceData of independent draws into ``chains`` chains."""
    post = idata.posterior
    if post.sizes.get("chain", 1) != 1 or chains < 2 or post.sizes["draw"] % chains:
        return idata
    import arviz as az

    n = post.sizes["draw"] // chains
    groups = {}
    for group in ("posterior", "sample_stats"):
        if hasattr(idata, group):
            ds = getattr(idata, group)
            groups[group] = {
                k: np.asarray(ds[k].values).reshape(chains, n, *ds[k].shape[2:])
                for k in ds.data_vars
            }
    dims = {k: list(post[k].dims[2:]) for k in post.data_vars}
    out = az.from_dict(**groups, dims=dims, attrs=dict(idata.attrs))
    if hasattr(idata, "observed_data"):
        out.add_groups(observed_data=idata.observed_data)
    return out


# --------------------------------------------------------------------------- entry point
def fit_into(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run the fit described by parsed ``vaelens fit`` arguments, writing into ``folder``.

    ``folder`` must exist (no atomicity here; :func:`run` and ``vaelens demo`` wrap this in
    :func:`vaelens.io_results.atomic_output_dir`). Returns the summary dictionary.
    """
    import jax

    from vaelens.commands import _outputs
    from vaelens.commands.info import package_versions

    t0 = time.perf_counter()
    timer = StageTimer()
    with timer("read data"):
        data = load_image_data(
            args.image,
            args.psf,
            hdu=parse_hdu(args.hdu),
            noise_map=args.noise_map,
            bkg_rms=args.bkg_rms,
            exposure_time=args.exposure_time,
            pixel_scale=args.pixel_scale,
            mask=args.mask,
            mask_radius=args.mask_radius,
        )
        truth = None
        if args.truth:
            from vaelens.commands.simulate import load_truth

            truth = load_truth(args.truth)
    log.info("%r", data)
    spec = data_driven_spec(
        data,
        lens_light=args.lens_light,
        source=args.source,
        supersampling=args.supersampling,
        theta_E=args.theta_E,
        gamma_range=getattr(args, "gamma_range", None),
    )
    decoder, decoder_kind = make_decoder(args.source, getattr(args, "weights", None))
    idata, res, info = run_inference(args, data, spec, decoder, timer)
    init_from = getattr(args, "init_from", None)
    timer.times["inference_total"] = time.perf_counter() - t0
    meta = {
        "command": getattr(args, "command_line", None),
        "method": args.method,
        "image": str(Path(args.image).resolve()),
        "psf": str(Path(args.psf).resolve()),
        "seed": args.seed,
        "decoder": decoder_kind,
        "starts": args.starts,
        "init_from": str(Path(init_from).resolve()) if init_from else None,
        "optimizer": optimizer(args.optimizer),
        "x64": bool(jax.config.jax_enable_x64),
        "chains": args.chains,
        "warmup": args.warmup,
        "samples": args.samples,
        "init_mass": getattr(args, "init_mass", "laplace") if args.method in ("nuts", "hmc")
        else None,
        "spec": _outputs.spec_dict(spec),
        "versions": package_versions(),
        **info,
    }
    with timer("write outputs"):
        summary = _outputs.write_fit_outputs(
            folder, idata, res, data, spec, decoder, meta=meta, timings=timer.times, truth=truth
        )
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens fit``."""
    from vaelens.commands import _outputs
    from vaelens.io_results import atomic_output_dir, check_output_dir

    check_output_dir(args.out, force=args.force)
    with atomic_output_dir(args.out, force=args.force) as tmp:
        summary = fit_into(args, tmp)
    sys.stdout.write(_outputs.format_summary(summary))
    sys.stdout.write(
        f"wrote {Path(args.out)}/ (posterior.nc, summary.csv, summary.json, model.png, "
        "corner.png, trace.png)\n"
    )
    return 0
