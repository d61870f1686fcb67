"""Exports of a lens fit to other lens-modelling codes.

- :func:`export_lenstronomy`: lenstronomy keyword lists (``kwargs_lens``, ``kwargs_lens_light``,
  the source as ``INTERPOL``) and the data, PSF and numerics settings, so that lenstronomy's
  ``ImageModel`` re-renders the fit;
- :func:`export_coolest`: a COOLEST template (Galan et al. 2023) written with the ``coolest``
  package's own classes and serializer (``pip install vaelens[export]``).

Both take a :class:`vaelens.infer.LensFit` (or a :class:`FitPoint`, e.g. read from a fit
folder with :func:`fit_point_from_folder`); the point estimate is the MAP for a MAP fit and the
posterior mean (the source as the posterior-mean image) for SVI and the samplers.
"""

from vaelens.export.conventions import (
    ellipticity_from_coolest,
    ellipticity_to_coolest,
    shear_from_coolest,
    shear_to_coolest,
)
from vaelens.export.coolest import export_coolest
from vaelens.export.lenstronomy import LenstronomyExport, export_lenstronomy
from vaelens.export.point import FitPoint, fit_point, fit_point_from_folder

__all__ = [
    "FitPoint",
    "LenstronomyExport",
    "ellipticity_from_coolest",
    "ellipticity_to_coolest",
    "export_coolest",
    "export_lenstronomy",
    "fit_point",
    "fit_point_from_folder",
    "shear_from_coolest",
    "shear_to_coolest",
]
