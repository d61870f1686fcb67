"""``vaelens fit-galaxy``: fit galaxy stamps with the VAE decoder (batched L-BFGS).

Input: one stamp (a FITS image) or a whole GalSim RealGalaxyCatalog (the catalogue table file;
detected by its ``GAL_FILENAME`` column). Every stamp is preprocessed like the training data
(:func:`vaelens.data.preprocess.prepare_stamp`: centred on the light, resampled to the decoder's
0.03"/px, cropped or padded to 64 x 64, unit flux), the encoder mean starts the fit, and
:func:`vaelens.infer.galaxy_fit.fit_galaxies` fits ``flux x shift(decoder(z))`` to a batch of
stamps at once (``jax.vmap``).

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

#: Pixel scale of the decoder's 64 x 64 images (COSMOS), arcsec.
DECODER_PIXEL_SCALE = 0.03


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


def read_stamps(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The raw stamps to fit: ``[{image, noise_variance, pixel_scale, ident}, ...]``."""
    path = require_file(args.input, "input")
    if is_catalog(path):
        from vaelens.data import load_real_galaxy_catalog

        catalog = load_real_galaxy_catalog(path, load_psf=False)
        try:
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
    scale = args.pixel_scale or header_pixel_scale(header) or DECODER_PIXEL_SCALE
    if args.noise_variance is not None:
        var = args.noise_variance
    elif "NOISEVAR" in header:
        var = float(header["NOISEVAR"])
    else:
        var = robust_noise_variance(image)
    return [{"image": image, "noise_variance": var, "pixel_scale": scale, "ident": path.stem}]


def prepare(stamps: list[dict[str, Any]], seed: int) -> dict[str, np.ndarray]:
    """Preprocess stamps to 64 x 64 unit-flux images at the decoder's pixel scale."""
    from vaelens.data.preprocess import prepare_stamp

    rng = np.random.default_rng(seed)
    images, variances, fluxes = [], [], []
    for s in stamps:
        p = prepare_stamp(
            s["image"],
            s["noise_variance"],
            64,
            rng=rng,
            pixel_scale=s["pixel_scale"],
            target_pixel_scale=DECODER_PIXEL_SCALE,
        )
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

    from vaelens.infer.galaxy_fit import fit_galaxies

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
    stamps = read_stamps(args)
    prepared = prepare(stamps, args.seed)
    vae, kind = load_vae()
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
            hdu.header["PIXSCALE"] = DECODER_PIXEL_SCALE
            hdus.append(hdu)
        fits.HDUList(hdus).writeto(tmp / "stamps.fits")
        write_json(tmp / "summary.json", summary)
        titles = [f"{r['ident']}" for r in rows]
        fig = plotting.plot_galaxy_fit(
            prepared["images"],
            res["model"],
            np.sqrt(prepared["noise_variance"]),
            pixel_scale=DECODER_PIXEL_SCALE,
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
