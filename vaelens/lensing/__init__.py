"""Pure-JAX strong-lensing physics: grids, mass and light profiles, PSF, noise, forward model.

Conventions are lenstronomy's: angles in arcsec, position angles in radians, ellipticity
``(e1, e2)`` with ``q = (1 - |e|) / (1 + |e|)`` and ``phi = arctan2(e2, e1) / 2``; images are
``(ny, nx)`` arrays. Profiles are immutable pytrees, so they pass through ``jit``, ``grad`` and
``vmap``. This subpackage imports neither NumPyro nor Flax.
"""

from ._xla import XLA_CPU_OPTIONS
from .forward import forward_model
from .grid import PixelGrid
from .light import Gaussian, LightProfile, PixelatedSource, Sersic, Shapelets
from .light.shapelets import shapelet_design_matrix
from .mass import EPL, SIE, SIS, ExternalShear, MassProfile, ray_shoot, total_deflection
from .noise import draw_noise, noise_variance
from .psf import convolve_psf, gaussian_psf

__all__ = [
    "XLA_CPU_OPTIONS",
    "EPL",
    "SIE",
    "SIS",
    "ExternalShear",
    "Gaussian",
    "LightProfile",
    "MassProfile",
    "PixelGrid",
    "PixelatedSource",
    "Sersic",
    "Shapelets",
    "convolve_psf",
    "draw_noise",
    "forward_model",
    "gaussian_psf",
    "noise_variance",
    "ray_shoot",
    "shapelet_design_matrix",
    "total_deflection",
]
