"""Helpers shared by the subcommands: decoder choice, FITS checks, tables."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.data import inputs as _inputs
from vaelens.data.inputs import header_pixel_scale, parse_hdu
from vaelens.io_results import format_table

log = logging.getLogger("vaelens")

__all__ = [
    "cli_error", "format_table", "header_pixel_scale", "load_vae", "make_decoder",
    "parse_hdu", "read_fits_image", "require_file",
]


def cli_error(message: str) -> Exception:
    """A :class:`vaelens.cli.CLIError` (imported lazily to avoid an import cycle)."""
    from vaelens.cli import CLIError

    return CLIError(message)


def require_file(path: str | os.PathLike | None, what: str) -> Path | None:
    """``Path(path)`` after checking that it is an existing file (None passes through)."""
    try:
        return _inputs.require_file(path, what)
    except _inputs.InputError as err:
        raise cli_error(str(err)) from None


def read_fits_image(path: Path, what: str, hdu: int | str = 0) -> tuple[np.ndarray, Any]:
    """``(data, header)`` of one image HDU, with clear errors for non-FITS files and bad HDUs."""
    try:
        return _inputs.read_fits_image(path, what, hdu)
    except _inputs.InputError as err:
        raise cli_error(str(err)) from None


@functools.lru_cache(maxsize=2)
def load_vae(weights: str | None = None):
    """The VAE whose decoder is the source model.

    Parameters
    ----------
    weights
        Optional safetensors file: trained weights with their JSON model card next to them
        (``vaelens train`` output, SHA-256 verified), or a bare training checkpoint
        (``.../checkpoint/model.safetensors``) of the default architecture. None: the pretrained
        weights shipped with vaelens.

    Returns
    -------
    (vaelens.vae.VAE, str)
        The network (loaded once per process and argument) and a description.

    Raises
    ------
    vaelens.cli.CLIError
        A missing, corrupt, truncated or non-safetensors weights file, or weights of another
        architecture; or no pretrained weights installed (never a random-weight decoder).
    """
    from vaelens.vae import WeightsError, load_pretrained, load_vae_file

    if weights is None:
        try:
            return load_pretrained(), "pretrained"
        except (OSError, WeightsError) as err:
            raise cli_error(
                f"the pretrained VAE weights cannot be loaded ({_first_line(err)}); reinstall "
                "vaelens or pass --weights"
            ) from None
    path = require_file(weights, "weights file")
    try:
        return load_vae_file(path)
    except WeightsError as err:
        raise cli_error(
            f"--weights {path}: not a readable vaelens safetensors file ({_first_line(err)})"
        ) from None


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] or type(err).__name__


def make_decoder(source: str = "vae", weights: str | None = None):
    """The decoder function of :func:`load_vae` (None for a non-VAE source).

    Returns
    -------
    (decoder, description)
        ``decoder(z) -> (64, 64)`` and the description of :func:`load_vae` (``"none"`` for a
        non-VAE source).
    """
    if source != "vae":
        return None, "none"
    vae, kind = load_vae(None if weights is None else str(weights))
    return vae.decoder_function(), kind
