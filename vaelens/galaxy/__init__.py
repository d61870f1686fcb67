"""Fits of single galaxy stamps: the VAE decoder, an elliptical Sersic profile, shapelets.

- :func:`fit_galaxy`, :func:`fit_galaxies`, :func:`make_galaxy_fitter` -- MAP fit by the VAE
  decoder (latents, flux, sub-pixel centre), one stamp or a batch (:mod:`.decoder_fit`);
- :func:`fit_sersic` -- PSF-convolved elliptical Sersic, multi-start L-BFGS (:mod:`.sersic_fit`);
- :func:`fit_shapelets` -- PSF-convolved Cartesian shapelets, linear solve (:mod:`.shapelet_fit`).

This layer sits beside :mod:`vaelens.models`: it uses :mod:`vaelens.lensing` (profiles, grids,
PSF), :mod:`vaelens.data` (the Fourier shift) and :mod:`vaelens.optim` (L-BFGS), and is used by
the ``vaelens fit-galaxy`` command and the benchmarks.
"""

from vaelens.galaxy._stamp import ParametricFitResult
from vaelens.galaxy.decoder_fit import (
    GalaxyFitResult,
    fit_galaxies,
    fit_galaxy,
    make_galaxy_fitter,
)
from vaelens.galaxy.sersic_fit import fit_sersic
from vaelens.galaxy.shapelet_fit import fit_shapelets

__all__ = [
    "GalaxyFitResult",
    "ParametricFitResult",
    "fit_galaxies",
    "fit_galaxy",
    "fit_sersic",
    "fit_shapelets",
    "make_galaxy_fitter",
]
