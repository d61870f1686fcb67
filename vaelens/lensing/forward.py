"""The image-formation forward model: ray tracing, surface brightness, PSF, pixelisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._xla import materialize
from .grid import PixelGrid, _check_factor, block_average
from .light._base import LightProfile
from .mass import MassProfile, ray_shoot
from .psf import convolve_psf

__all__ = ["forward_model"]


def _as_tuple(profiles, kind) -> tuple:
    if profiles is None:
        return ()
    if isinstance(profiles, kind):
        return (profiles,)
    out = tuple(profiles)
    for p in out:
        if not isinstance(p, kind):
            raise ValueError(f"expected {kind.__name__} instances, got {type(p).__name__}")
    return out


def _float_dtype(*trees) -> Any:
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(trees) if leaf is not None]
    return jnp.result_type(float, *leaves)


def forward_model(
    grid: PixelGrid,
    mass: Sequence[MassProfile] | MassProfile = (),
    lens_light: Sequence[LightProfile] | LightProfile = (),
    source: Sequence[LightProfile] | LightProfile = (),
    psf=None,
    supersampling: int = 1,
    convolve_supersampled: bool = False,
):
    """Model image of a lens system on a pixel grid.

    The surface brightness of the lens light at image-plane positions plus that of the source
    at the ray-traced positions :math:`\\beta = \\theta - \\alpha(\\theta)` is evaluated on the
    ``supersampling x supersampling`` sub-pixel centres, block averaged to the grid, convolved
    with the PSF and multiplied by the pixel area. This is lenstronomy's ``ImageModel``
    convention (``Numerics.re_size_convolve`` multiplies by ``pixel_width**2``): the result is
    flux per pixel when surface brightness is flux per arcsec^2.

    Parameters
    ----------
    grid : PixelGrid
        Output grid (static under ``jit``).
    mass : sequence of mass profiles
        Lens mass (one plane); may be empty (then the source is not lensed).
    lens_light, source : sequence of light profiles
        Unlensed lens light and lensed source light.
    psf : array, shape (ky, kx), optional
        PSF kernel (normalised internally). On the grid's pixel scale, or on the supersampled
        pixel scale (``pixel_scale / supersampling``) if ``convolve_supersampled``.
    supersampling : int
        Sub-pixels per pixel side (static).
    convolve_supersampled : bool
        Convolve on the supersampled grid before averaging (static).

    Returns
    -------
    jax.Array
        ``(ny, nx)`` model image in flux per pixel; dtype follows the inputs (float32 in,
        float32 out).

    Examples
    --------
    >>> f = jax.jit(forward_model, static_argnames=("grid", "supersampling"))
    """
    if not isinstance(grid, PixelGrid):
        raise ValueError(f"grid must be a PixelGrid, got {type(grid).__name__}")
    factor = _check_factor(supersampling)
    mass = _as_tuple(mass, MassProfile)
    lens_light = _as_tuple(lens_light, LightProfile)
    source = _as_tuple(source, LightProfile)
    if psf is not None:
        psf = jnp.asarray(psf)
        if psf.ndim != 2:
            raise ValueError(f"psf must be a 2-D kernel, got shape {psf.shape}")
    dtype = _float_dtype(mass, lens_light, source, psf)
    x, y = grid.supersampled_coordinates(factor, dtype=dtype)

    image = jnp.zeros_like(x)
    for profile in lens_light:
        image = image + profile.surface_brightness(x, y)
    if source:
        bx, by = ray_shoot(x, y, mass)
        for profile in source:
            image = image + profile.surface_brightness(bx, by)
    if lens_light or source:
        image = materialize(image)  # keep the profiles out of the padding fusions below

    if psf is not None and convolve_supersampled and factor > 1:
        image = block_average(convolve_psf(image, psf), factor)
    else:
        image = block_average(image, factor)
        if psf is not None:
            image = convolve_psf(image, psf)
    return image * grid.pixel_area
