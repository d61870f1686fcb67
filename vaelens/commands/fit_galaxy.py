"""``vaelens fit-galaxy``: fit galaxy stamps with the VAE decoder (batched L-BFGS).

Input: one stamp (a FITS image) or a whole GalSim RealGalaxyCatalog (the catalogue table file;
detected by its ``GAL_FILENAME`` column). Every stamp is preprocessed like the training data
(:func:`vaelens.data.preprocess.prepare_stamp`: centred on the light, resampled to the decoder's
pixel scale ``VAE.pixel_scale`` from its model card, cropped or padded to 64 x 64, unit flux);
resampling, cropping and padding are reported as warnings, and stamps whose pixels are more than
``MAX_UPSAMPLING`` times coarser than the decoder's are refused. The encoder mean starts the fit,
and :func:`vaelens.galaxy.fit_galaxies` fits ``flux x shift(decoder(z))`` to a batch of stamps at
once (``jax.vmap``).

Writes into ``--out``: ``results.csv`` (per galaxy: ident, flux in data units, chi^2, reduced
chi^2, iterations, converged), ``latents.npy`` (``(n, 64)`` z), ``stamps.fits`` (HDUs STAMP,
MODEL, RESIDUAL: ``(n, 64, 64)`` cubes of the preprocessed stamps, models and normalised
residuals), ``summary.json`` and ``galaxy_fit.png`` (the first six galaxies).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.commands._common import (
    cli_error,
    header_pixel_scale,
    load_vae,
    parse_hdu,
    read_fits_image,
    require_file,
)

log = logging.getLogger("vaelens")

#: Side of the decoder's images, pixels.
STAMP_SIZE = 64
#: Stamps whose pixels are coarser than this many decoder pixels are refused: the decoder's
#: pixels would mostly be interpolated, not measured.
MAX_UPSAMPLING = 4.0


def is_catalog(path: Path) -> bool:
    """True if ``path`` is a RealGalaxyCatalog table (HDU 1 has a ``GAL_FILENAME`` column)."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            if len(hdul) < 2 or not hasattr(hdul[1], "columns"):
                return False
            return "GAL_FILENAME" in [c.upper() for c in hdul[1].columns.names]
    except OSError as err:
        raise cli_error(f"{path} is not a readable FITS file ({err})") from None


