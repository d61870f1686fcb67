"""External shear."""

from __future__ import annotations

import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_finite
from .._xla import broadcast_scalars
from ._base import MassProfile

__all__ = ["ExternalShear"]


@pytree_dataclass
class ExternalShear(MassProfile):
    """External shear, lenstronomy ``SHEAR``.

    .. math::
        \\psi = \\tfrac12 \\gamma_1 (x^2 - y^2) + \\gamma_2 x y

    with ``x, y`` measured from ``(ra_0, dec_0)``.

    Parameters
    ----------
    gamma1, gamma2 : float
        Cartesian shear components (dimensionless).
    ra_0, dec_0 : float
        Origin of the potential in arcsec (only changes the potential's gauge and a constant
        deflection offset).
    """

    gamma1: float
    gamma2: float
    ra_0: float = 0.0
    dec_0: float = 0.0

    def __post_init__(self):
        for name in ("gamma1", "gamma2", "ra_0", "dec_0"):
            check_finite(name, getattr(self, name))

    def deflection(self, x, y):
        dx, dy = jnp.broadcast_arrays(x - self.ra_0, y - self.dec_0)
        g1, g2 = broadcast_scalars(dx.shape, self.gamma1, self.gamma2)  # one reduction each
        return g1 * dx + g2 * dy, g2 * dx - g1 * dy

    def potential(self, x, y):
        dx, dy = x - self.ra_0, y - self.dec_0
        return 0.5 * (self.gamma1 * (dx * dx - dy * dy) + 2.0 * self.gamma2 * dx * dy)

    def hessian(self, x, y):
        shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y))
        ones = jnp.ones(shape, dtype=jnp.result_type(x, y, self.gamma1))
        g1, g2 = self.gamma1 * ones, self.gamma2 * ones
        return g1, g2, g2, -g1

    def convergence(self, x, y):
        shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y))
        return jnp.zeros(shape, dtype=jnp.result_type(x, y, self.gamma1))
