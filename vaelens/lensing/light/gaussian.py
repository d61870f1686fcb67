"""Circular Gaussian light profile (lenstronomy ``GAUSSIAN``)."""

from __future__ import annotations

import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_finite, check_positive
from ._base import LightProfile

__all__ = ["Gaussian"]


@pytree_dataclass
class Gaussian(LightProfile):
    """Circular Gaussian normalised to total flux ``amp`` (lenstronomy ``GAUSSIAN``).

    .. math:: I(r) = \\frac{A}{2\\pi\\sigma^2} \\exp\\left(-\\frac{r^2}{2\\sigma^2}\\right)

    Parameters
    ----------
    amp : float
        Total flux (surface brightness integrated over the plane).
    sigma : float
        Standard deviation in arcsec (> 0).
    center_x, center_y : float
        Centre in arcsec.
    """

    amp: float
    sigma: float
    center_x: float = 0.0
    center_y: float = 0.0

    def __post_init__(self):
        check_finite("amp", self.amp)
        check_positive("sigma", self.sigma)
        check_finite("center_x", self.center_x)
        check_finite("center_y", self.center_y)

    def surface_brightness(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        s2 = self.sigma * self.sigma
        return self.amp / (2.0 * jnp.pi * s2) * jnp.exp(-0.5 * (dx * dx + dy * dy) / s2)
