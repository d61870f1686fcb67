"""Singular isothermal sphere (SIS)."""

from __future__ import annotations

import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_finite, check_positive
from ._base import MassProfile, safe_norm2

__all__ = ["SIS"]


@pytree_dataclass
class SIS(MassProfile):
    """Singular isothermal sphere, lenstronomy ``SIS``.

    .. math::
        \\psi = \\theta_E r, \\quad \\alpha = \\theta_E\\, \\hat{r}, \\quad
        \\kappa = \\frac{\\theta_E}{2 r}

    Parameters
    ----------
    theta_E : float
        Einstein radius in arcsec (> 0).
    center_x, center_y : float
        Centre in arcsec.

    Notes
    -----
    At exactly the centre the deflection and the hessian are set to zero, as in lenstronomy.
    Reference: Schneider, Ehlers & Falco (1992), *Gravitational Lenses*, Sect. 8.1.
    """

    theta_E: float
    center_x: float = 0.0
    center_y: float = 0.0

    def __post_init__(self):
        check_positive("theta_E", self.theta_E)
        check_finite("center_x", self.center_x)
        check_finite("center_y", self.center_y)

    def deflection(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        _, nz, r2s = safe_norm2(dx, dy)
        a = jnp.where(nz, self.theta_E / jnp.sqrt(r2s), 0.0)
        return a * dx, a * dy

    def potential(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        _, nz, r2s = safe_norm2(dx, dy)
        return jnp.where(nz, self.theta_E * jnp.sqrt(r2s), 0.0)

    def hessian(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        _, nz, r2s = safe_norm2(dx, dy)
        pre = jnp.where(nz, self.theta_E / (r2s * jnp.sqrt(r2s)), 0.0)
        f_xy = -dx * dy * pre
        return dy * dy * pre, f_xy, f_xy, dx * dx * pre
