"""``vaelens export FIT_DIR --coolest OUT``: a fit folder as a COOLEST template.

The data are read again from the image and PSF named in ``FIT_DIR/summary.json``, with the noise,
mask and pixel-scale options of the recorded ``vaelens fit`` command line
(:func:`vaelens.commands._inputs.load_image_data`); the model from its ``spec``
(:meth:`vaelens.models.LensSpec.from_dict`). The point estimate is that of
:func:`vaelens.export.fit_point_from_folder`; the files are those of
:func:`vaelens.export.export_coolest`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
from pathlib import Path
from typing import Any

from vaelens.commands._common import cli_error, parse_hdu

__all__ = ["load_fit_folder", "run"]


def _fit_options(summary: dict[str, Any], folder: Path) -> argparse.Namespace | None:
    """The parsed ``vaelens fit`` command line recorded in the summary (None if there is none)."""
    command = summary.get("command")
    if not command:
        return None
    from vaelens.cli import build_parser

    words = shlex.split(str(command))
    if len(words) < 2 or words[1] != "fit":
        return None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(words[1:])
    except SystemExit:
        raise cli_error(
            f"{folder}/summary.json: its command line cannot be read ({err.getvalue().strip()})"
        ) from None


def load_fit_folder(folder: str | Path, *, require_vae: bool = False):
    """The :class:`vaelens.export.FitPoint` of a ``vaelens fit`` output folder.

    ``require_vae``: refuse a fit whose source is not the VAE (before any data are read).

    Raises
    ------
    vaelens.cli.CLIError
        Not a fit folder, a summary without the image, PSF or model, input files that moved, or
        a posterior that does not match the model.
    """
    from vaelens.commands._inputs import load_image_data
    from vaelens.export import fit_point_from_folder
    from vaelens.io_results import read_json

    path = Path(folder)
    if not path.is_dir():
        raise cli_error(f"fit folder {path} not found")
    if not (path / "summary.json").is_file() or not (path / "posterior.nc").is_file():
        raise cli_error(
            f"{path} is not a 'vaelens fit' output folder (no summary.json and posterior.nc)"
        )
    try:
        summary = read_json(path / "summary.json")
    except ValueError as err:
        raise cli_error(str(err)) from None
    for key in ("image", "psf", "spec"):
        if not summary.get(key):
            raise cli_error(
                f"{path}/summary.json has no {key!r}: export needs a folder written by "
                "'vaelens fit'"
            )
    from vaelens.models import LensSpec

    try:
        spec = LensSpec.from_dict(summary["spec"])
    except (TypeError, ValueError) as err:
        raise cli_error(f"{path}/summary.json: bad model specification ({err})") from None
    if require_vae and spec.source_model != "vae":
        raise cli_error(
            f"{path} is a fit with a {spec.source_model} source; the COOLEST export writes the "
            "decoded source as a pixelated grid and needs a VAE-source fit"
        )
    opts = _fit_options(summary, path)
    data = load_image_data(
        summary["image"],
        summary["psf"],
        hdu=parse_hdu(opts.hdu) if opts else 0,
        noise_map=opts.noise_map if opts else None,
        bkg_rms=opts.bkg_rms if opts else None,
        exposure_time=opts.exposure_time if opts else None,
        pixel_scale=opts.pixel_scale if opts else None,
        mask=opts.mask if opts else None,
        mask_radius=opts.mask_radius if opts else None,
    )
    try:
        return fit_point_from_folder(path, data)
    except (ValueError, TypeError) as err:
        raise cli_error(f"{path}: {err}") from None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens export``."""
    from vaelens.export import export_coolest
    from vaelens.io_results import check_output_dir

    if args.coolest is None:
        raise cli_error("nothing to export: give --coolest OUT")
    check_output_dir(args.coolest, force=args.force)
    point = load_fit_folder(args.fit_dir, require_vae=True)
    try:
        path = export_coolest(point, args.coolest, args.name, force=args.force)
    except (ValueError, ImportError) as err:
        raise cli_error(str(err)) from None
    files = ", ".join(sorted(p.name for p in path.parent.iterdir()))
    sys.stdout.write(f"wrote {path} (point estimate: {point.label}; files: {files})\n")
    return 0
