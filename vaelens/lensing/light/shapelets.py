"""Cartesian shapelets (Refregier 2003) in lenstronomy's ``SHAPELETS`` order and normalisation."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._pytree import pytree_dataclass
from .._validation import check_finite, check_positive
from ._base import LightProfile

__all__ = ["Shapelets", "shapelet_design_matrix", "shapelet_indices", "num_shapelet_coeffs"]


def num_shapelet_coeffs(n_max: int) -> int:
    """Number of basis functions with ``n1 + n2 <= n_max``: ``(n_max + 1)(n_max + 2) / 2``."""
    return (n_max + 1) * (n_max + 2) // 2


def n_max_from_num_coeffs(num: int) -> int:
    """Inverse of :func:`num_shapelet_coeffs`; ``ValueError`` if ``num`` is not triangular."""
    n_max = int(round((math.sqrt(8 * num + 1) - 3) / 2))
    if n_max < 0 or num_shapelet_coeffs(n_max) != num:
        raise ValueError(f"number of shapelet coefficients must be (n_max+1)(n_max+2)/2, got {num}")
    return n_max


def shapelet_indices(n_max: int) -> np.ndarray:
    """``(n1, n2)`` of each coefficient, shape ``(num_coeffs, 2)``, in lenstronomy order.

    The order is ``(0,0), (1,0), (0,1), (2,0), (1,1), (0,2), ...``: increasing total order
    ``n = n1 + n2`` and, within an order, decreasing ``n1``.
    """
    return np.array([(n - k, k) for n in range(n_max + 1) for k in range(n + 1)], dtype=int)


def hermite_functions(u, n_max: int):
    """Orthonormal Hermite functions :math:`\\phi_n(u)`, ``n = 0..n_max``, stacked on axis 0.

    .. math:: \\phi_n(u) = [2^n \\sqrt{\\pi}\\, n!]^{-1/2} H_n(u)\\, e^{-u^2/2}

    evaluated with the stable three-term recurrence
    :math:`\\phi_{n+1} = \\sqrt{2/(n+1)}\\, u\\, \\phi_n - \\sqrt{n/(n+1)}\\, \\phi_{n-1}`.
    """
    phi0 = jnp.pi**-0.25 * jnp.exp(-0.5 * u * u)
    out = [phi0]
    if n_max >= 1:
        out.append(math.sqrt(2.0) * u * phi0)
    for n in range(1, n_max):
        out.append(math.sqrt(2.0 / (n + 1)) * u * out[n] - math.sqrt(n / (n + 1)) * out[n - 1])
    return jnp.stack(out, axis=0)


def shapelet_design_matrix(x, y, n_max: int, beta, center_x=0.0, center_y=0.0):
    """Cartesian shapelet basis evaluated at ``(x, y)``.

    Parameters
    ----------
    x, y : array_like
        Coordinates in arcsec (same shape ``S``).
    n_max : int
        Maximal order (static), ``n1 + n2 <= n_max``.
    beta : float
        Shapelet scale in arcsec (> 0).
    center_x, center_y : float
        Centre in arcsec.

    Returns
    -------
    jax.Array
        Shape ``S + (num_coeffs,)``; column ``k`` is
        :math:`\\phi_{n_1}((x-x_c)/\\beta)\\,\\phi_{n_2}((y-y_c)/\\beta)` for the ``k``-th
        ``(n1, n2)`` of :func:`shapelet_indices` (lenstronomy ``SHAPELETS``, no ``1/beta``
        prefactor). ``image = design @ coeffs``.

    References
    ----------
    Refregier (2003), MNRAS 338, 35; Birrer et al. (2015), ApJ 813, 102.
    """
    n_max = int(n_max)
    if n_max < 0:
        raise ValueError(f"n_max must be >= 0, got {n_max}")
    check_positive("beta", beta)
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    hx = hermite_functions((x - center_x) / beta, n_max)
    hy = hermite_functions((y - center_y) / beta, n_max)
    idx = shapelet_indices(n_max)
    basis = hx[idx[:, 0]] * hy[idx[:, 1]]
    return jnp.moveaxis(basis, 0, -1)


@pytree_dataclass
class Shapelets(LightProfile):
    """A linear combination of Cartesian shapelets (lenstronomy ``SHAPELETS``).

    Parameters
    ----------
    coeffs : array_like, shape (num_coeffs,)
        Amplitudes in lenstronomy order; ``n_max`` follows from
        ``num_coeffs = (n_max+1)(n_max+2)/2``.
    beta : float
        Shapelet scale in arcsec (> 0).
    center_x, center_y : float
        Centre in arcsec.
    """

    coeffs: jnp.ndarray
    beta: float
    center_x: float = 0.0
    center_y: float = 0.0

    def __post_init__(self):
        if jnp.ndim(self.coeffs) != 1:
            raise ValueError(f"coeffs must be 1-D, got shape {jnp.shape(self.coeffs)}")
        n_max_from_num_coeffs(jnp.shape(self.coeffs)[0])
        check_finite("coeffs", self.coeffs)
        check_positive("beta", self.beta)
        check_finite("center_x", self.center_x)
        check_finite("center_y", self.center_y)

    @property
    def n_max(self) -> int:
        """Maximal shapelet order."""
        return n_max_from_num_coeffs(jnp.shape(self.coeffs)[0])

    def surface_brightness(self, x, y):
        design = shapelet_design_matrix(x, y, self.n_max, self.beta, self.center_x, self.center_y)
        return design @ self.coeffs
