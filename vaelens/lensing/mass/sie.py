"""Singular isothermal ellipsoid (SIE): the EPL with gamma = 2 in closed form."""

from __future__ import annotations

import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_ellipticity, check_finite, check_positive
from ._base import MassProfile
from .epl import epl_convergence, epl_deflection, epl_hessian

__all__ = ["SIE"]

_SMALL_Z = 1e-3


def _atanh_sqrt_over_sqrt(z, t=None):
    """:math:`{}_2F_1(1, 1/2; 3/2; z) = \\operatorname{artanh}(\\sqrt z)/\\sqrt z` for ``|z| < 1``.

    A Taylor series is used for ``|z| < 1e-3`` (double ``where`` keeps gradients finite at
    ``z = 0``, i.e. for round lenses).
    """
    small = jnp.abs(z) < _SMALL_Z
    z_safe = jnp.where(small, 0.5, z)
    s = jnp.sqrt(z_safe)
    closed = jnp.arctanh(s) / s
    series = 1.0 + z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z / 9.0)))
    return jnp.where(small, series, closed)


@pytree_dataclass
class SIE(MassProfile):
    """Singular isothermal ellipsoid, lenstronomy ``SIE`` (= ``EPL`` with ``gamma = 2``).

    .. math::
        \\kappa = \\frac12 \\frac{\\theta_E}{\\sqrt{q x'^2 + y'^2/q}}

    Parameters
    ----------
    theta_E : float
        Product-averaged Einstein radius in arcsec (> 0).
    e1, e2 : float
        Ellipticity components (lenstronomy convention), ``|e| < 1``.
    center_x, center_y : float
        Centre in arcsec.

    Notes
    -----
    lenstronomy's default ``SIE`` is a ``NIE`` with a 1e-10 arcsec core; the two agree to
    ~1e-10 arcsec except within ~1e-6 arcsec of the centre. The closed form follows from the
    EPL series with :math:`{}_2F_1(1, 1/2; 3/2; z) = \\operatorname{artanh}\\sqrt z/\\sqrt z`
    (Kormann, Schneider & Bartelmann 1994, A&A 284, 285; Tessore & Metcalf 2015).
    """

    theta_E: float
    e1: float = 0.0
    e2: float = 0.0
    center_x: float = 0.0
    center_y: float = 0.0

    def __post_init__(self):
        check_positive("theta_E", self.theta_E)
        check_ellipticity(self.e1, self.e2)
        check_finite("center_x", self.center_x)
        check_finite("center_y", self.center_y)

    def _alpha(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        a = epl_deflection(dx, dy, self.theta_E, 1.0, self.e1, self.e2, _atanh_sqrt_over_sqrt)
        return dx, dy, a

    def deflection(self, x, y):
        _, _, a = self._alpha(x, y)
        return jnp.real(a), jnp.imag(a)

    def potential(self, x, y):
        dx, dy, a = self._alpha(x, y)
        return dx * jnp.real(a) + dy * jnp.imag(a)

    def convergence(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        return epl_convergence(dx, dy, self.theta_E, 1.0, self.e1, self.e2)

    def hessian(self, x, y):
        dx, dy, a = self._alpha(x, y)
        return epl_hessian(dx, dy, self.theta_E, 1.0, self.e1, self.e2, a)
