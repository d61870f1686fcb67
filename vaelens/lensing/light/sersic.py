"""Elliptical Sersic profile with lenstronomy's ``SERSIC_ELLIPSE`` conventions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_ellipticity, check_finite, check_positive
from .._xla import broadcast_scalars
from ._base import LightProfile

__all__ = ["Sersic", "sersic_b_n"]

# lenstronomy floors radii at this value (SersicUtil._smoothing) for numerical stability.
_R_SMOOTHING = 1e-4


def sersic_b_n(n_sersic):
    """:math:`b_n \\approx 1.9992 n - 0.3271` (Capaccioli 1989), floored at 1e-5."""
    return jnp.maximum(1.9992 * n_sersic - 0.3271, 1e-5)


@pytree_dataclass
class Sersic(LightProfile):
    """Elliptical Sersic profile, lenstronomy ``SERSIC_ELLIPSE``.

    .. math::
        I(x, y) = A \\exp\\left\\{-b_n\\left[(R/R_{\\rm S})^{1/n} - 1\\right]\\right\\},
        \\qquad R = \\sqrt{q x'^2 + y'^2/q},

    i.e. ``amp`` is the surface brightness at the (product-averaged) Sersic radius.
    Radii are floored at 1e-4 arcsec as in lenstronomy.

    Parameters
    ----------
    amp : float
        Surface brightness at ``R_sersic`` (flux per arcsec^2).
    R_sersic : float
        Half-light radius in arcsec (> 0).
    n_sersic : float
        Sersic index (> 0).
    e1, e2 : float
        Ellipticity (lenstronomy convention), ``|e| < 1``.
    center_x, center_y : float
        Centre in arcsec.

    References
    ----------
    Sersic (1963); Capaccioli (1989) for :math:`b_n`; lenstronomy ``SersicElliptic``.
    """

    amp: float
    R_sersic: float
    n_sersic: float
    e1: float = 0.0
    e2: float = 0.0
    center_x: float = 0.0
    center_y: float = 0.0

    def __post_init__(self):
        check_finite("amp", self.amp)
        check_positive("R_sersic", self.R_sersic)
        check_positive("n_sersic", self.n_sersic)
        check_ellipticity(self.e1, self.e2)
        check_finite("center_x", self.center_x)
        check_finite("center_y", self.center_y)

    def surface_brightness(self, x, y):
        x, y = jnp.broadcast_arrays(x, y)
        # derived scalars first, each broadcast once (one reduction each in reverse mode)
        e1, e2 = self.e1, self.e2
        # product-averaged elliptical coordinates (lenstronomy transform_e1e2_product_average)
        inv_norm = jax.lax.rsqrt(jnp.maximum(jnp.abs(1.0 - e1 * e1 - e2 * e2), 1e-6))
        r_s = jnp.maximum(self.R_sersic, _R_SMOOTHING)
        a, b, c, cx, cy, inv_n, b_n, amp = broadcast_scalars(
            x.shape,
            (1.0 - e1) * inv_norm,
            e2 * inv_norm,
            (1.0 + e1) * inv_norm,
            self.center_x,
            self.center_y,
            1.0 / self.n_sersic,
            sersic_b_n(self.n_sersic),
            self.amp,
        )
        dx, dy = x - cx, y - cy
        xe = a * dx - b * dy
        ye = -b * dx + c * dy
        r = jnp.sqrt(jnp.maximum(xe * xe + ye * ye, _R_SMOOTHING**2))
        return amp * jnp.exp(-b_n * (jnp.exp(jnp.log(r / r_s) * inv_n) - 1.0))