def robust_noise_variance(image: np.ndarray, border: int = 4) -> float:
    """Noise variance from the stamp's border pixels (1.4826 x MAD)^2."""
    b = max(1, min(border, min(image.shape) // 4))
    edge = np.concatenate(
        [image[:b].ravel(), image[-b:].ravel(), image[:, :b].ravel(), image[:, -b:].ravel()]
    )
    mad = np.median(np.abs(edge - np.median(edge)))
    var = float((1.4826 * mad) ** 2)
    if not var > 0:
        raise cli_error("cannot estimate the noise from the stamp's border; pass --noise-variance")
    return var


def decoder_pixel_scale(vae, kind: str) -> float:
    """The pixel scale (arcsec) of the decoder's images, from its model card."""
    if vae.pixel_scale is None:
        raise cli_error(
            f"the decoder ({kind}) has no pixel scale: its model card records none, so stamps "
            "cannot be resampled to it"
        )
    return float(vae.pixel_scale)


def read_stamps(args: argparse.Namespace, decoder_scale: float) -> list[dict[str, Any]]:
    """The raw stamps to fit: ``[{image, noise_variance, pixel_scale, ident}, ...]``."""
    path = require_file(args.input, "input")
    if is_catalog(path):
        from vaelens.data import load_real_galaxy_catalog

        catalog = load_real_galaxy_catalog(path, load_psf=False)
        try:
            if len(catalog) == 0:
                raise cli_error(f"catalogue {path} lists no galaxies: nothing to fit")
            n = len(catalog) if args.max_galaxies is None else min(len(catalog), args.max_galaxies)
            return [
                {
                    "image": np.array(s.image, dtype=np.float64),
                    "noise_variance": float(s.noise_variance),
                    "pixel_scale": float(s.pixel_scale),
                    "ident": str(s.ident),
                }
                for s in (catalog[i] for i in range(n))
            ]
        finally:
            catalog.close()
    image, header = read_fits_image(path, "stamp", parse_hdu(args.hdu))
    if not np.all(np.isfinite(image)):
        raise cli_error(f"stamp {path} has non-finite pixels")
    scale = args.pixel_scale or header_pixel_scale(header)
    if scale is None:
        log.warning(
            "stamp %s: no pixel scale in its header (PIXSCALE, CD or CDELT) and no --pixel-scale; "
            "assuming the decoder's %g arcsec/px",
            path.name,
            decoder_scale,
        )
        scale = decoder_scale
    if args.noise_variance is not None:
        var = args.noise_variance
    elif "NOISEVAR" in header:
        var = float(header["NOISEVAR"])
    else:
        var = robust_noise_variance(image)
    return [{"image": image, "noise_variance": var, "pixel_scale": scale, "ident": path.stem}]


def preparation_notes(stamp: dict[str, Any], target_scale: float) -> list[str]:
    """What :func:`prepare` does to a stamp besides centring and normalising, in words.

    Raises a CLI error when the stamp's pixels are too coarse for the decoder.
    """
    scale = float(stamp["pixel_scale"])
    shape = stamp["image"].shape
    notes = []
    if not np.isclose(scale, target_scale):
        factor = scale / target_scale  # output pixels per input pixel
        if factor > MAX_UPSAMPLING:
            raise cli_error(
                f"stamp {stamp['ident']}: its pixels ({scale:g} arcsec) are {factor:.1f} times "
                f"coarser than the decoder's ({target_scale:g} arcsec); resampling by more than "
                f"{MAX_UPSAMPLING:g} would interpolate most of the decoder's pixels"
            )
        notes.append(f"resampled from {scale:g} to the decoder's {target_scale:g} arcsec/px")
        shape = tuple(max(int(round(n * factor)), 2) for n in shape)
    size = (STAMP_SIZE, STAMP_SIZE)
    if tuple(shape) != size:
        ny, nx = shape
        if ny >= STAMP_SIZE and nx >= STAMP_SIZE:
            what = "cropped about the light centre"
        elif ny <= STAMP_SIZE and nx <= STAMP_SIZE:
            what = "padded with noise"
        else:
            what = "cropped and padded with noise"
        notes.append(f"{what} from {ny} x {nx} to {STAMP_SIZE} x {STAMP_SIZE} px")
    return notes


def prepare(stamps: list[dict[str, Any]], seed: int, target_scale: float) -> dict[str, np.ndarray]:
    """Preprocess stamps to 64 x 64 unit-flux images at the decoder's pixel scale.

    Resampling, cropping and padding are logged as warnings (per stamp for one stamp, as counts
    for a catalogue).
    """
    from vaelens.data.preprocess import prepare_stamp

    if not stamps:
        raise cli_error("no galaxy stamps to fit")
    notes = [preparation_notes(s, target_scale) for s in stamps]
    if len(stamps) == 1:
        for note in notes[0]:
            log.warning("stamp %s: %s", stamps[0]["ident"], note)
    else:
        for note, count in Counter(n for ns in notes for n in ns).items():
            log.warning("%d of %d stamps %s", count, len(stamps), note)
    rng = np.random.default_rng(seed)
    images, variances, fluxes = [], [], []
    for s in stamps:
        try:
            p = prepare_stamp(
                s["image"],
                s["noise_variance"],
                STAMP_SIZE,
                rng=rng,
                pixel_scale=s["pixel_scale"],
                target_pixel_scale=target_scale,
            )
        except ValueError as err:  # NaN pixels, no positive flux, bad variance
            raise cli_error(f"stamp {s['ident']}: {err}") from None
        images.append(np.asarray(p.image, np.float64))
        variances.append(float(p.noise_variance))
        fluxes.append(float(p.flux))
    return {
        "images": np.stack(images),
        "noise_variance": np.asarray(variances),
        "norm": np.asarray(fluxes),
    }


def fit_batches(vae, prepared: dict[str, np.ndarray], steps: int, batch_size: int = 16):
    """Decoder fits of all prepared stamps in batches (tqdm progress); numpy results."""
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from vaelens.galaxy import fit_galaxies

    decoder = vae.decoder_function()
    images, var = prepared["images"], prepared["noise_variance"]
    n = len(images)
    out: dict[str, list] = {
        k: [] for k in ("z", "flux", "model", "chi2", "reduced_chi2", "n_iter", "converged")
    }
    with tqdm(total=n, desc="fit-galaxy", unit="galaxy") as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            idx = np.arange(start, start + batch_size).clip(max=n - 1)  # pad: one compilation
            batch = jnp.asarray(images[idx], jnp.float32)
            z0, _ = vae.encode(batch)
            res = fit_galaxies(
                decoder, batch, jnp.asarray(var[idx], jnp.float32), z_init=z0, max_iter=steps
            )
            for k in out:
                out[k].append(np.asarray(getattr(res, k))[: stop - start])
            bar.update(stop - start)
    return {k: np.concatenate(v) for k, v in out.items()}


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens fit-galaxy``."""
    from astropy.io import fits

    from vaelens import plotting
    from vaelens.commands._common import format_table
    from vaelens.io_results import atomic_output_dir, check_output_dir, write_json

    check_output_dir(args.out, force=args.force)
    t0 = time.perf_counter()
    vae, kind = load_vae()
    scale = decoder_pixel_scale(vae, kind)
    stamps = read_stamps(args, scale)
    prepared = prepare(stamps, args.seed, scale)
    t1 = time.perf_counter()
    res = fit_batches(vae, prepared, args.steps)
    t_fit = time.perf_counter() - t1
    sigma = np.sqrt(prepared["noise_variance"])[:, None, None]
    resid = (prepared["images"] - res["model"]) / sigma
    rows = []
    for i, s in enumerate(stamps):
        rows.append(
            {
                "ident": s["ident"],
                "flux": float(res["flux"][i] * prepared["norm"][i]),
                "chi2": float(res["chi2"][i]),
                "reduced_chi2": float(res["reduced_chi2"][i]),
                "n_iter": int(res["n_iter"][i]),
                "converged": bool(res["converged"][i]),
            }
        )
    summary = {
        "command": getattr(args, "command_line", None),
        "input": str(Path(args.input).resolve()),
        "decoder": kind,
        "num_galaxies": len(rows),
        "median_reduced_chi2": float(np.median(res["reduced_chi2"])),
        "timings_s": {"read_and_prepare": t1 - t0, "fit": t_fit},
        "galaxies": rows,
    }
    with atomic_output_dir(args.out, force=args.force) as tmp:
        import pandas as pd

        pd.DataFrame(rows).to_csv(tmp / "results.csv", index=False)
        np.save(tmp / "latents.npy", res["z"])
        hdus = [fits.PrimaryHDU()]
        for name, cube in (
            ("STAMP", prepared["images"]),
            ("MODEL", res["model"]),
            ("RESIDUAL", resid),
        ):
            hdu = fits.ImageHDU(np.asarray(cube, np.float32), name=name)
            hdu.header["PIXSCALE"] = scale
            hdus.append(hdu)
        fits.HDUList(hdus).writeto(tmp / "stamps.fits")
        write_json(tmp / "summary.json", summary)
        titles = [f"{r['ident']}" for r in rows]
        fig = plotting.plot_galaxy_fit(
            prepared["images"],
            res["model"],
            np.sqrt(prepared["noise_variance"]),
            pixel_scale=scale,
            titles=titles,
        )
        fig.savefig(tmp / "galaxy_fit.png", dpi=90)
    shown = rows if len(rows) <= 20 else rows[:20]
    sys.stdout.write(
        format_table(shown, ["flux", "chi2", "reduced_chi2", "n_iter", "converged"], index="ident")
    )
    if len(rows) > 20:
        sys.stdout.write(f"... ({len(rows) - 20} more in results.csv)\n")
    sys.stdout.write(
        f"{len(rows)} galaxies, median reduced chi2 {summary['median_reduced_chi2']:.3f}, "
        f"fit time {t_fit:.1f} s (decoder: {kind}); wrote {Path(args.out)}/\n"
    )
    return 0
