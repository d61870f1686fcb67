"""Elliptical power-law (EPL) mass profile via the Tessore & Metcalf (2015) series.

Conventions are lenstronomy's ``EPL``: with :math:`q = (1-|e|)/(1+|e|)`,
:math:`\\phi = \\arg(e_1 + i e_2)/2`, and ``(x', y')`` the coordinates rotated onto the major
axis,

.. math::
    \\kappa = \\frac{3-\\gamma}{2}
    \\left(\\frac{\\theta_E}{\\sqrt{q x'^2 + y'^2/q}}\\right)^{\\gamma-1} .

Implementation
--------------
Tessore & Metcalf (2015, A&A 580, A79, eq. 22) give, in the rotated frame with
:math:`Z = q x' + i y'`, :math:`R = |Z|`, :math:`b = \\theta_E\\sqrt{q}`, :math:`t = \\gamma-1`
and :math:`f = (1-q)/(1+q)`,

.. math::
    \\alpha' = \\frac{2 b}{1+q}\\left(\\frac{b}{R}\\right)^{t-1} \\frac{Z}{R}\\,
    {}_2F_1\\!\\left(1, \\tfrac{t}{2}; 2-\\tfrac{t}{2}; -f \\frac{Z}{\\bar Z}\\right).

Because :math:`f = |e|` in lenstronomy's convention, rotating back gives an expression that is a
smooth function of the complex ellipticity :math:`e = e_1 + i e_2` and of :math:`w = x + i y`
(relative to the centre) alone. With :math:`W = w - e\\,\\bar w`,

.. math::
    \\alpha = \\left(\\frac{\\theta_E\\sqrt{1-|e|^2}}{|W|}\\right)^{t} W\\;
    {}_2F_1\\!\\left(1, \\tfrac{t}{2}; 2-\\tfrac{t}{2}; -\\bar e\\, \\frac{W}{\\bar W}\\right),
    \\qquad
    \\kappa = \\frac{2-t}{2}\\left(\\frac{\\theta_E\\sqrt{1-|e|^2}}{|W|}\\right)^{t},

so nothing divides by :math:`|e|` and round lenses (``e = 0``) are exact and differentiable.
The potential is :math:`\\psi = (x\\alpha_x + y\\alpha_y)/(2-t)` (their eq. 15) and the shear
is :math:`\\gamma_1 + i\\gamma_2 = [(1-t)\\,\\alpha w - \\kappa w^2]/|w|^2` (eq. 17 with the
corrigendum). The hypergeometric function is summed as a power series (ratio of consecutive
terms :math:`\\to |e|`) by Horner's rule with a geometric estimate of the remainder. At exactly
the centre the deflection and potential are zero (as in lenstronomy) and gradients stay finite
through double-``where`` guards.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .._pytree import pytree_dataclass
from .._validation import check_ellipticity, check_finite, check_positive, check_range
from .._xla import broadcast_scalars
from ._base import R_FLOOR, MassProfile

__all__ = [
    "EPL",
    "GAMMA_RANGE",
    "hyp2f1_series",
    "epl_deflection",
    "epl_deflection_xy",
    "epl_hessian",
]

GAMMA_RANGE = (1.2, 2.8)

# Number of explicit series terms (the remainder is added as a geometric tail). Worst-case
# relative truncation errors of 2F1 over gamma in [1.2, 2.8] (measured against scipy):
# 32 terms: 2e-14 for |e| <= 0.5, 5e-9 for |e| = 0.7, 1e-6 for |e| = 0.8 (float64);
# 12 terms: 1e-7 for |e| <= 0.5, 4e-5 for |e| = 0.7 (float32).
N_TERMS_F64 = 32
N_TERMS_F32 = 12


def _default_terms(dtype) -> int:
    return N_TERMS_F32 if jnp.dtype(dtype).itemsize <= 4 else N_TERMS_F64


def _series_coefficients(t, n_terms: int, dtype):
    """``c_k`` (k = 0..n_terms), ``d c_k / d t`` and the tail ratio ``rho = c_{N+1}/c_N``."""
    t = jnp.asarray(t, dtype=dtype)
    k = jnp.arange(1, n_terms + 2, dtype=dtype)
    num = k - 1.0 + 0.5 * t
    den = k + 1.0 - 0.5 * t
    ratios = num / den
    coeffs = jnp.concatenate([jnp.ones((1,), dtype), jnp.cumprod(ratios[:-1])])
    dlog = jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum(0.5 / num + 0.5 / den)[:-1]])
    return coeffs, coeffs * dlog, ratios[n_terms]


def _cmul(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br


def _cdiv(ar, ai, br, bi):
    d = br * br + bi * bi
    return (ar * br + ai * bi) / d, (ai * br - ar * bi) / d


def _horner(coeffs, rho, zr, zi, n_terms):
    """``sum_{k<N} c_k z^k + c_N z^N / (1 - rho z)`` by Horner's rule (real arithmetic).

    A ``fori_loop`` (rather than an unrolled Python loop) keeps the compiled graph small, which
    matters for compile time of higher derivatives.
    """
    ar, ai = _cdiv(coeffs[n_terms], 0.0, 1.0 - rho * zr, -rho * zi)

    def step(i, acc):
        ar, ai = _cmul(zr, zi, acc[0], acc[1])
        return ar + coeffs[n_terms - 1 - i], ai

    return jax.lax.fori_loop(0, n_terms, step, (ar, ai), unroll=4)


def _scalar(t):
    """The value of ``t``: a scalar, or an array filled with one value (a broadcast scalar)."""
    return t.reshape(-1)[0] if jnp.ndim(t) else t


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _hyp2f1_real(zr, zi, t, n_terms):
    """Series of :func:`hyp2f1_series` on real and imaginary parts.

    ``t`` is a scalar or that scalar broadcast to the shape of ``zr`` (then the ``t`` tangent
    is per pixel, and reverse mode adds its cotangent to the other uses of the broadcast
    ``t`` before the one reduction over the pixels).
    """
    coeffs, _, rho = _series_coefficients(_scalar(t), n_terms, zr.dtype)
    return _horner(coeffs, rho, zr, zi, n_terms)


@_hyp2f1_real.defjvp
def _hyp2f1_real_jvp(n_terms, primals, tangents):
    zr, zi, t = primals
    dzr, dzi, dt = tangents
    dtype = zr.dtype
    t = _scalar(t)
    coeffs, dcoeffs, rho = _series_coefficients(t, n_terms, dtype)
    fr, fi = _horner(coeffs, rho, zr, zi, n_terms)
    # d/dt: the same series with coefficients dc_k/dt (tail ratio held fixed)
    ftr, fti = _horner(dcoeffs, rho, zr, zi, n_terms)
    # d/dz from the contiguous relation (1 - z) F' = b F - (c - 1)(F - 1)/z, with
    # b = t/2 and c = 2 - t/2; a Taylor series replaces it where |z| is small.
    b = 0.5 * t
    cm1 = 1.0 - 0.5 * t
    z2 = zr * zr + zi * zi
    small = z2 < (1e-4 if jnp.dtype(dtype).itemsize <= 4 else 1e-6)
    zr_s = jnp.where(small, 0.5, zr)
    zi_s = jnp.where(small, 0.0, zi)
    qr, qi = _cdiv(fr - 1.0, fi, zr_s, zi_s)
    nr, ni = b * fr - cm1 * qr, b * fi - cm1 * qi
    gr, gi = _cdiv(nr, ni, 1.0 - zr_s, -zi_s)
    # Taylor: F' = c1 + 2 c2 z + 3 c3 z^2 + 4 c4 z^3
    tr, ti = 4.0 * coeffs[4] + 0.0 * zr, 0.0 * zi
    for k in (3, 2, 1):
        tr, ti = _cmul(zr, zi, tr, ti)
        tr = tr + k * coeffs[k]
    gr = jnp.where(small, tr, gr)
    gi = jnp.where(small, ti, gi)
    dfr, dfi = _cmul(gr, gi, dzr, dzi)
    dfr = dfr + ftr * dt
    dfi = dfi + fti * dt
    return (fr, fi), (dfr, dfi)


def hyp2f1_series(z, t, n_terms: int | None = None):
    """:math:`{}_2F_1(1, t/2; 2 - t/2; z)` for complex ``|z| < 1`` by its power series.

    Parameters
    ----------
    z : complex array
        Argument, ``|z| < 1``.
    t : float
        ``gamma - 1`` of the power law (0 < t < 2).
    n_terms : int, optional
        Number of explicit terms (static); defaults by precision of ``z``.

    Notes
    -----
    Coefficients follow :math:`c_0 = 1`, :math:`c_n = c_{n-1}(n-1+t/2)/(n+1-t/2)`; the
    remainder after ``n_terms`` terms is approximated by
    :math:`c_N z^N / (1 - \\rho_N z)` with :math:`\\rho_N = c_{N+1}/c_N`
    (Tessore & Metcalf 2015, A&A 580, A79, eqs. 23-29). Derivatives are supplied by a custom
    JVP: :math:`\\partial_z F` from the contiguous relation
    :math:`(1-z)F' = bF - (c-1)(F-1)/z` (DLMF 15.5.E21-type identity for ``a = 1``) and
    :math:`\\partial_t F` from the series with differentiated coefficients, so reverse mode does
    not store the Horner recursion.
    """
    z = jnp.asarray(z)
    rdtype = jnp.real(z).dtype
    if n_terms is None:
        n_terms = _default_terms(rdtype)
    fr, fi = _hyp2f1_real(jnp.real(z), jnp.imag(z), jnp.asarray(t, rdtype), int(n_terms))
    return fr + 1j * fi


def _elliptical_frame(dx, dy, e1, e2):
    """``W = w - e conj(w)`` as ``(Re W, Im W)``, mask ``|W| > 0`` and safe ``|W|^2``."""
    wr = dx - (e1 * dx + e2 * dy)
    wi = dy - (e2 * dx - e1 * dy)
    abs2 = wr * wr + wi * wi
    nonzero = abs2 > 0
    abs2_safe = jnp.where(nonzero, abs2, 1.0)
    return wr, wi, nonzero, abs2_safe


def _b_eff(theta_E, e1, e2):
    """``theta_E sqrt(1 - |e|^2)`` (a scalar: pass the unbroadcast parameters)."""
    return theta_E * jnp.sqrt(1.0 - (e1 * e1 + e2 * e2))


def epl_deflection(dx, dy, theta_E, t, e1, e2, hyp=None):
    """Complex EPL deflection ``alpha_x + i alpha_y`` relative to the centre.

    ``hyp(z, t)`` evaluates :math:`{}_2F_1(1, t/2; 2-t/2; z)` for complex ``z`` (default:
    the series of :func:`hyp2f1_series`). See :func:`epl_deflection_xy`, which computes it.
    """
    ax, ay = epl_deflection_xy(dx, dy, theta_E, t, e1, e2, hyp)
    return ax + 1j * ay


def epl_deflection_xy(dx, dy, theta_E, t, e1, e2, hyp=None):
    """EPL deflection ``(alpha_x, alpha_y)`` relative to the centre, in real arithmetic.

    The expressions of the module docstring with every complex product written out: XLA:CPU
    vectorises real float loops but not complex ones (about 1.5x faster for value and
    gradient than complex arrays). ``hyp(z, t)``, if given, evaluates
    :math:`{}_2F_1(1, t/2; 2-t/2; z)` for complex ``z`` (e.g. the SIE's closed form);
    by default the series of :func:`hyp2f1_series` is summed on the real and imaginary parts.
    """
    dtype = jnp.result_type(dx, dy)
    dx, dy = jnp.broadcast_arrays(dx, dy)
    log_b = jnp.log(_b_eff(theta_E, e1, e2))
    # each scalar broadcast once: one reduction per parameter in reverse mode
    e1, e2, t_b, log_b = broadcast_scalars(dx.shape, e1, e2, t, log_b)
    wr, wi, nonzero, abs2_safe = _elliptical_frame(dx, dy, e1, e2)
    inv = 1.0 / abs2_safe
    # z = -conj(e) W^2 / |W|^2
    a, b = wr * wr - wi * wi, 2.0 * wr * wi
    zr = -(e1 * a + e2 * b) * inv
    zi = -(e1 * b - e2 * a) * inv
    # (b_eff / |W|)^t = exp(t * (log b_eff - log|W|^2 / 2))
    scale = jnp.exp(t_b * (log_b - 0.5 * jnp.log(abs2_safe)))
    if hyp is None:
        fr, fi = _hyp2f1_real(zr, zi, t_b.astype(dtype), _default_terms(dtype))
    else:
        f = hyp(zr + 1j * zi, t)
        fr, fi = jnp.real(f), jnp.imag(f)
    ax = jnp.where(nonzero, scale * (wr * fr - wi * fi), 0.0)
    ay = jnp.where(nonzero, scale * (wr * fi + wi * fr), 0.0)
    return ax, ay


def epl_convergence(dx, dy, theta_E, t, e1, e2):
    """EPL convergence with lenstronomy's 1e-8 arcsec floor on the elliptical radius."""
    _, _, nonzero, abs2_safe = _elliptical_frame(dx, dy, e1, e2)
    b_eff = _b_eff(theta_E, e1, e2)
    # lenstronomy's R = |Z| = |W| / (1 + |e|); floor it like lenstronomy.
    e_sq = e1 * e1 + e2 * e2
    e_nz = e_sq > 0
    e_abs = jnp.where(e_nz, jnp.sqrt(jnp.where(e_nz, e_sq, 1.0)), 0.0)
    abs_w = jnp.where(nonzero, jnp.sqrt(abs2_safe), 0.0)
    r_ell = jnp.maximum(abs_w / (1.0 + e_abs), R_FLOOR)
    return (1.0 - 0.5 * t) * jnp.exp(t * (jnp.log(b_eff / (1.0 + e_abs)) - jnp.log(r_ell)))


def epl_hessian(dx, dy, theta_E, t, e1, e2, alpha):
    """Hessian ``(f_xx, f_xy, f_yx, f_yy)`` from the deflection ``alpha`` (complex).

    Tessore & Metcalf (2015), eq. 17 (corrected): :math:`\\gamma = [(1-t)\\alpha w -
    \\kappa w^2]/|w|^2`. At the centre the shear is set to zero (as in lenstronomy).
    """
    kappa = epl_convergence(dx, dy, theta_E, t, e1, e2)
    w = dx + 1j * dy
    r2 = dx * dx + dy * dy
    nz = r2 > 0
    r2s = jnp.where(nz, r2, 1.0)
    shear = jnp.where(nz, ((1.0 - t) * alpha * w - kappa * w * w) / r2s, 0.0)
    g1, g2 = jnp.real(shear), jnp.imag(shear)
    return kappa + g1, g2, g2, kappa - g1


@pytree_dataclass
class EPL(MassProfile):
    """Elliptical power-law mass profile, lenstronomy ``EPL``.

    Parameters
    ----------
    theta_E : float
        (Circularised, product-averaged) Einstein radius in arcsec (> 0).
    gamma : float
        Logarithmic slope of the 3D density, in [1.2, 2.8]; 2 is isothermal.
    e1, e2 : float
        Ellipticity components (lenstronomy convention), ``|e| < 1``.
    center_x, center_y : float
        Centre in arcsec.

    References
    ----------
    Tessore, N. & Metcalf, R. B. (2015), A&A 580, A79, arXiv:1507.01819 (and corrigendum).
    Birrer, S. & Amara, A. (2018), lenstronomy, Phys. Dark Univ. 22, 189.
    """

    theta_E: float
    gamma: float = 2.0
    e1: float = 0.0
    e2: float = 0.0
    center_x: float = 0.0
    center_y: float = 0.0

    def __post_init__(self):
        check_positive("theta_E", self.theta_E)
        check_range("gamma", self.gamma, *GAMMA_RANGE)
        check_ellipticity(self.e1, self.e2)
        check_finite("center_x", self.center_x)
        check_finite("center_y", self.center_y)

    def _alpha_xy(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        args = (self.theta_E, self.gamma - 1.0, self.e1, self.e2)
        return dx, dy, epl_deflection_xy(dx, dy, *args)

    def deflection(self, x, y):
        _, _, (ax, ay) = self._alpha_xy(x, y)
        return ax, ay

    def potential(self, x, y):
        dx, dy, (ax, ay) = self._alpha_xy(x, y)
        return (dx * ax + dy * ay) / (3.0 - self.gamma)

    def convergence(self, x, y):
        dx, dy = x - self.center_x, y - self.center_y
        return epl_convergence(dx, dy, self.theta_E, self.gamma - 1.0, self.e1, self.e2)

    def hessian(self, x, y):
        dx, dy, (ax, ay) = self._alpha_xy(x, y)
        a = ax + 1j * ay
        return epl_hessian(dx, dy, self.theta_E, self.gamma - 1.0, self.e1, self.e2, a)
