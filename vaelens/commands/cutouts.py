"""``vaelens cutouts``: single-galaxy training stamps from a survey image (RealGalaxyCatalog).

Detection, deblending, selection and noise replacement of the neighbours are those of
:func:`vaelens.data.cutouts.make_cutouts` (photutils; ``pip install 'vaelens[cutouts]'``).
Writes into ``--out`` (atomically: nothing is left behind by a failed run):
``real_galaxy_catalog.fits``, ``real_galaxy_images.fits``, ``real_galaxy_PSF_images.fits``
(read by :func:`vaelens.data.load_real_galaxy_catalog`, ``vaelens fit-galaxy`` and
``vaelens train``), ``sources.csv`` (every detected source, why it was rejected),
``segmentation.fits`` (the deblended segmentation map), ``summary.json`` and two figures:
``cutouts.png`` (the stamps) and ``field.png`` (the field with the kept and rejected sources).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from vaelens.commands._common import cli_error, parse_hdu, read_fits_image, require_file

log = logging.getLogger("vaelens")


def _contact_sheet(cutouts, titles, path: Path, max_stamps: int = 64) -> None:
    """The stamps on an asinh stretch, one panel each (at most ``max_stamps``)."""
    import matplotlib.pyplot as plt

    n = min(len(cutouts), max_stamps)
    cols = int(min(8, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k >= n:
            continue
        stamp = cutouts.stamps[k]
        sigma = float(np.sqrt(cutouts.noise_variance[k]))
        ax.imshow(
            np.arcsinh(stamp / sigma),
            origin="lower",
            cmap="magma",
            vmin=-2,
            vmax=max(float(np.arcsinh(stamp.max() / sigma)), 1.0),
        )
        ax.set_title(titles[k], fontsize=7)
    fig.suptitle(
        f"{len(cutouts)} stamps" + (f" (first {n})" if n < len(cutouts) else ""), fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _field_figure(field, cutouts, path: Path) -> None:
    """The field (asinh stretch) with the kept sources boxed and the rejected ones circled."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    sigma = cutouts.noise_rms
    img = np.nan_to_num(field - cutouts.background)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(
        np.arcsinh(img / sigma),
        origin="lower",
        cmap="gray_r",
        vmin=-1,
        vmax=max(float(np.arcsinh(np.nanmax(img) / sigma)), 1.0),
    )
    size = cutouts.stamps.shape[-1]
    src = cutouts.sources
    for row in src:
        if row["selected"]:
            x0 = np.floor(row["x"] + 0.5) - size // 2 - 0.5
            y0 = np.floor(row["y"] + 0.5) - size // 2 - 0.5
            ax.add_patch(Rectangle((x0, y0), size, size, fill=False, color="tab:green", lw=0.8))
            ax.text(
                row["x"],
                row["y"] + size / 2,
                str(row["label"]),
                color="tab:green",
                fontsize=6,
                ha="center",
                va="bottom",
            )
        else:
            ax.plot(row["x"], row["y"], "o", mfc="none", color="tab:red", ms=4, mew=0.6)
    ax.set_title(
        f"{int(src['selected'].sum())} kept (boxes), "
        f"{int((~src['selected']).sum())} rejected (circles)",
        fontsize=9,
    )
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens cutouts``."""
    from astropy.io import fits

    from vaelens.data.cutouts import CutoutError, make_cutouts, write_catalog_files
    from vaelens.io_results import atomic_output_dir, check_output_dir, write_json

    check_output_dir(args.out, force=args.force)
    try:
        import photutils  # noqa: F401
    except ImportError:
        from vaelens.data.cutouts import INSTALL_HINT

        raise cli_error(
            f"vaelens cutouts needs photutils, which is not installed: {INSTALL_HINT}"
        ) from None
    t0 = time.perf_counter()
    field_path = require_file(args.field, "field")
    psf_path = require_file(args.psf, "PSF")
    field, header = read_fits_image(field_path, "field", parse_hdu(args.hdu))
    psf, psf_header = read_fits_image(psf_path, "PSF")
    noise_map = weight = None
    if args.noise_map is not None:
        noise_map, _ = read_fits_image(require_file(args.noise_map, "noise map"), "noise map")
    if args.weight is not None:
        weight, _ = read_fits_image(require_file(args.weight, "weight map"), "weight map")
    try:
        cutouts = make_cutouts(
            field,
            psf,
            noise_map=noise_map,
            weight=weight,
            header=header,
            psf_header=psf_header,
            pixel_scale=args.pixel_scale,
            stamp_size=args.stamp_size,
            nsigma=args.nsigma,
            min_area=args.min_area,
            min_snr=args.min_snr,
            deblend=args.deblend,
            deblend_contrast=args.deblend_contrast,
            margin=args.margin,
            max_neighbour_fraction=args.max_neighbour_fraction,
            psf_size=args.psf_size,
            recentre_psf=args.recentre_psf,
            zeropoint=args.zeropoint,
            seed=args.seed,
        )
    except CutoutError as err:
        raise cli_error(f"{field_path.name}: {err}") from None
    t_cut = time.perf_counter() - t0
    rows = cutouts.selected
    titles = [f"{int(r['label'])}  S/N {r['snr']:.0f}" for r in rows]
    summary = {
        "command": getattr(args, "command_line", None),
        "field": str(field_path.resolve()),
        "psf": str(psf_path.resolve()),
        "pixel_scale": cutouts.pixel_scale,
        "stamp_size": int(cutouts.stamps.shape[-1]),
        "psf_shape": list(cutouts.psf.shape),
        "noise_source": cutouts.noise_source,
        "noise_rms": cutouts.noise_rms,
        "noise_correlation": cutouts.noise_correlation,
        "background": cutouts.background,
        "seed": cutouts.seed,
        "num_detected": len(cutouts.sources),
        "num_stamps": len(cutouts),
        "rejected": cutouts.rejection_counts(),
        "neighbours": "replaced by Gaussian noise of the local rms",
        "time_s": t_cut,
    }
    with atomic_output_dir(args.out, force=args.force) as tmp:
        cat_path = write_catalog_files(
            cutouts, tmp, prefix=args.prefix, ident_offset=args.ident_offset
        )
        cutouts.sources.write(tmp / "sources.csv", format="ascii.csv")
        fits.PrimaryHDU(cutouts.segmentation).writeto(tmp / "segmentation.fits")
        summary["catalog"] = cat_path.name
        write_json(tmp / "summary.json", summary)
        _contact_sheet(cutouts, titles, tmp / "cutouts.png")
        _field_figure(field, cutouts, tmp / "field.png")
    rejected = ", ".join(f"{n} {r}" for r, n in summary["rejected"].items()) or "none"
    sys.stdout.write(
        f"{len(cutouts)} of {len(cutouts.sources)} detected sources cut out as "
        f"{summary['stamp_size']} x {summary['stamp_size']} px stamps "
        f"({cutouts.pixel_scale:.4g} arcsec/px, noise rms {cutouts.noise_rms:.4g} from "
        f"{cutouts.noise_source}); rejected: {rejected}\n"
        f"wrote {Path(args.out)}/{cat_path.name} (vaelens.data.load_real_galaxy_catalog)\n"
    )
    return 0
