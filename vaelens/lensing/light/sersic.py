"""Elliptical Sersic profile (lenstronomy ``SERSIC_ELLIPSE`` geometry, exact half-light radius).

The profile has lenstronomy's elliptical coordinates and amplitude convention, but its ``b_n``
is accurate (:func:`sersic_b_n`), so ``R_sersic`` is the half-light radius. lenstronomy uses the
linear approximation ``b_n = 1.9992 n - 0.3271`` (Capaccioli 1989), whose ``R_sersic`` is not
exactly the half-light radius; :func:`to_lenstronomy_sersic` converts parameters so that
lenstronomy draws the same image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from .._pytree import pytree_dataclass
from .._validation import check_ellipticity, check_finite, check_positive
from .._xla import broadcast_scalars
from ._base import LightProfile

__all__ = ["Sersic", "lenstronomy_b_n", "sersic_b_n", "sersic_total_flux", "to_lenstronomy_sersic"]

# lenstronomy floors radii at this value (SersicUtil._smoothing) for numerical stability.
_R_SMOOTHING = 1e-4
# Below this index the Ciotti & Bertin series loses accuracy; MacArthur et al. take over.
_N_SWITCH = 0.36


def sersic_b_n(n_sersic):
    """Sersic :math:`b_n`: the root of :math:`\\gamma(2n, b_n) = \\Gamma(2n)/2`.

    With this :math:`b_n` the radius ``R_sersic`` encloses half of the total light. For
    ``n >= 0.36`` the asymptotic series of Ciotti & Bertin (1999, eq. 18),

    .. math::
        b_n = 2n - \\frac13 + \\frac{4}{405 n} + \\frac{46}{25515 n^2}
              + \\frac{131}{1148175 n^3} - \\frac{2194697}{30690717750 n^4},

    and below it the polynomial fit of MacArthur, Courteau & Holtzman (2003, eq. A2),
    :math:`b_n = 0.01945 - 0.8902 n + 10.95 n^2 - 19.67 n^3 + 13.43 n^4`. Over
    ``0.3 <= n <= 8`` the error against the exact root is below ``3e-4`` absolute and ``6e-4``
    relative (largest near ``n = 0.36``; below ``5e-5`` for ``n >= 1``). Pure JAX, smooth
    within each branch, so it can be differentiated.

    Parameters
    ----------
    n_sersic : float or array
        Sersic index (> 0).

    References
    ----------
    Ciotti, L. & Bertin, G. 1999, A&A 352, 447; MacArthur, L. A., Courteau, S. & Holtzman,
    J. A. 2003, ApJ 582, 689.
    """
    n = jnp.asarray(n_sersic)
    m = jnp.maximum(n, _N_SWITCH)  # keeps the unused branch (and its gradient) finite
    inv = 1.0 / m
    series = (
        2.0 * m
        - 1.0 / 3.0
        + inv
        * (
            4.0 / 405.0
            + inv * (46.0 / 25515.0 + inv * (131.0 / 1148175.0 - inv * (2194697.0 / 30690717750.0)))
        )
    )
    fit = 0.01945 + n * (-0.8902 + n * (10.95 + n * (-19.67 + n * 13.43)))
    return jnp.where(n >= _N_SWITCH, series, jnp.maximum(fit, 1e-5))


def lenstronomy_b_n(n_sersic):
    """lenstronomy's :math:`b_n \\approx 1.9992 n - 0.3271` (Capaccioli 1989), floored at 1e-5.

    Only for converting parameters (:func:`to_lenstronomy_sersic`); the profiles of this package
    use :func:`sersic_b_n`.
    """
    return jnp.maximum(1.9992 * jnp.asarray(n_sersic) - 0.3271, 1e-5)


def to_lenstronomy_sersic(amp, R_sersic, n_sersic):
    """lenstronomy ``SERSIC`` / ``SERSIC_ELLIPSE`` parameters that draw the same profile.

    A profile ``amp exp(-b' [(R/R_sersic)^(1/n) - 1])`` with the accurate ``b' =``
    :func:`sersic_b_n` equals lenstronomy's ``amp_l exp(-b [(R/R_l)^(1/n) - 1])`` with
    ``b =`` :func:`lenstronomy_b_n` when

    .. math::  R_l = R_{\\rm sersic} (b / b')^n, \\qquad A_l = A\\, e^{b' - b}.

    Ellipticity and centre are unchanged.

    Returns
    -------
    amp, R_sersic : array
        lenstronomy's ``amp`` and ``R_sersic`` (arcsec).
    """
    n = jnp.asarray(n_sersic)
    b_ours = sersic_b_n(n)
    b_lt = lenstronomy_b_n(n)
    return amp * jnp.exp(b_ours - b_lt), R_sersic * (b_lt / b_ours) ** n


def sersic_total_flux(amp, R_sersic, n_sersic, q=1.0):
    """Total flux of a Sersic profile of surface brightness ``amp`` at ``R_sersic``.

    .. math::  L = 2 \\pi q\\, n\\, A\\, R_{\\rm sersic}^2\\, e^{b_n} b_n^{-2n} \\Gamma(2n)

    (Ciotti & Bertin 1999, eq. 2 with :math:`b_n` of :func:`sersic_b_n`). ``q`` is the axis
    ratio of a profile whose ``R`` is measured along the major axis; for :class:`Sersic`, whose
    radius is the product average ``sqrt(q x'^2 + y'^2 / q)`` (area-preserving), the flux does
    not depend on the ellipticity: leave ``q = 1``.

    Parameters
    ----------
    amp : float or array
        Surface brightness at ``R_sersic`` (flux per arcsec^2).
    R_sersic : float or array
        Half-light radius, arcsec.
    n_sersic : float or array
        Sersic index.
    q : float or array
        Axis ratio (see above).

    Returns
    -------
    array
        Total flux (flux units of ``amp`` times arcsec^2).
    """
    n = jnp.asarray(n_sersic)
    b = sersic_b_n(n)
    log_l = b - 2.0 * n * jnp.log(b) + gammaln(2.0 * n)
    return 2.0 * jnp.pi * q * n * amp * jnp.asarray(R_sersic) ** 2 * jnp.exp(log_l)


@pytree_dataclass
class Sersic(LightProfile):
    """Elliptical Sersic profile (lenstronomy ``SERSIC_ELLIPSE`` geometry, accurate ``b_n``).

    .. math::
        I(x, y) = A \\exp\\left\\{-b_n\\left[(R/R_{\\rm S})^{1/n} - 1\\right]\\right\\},
        \\qquad R = \\sqrt{q x'^2 + y'^2/q},

    i.e. ``amp`` is the surface brightness at the (product-averaged) Sersic radius, with
    :math:`b_n` from :func:`sersic_b_n`, so ``R_sersic`` is the exact half-light radius (of the
    circularised profile). lenstronomy's ``SERSIC_ELLIPSE`` uses an approximate :math:`b_n`;
    :func:`to_lenstronomy_sersic` gives its equivalent ``amp`` and ``R_sersic``. Radii are
    floored at 1e-4 arcsec as in lenstronomy; the total flux is :func:`sersic_total_flux`.

    Parameters
    ----------
    amp : float
        Surface brightness at ``R_sersic`` (flux per arcsec^2).
    R_sersic : float
        Half-light radius in arcsec (> 0), exact.
    n_sersic : float
        Sersic index (> 0).
    e1, e2 : float
        Ellipticity (lenstronomy convention), ``|e| < 1``.
    center_x, center_y : float
        Centre in arcsec.

    References
    ----------
    Sersic (1963); Ciotti & Bertin (1999) and MacArthur et al. (2003) for :math:`b_n`;
    lenstronomy ``SersicElliptic`` for the elliptical coordinates.
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
