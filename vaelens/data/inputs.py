"""Reading and checking the FITS inputs of a lens fit: image, PSF, noise and mask.

:func:`load_image_data` is what ``vaelens fit`` and ``vaelens batch`` read a lens with. Every
problem a user can fix (a missing file, a bad HDU, a PSF at another pixel scale, no noise
model, an empty mask) is an :class:`InputError` with a one-line message naming the option that
fixes it (the command-line flag, e.g. ``--pixel-scale``, which is the catalogue column
``pixel_scale`` of ``vaelens batch``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PIXEL_SCALE_RTOL",
    "InputError",
    "header_pixel_scale",
    "load_image_data",
    "parse_hdu",
    "read_fits_image",
    "require_file",
]

log = logging.getLogger("vaelens")

#: Relative tolerance of the image / PSF pixel-scale check.
PIXEL_SCALE_RTOL = 0.01


class InputError(ValueError):
    """An input file or value the user can fix; the message is one line."""


def require_file(path: str | os.PathLike | None, what: str) -> Path | None:
    """``Path(path)`` after checking that it is an existing file (None passes through)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} {p} not found")
    if not p.is_file():
        raise InputError(f"{what} {p} is not a file")
    return p


def read_fits_image(path: Path, what: str, hdu: int | str = 0) -> tuple[np.ndarray, Any]:
    """``(data, header)`` of one image HDU, with clear errors for non-FITS files and bad HDUs."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            try:
                h = hdul[hdu]
            except (IndexError, KeyError):
                names = [f"{i}:{x.name}" for i, x in enumerate(hdul)]
                raise InputError(
                    f"{what} {path} has no HDU {hdu!r} (HDUs: {', '.join(names)})"
                ) from None
            if h.data is None or np.ndim(h.data) != 2:
                raise InputError(
                    f"{what} {path}: HDU {hdu!r} holds no 2-d image "
                    f"(shape {None if h.data is None else np.shape(h.data)})"
                )
            return np.array(h.data, dtype=np.float64), h.header.copy()
    except OSError as err:
        raise InputError(f"{what} {path} is not a readable FITS file ({err})") from None


def parse_hdu(text: str | int) -> int | str:
    """An HDU given as text: an index (``"1"``) or an extension name."""
    if isinstance(text, int | np.integer):
        return int(text)
    return int(text) if str(text).isdigit() else str(text)


def header_pixel_scale(header: Any) -> float | None:
    """Pixel scale in arcsec from ``PIXSCALE``, the CD matrix or ``CDELT`` with its ``PC``
    matrix (None if none is there)."""
    if "PIXSCALE" in header:
        return float(header["PIXSCALE"])
    if "CD1_1" in header and "CD2_2" in header:
        cd = np.array(
            [
                [header["CD1_1"], header.get("CD1_2", 0.0)],
                [header.get("CD2_1", 0.0), header["CD2_2"]],
            ]
        )
        return float(np.sqrt(abs(np.linalg.det(cd))) * 3600.0)
    if "CDELT1" in header:
        cdelt = np.array([float(header["CDELT1"]), float(header.get("CDELT2", header["CDELT1"]))])
        pc = np.array(
            [
                [header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
                [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)],
            ],
            dtype=float,
        )
        return float(np.sqrt(abs(np.linalg.det(cdelt[:, None] * pc))) * 3600.0)
    return None


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
    InputError
        Missing or unreadable files, a bad HDU, a PSF whose pixel scale differs from the image's,
        a PSF larger than the image, no noise model, or an empty mask.
    """
    from vaelens.data.image_data import ImageData

    image_path = require_file(image, "image")
    psf_path = require_file(psf, "PSF")
    pixels, header = read_fits_image(image_path, "image", hdu)
    psf_arr, psf_header = read_fits_image(psf_path, "PSF")

    scale = pixel_scale if pixel_scale is not None else header_pixel_scale(header)
    if scale is None:
        raise InputError(
            f"image {image_path} has no pixel scale (no PIXSCALE or CD matrix); pass --pixel-scale"
        )
    psf_scale = header_pixel_scale(psf_header)
    if psf_scale is not None and abs(psf_scale / scale - 1.0) > PIXEL_SCALE_RTOL:
        raise InputError(
            f'pixel-scale mismatch: image {scale:.5g}"/px but PSF {psf_path.name} '
            f'{psf_scale:.5g}"/px; resample the PSF to the image pixel scale'
        )
    if psf_arr.shape[0] > pixels.shape[0] or psf_arr.shape[1] > pixels.shape[1]:
        raise InputError(f"PSF {psf_arr.shape} is larger than the image {pixels.shape}")
    if not np.all(np.isfinite(psf_arr)) or not psf_arr.sum() > 0:
        raise InputError(f"PSF {psf_path} has non-finite values or a non-positive sum")
    if psf_arr.shape[0] % 2 == 0 or psf_arr.shape[1] % 2 == 0:
        warnings.warn(
            f"PSF {psf_path.name} has an even size {psf_arr.shape}: its centre is taken at the "
            "pixel right of and above the middle, so the model is shifted by half a pixel "
            "unless the PSF was made that way; an odd-sized PSF avoids the ambiguity",
            UserWarning,
            stacklevel=2,
        )

    noise_arr = None
    if noise_map is not None:
        noise_arr, _ = read_fits_image(require_file(noise_map, "noise map"), "noise map")
        if noise_arr.shape != pixels.shape:
            raise InputError(
                f"noise map {noise_arr.shape} and image {pixels.shape} differ in shape"
            )
    elif bkg_rms is None and "BKG_RMS" not in header:
        raise InputError(
            f"no noise model for {image_path.name}: give --noise-map, or --bkg-rms (and "
            "--exposure-time), or put BKG_RMS (and EXPTIME) in the image header"
        )
    mask_arr = None
    if mask is not None:
        mask_arr, _ = read_fits_image(require_file(mask, "mask"), "mask")
        if mask_arr.shape != pixels.shape:
            raise InputError(f"mask {mask_arr.shape} and image {pixels.shape} differ in shape")
        mask_arr = mask_arr != 0

    try:
        data = ImageData.from_fits(
            image_path,
            psf=psf_arr,
            noise_map=noise_arr,
            mask=mask_arr,
            pixel_scale=pixel_scale,
            bkg_rms=bkg_rms,
            exposure_time=exposure_time,
            hdu=hdu,
        )
    except ValueError as err:  # ImageData's validation of the user's arrays
        raise InputError(f"{image_path.name}: {err}") from None
    if pixel_scale is None and abs(data.pixel_scale / scale - 1.0) > PIXEL_SCALE_RTOL:
        log.warning("header pixel scale %.5g differs from the grid's %.5g", scale, data.pixel_scale)
    if mask_radius is not None:
        x, y = data.grid.coordinates_numpy()
        inside = np.hypot(x, y) <= mask_radius
        if not (data.mask & inside).any():
            raise InputError(f"--mask-radius {mask_radius} arcsec leaves no pixel in the fit")
        data = dataclasses.replace(data, mask=data.mask & inside)
    return data
