"""The Laplace approximation at a MAP point: Hessian, covariance, and its regularisation.

The Laplace approximation of a posterior over unconstrained parameters ``x`` is the Gaussian
``N(x*, H^-1)`` with ``H`` the Hessian of the negative log density ``U`` at its mode ``x*``
(e.g. MacKay 2003, ch. 27). :func:`laplace_covariance` computes ``H^-1`` (central differences
of the autodiff gradient by default, :func:`hessian_fd`) with a saddle-free repair of
non-positive curvature; :func:`cap_covariance` caps the variances that are wider than the
prior, for use as a sampler metric.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

import jax
import numpy as np

from vaelens.infer._rows import row_loop

log = logging.getLogger("vaelens")

__all__ = ["hessian_fd", "laplace_covariance", "cap_covariance", "fd_points", "fd_jacobian"]


def fd_points(x, steps) -> np.ndarray:
    """The ``2 dim`` points ``x + h_i e_i`` then ``x - h_i e_i`` of central differences.

    Computed in the dtype of ``x`` (the steps are cast to it).
    """
    x = np.asarray(x)
    eye = np.eye(x.shape[0], dtype=x.dtype) * np.asarray(steps).astype(x.dtype)[:, None]
    return np.concatenate([x[None] + eye, x[None] - eye])


def fd_jacobian(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Jacobian ``(k, dim)`` by central differences from the :func:`fd_points` and the
    ``(2 dim, k)`` values of a function there (accurate to ``O(h^2)``).

    The divisor is the step as represented in the points' dtype, not the requested one.
    """
    n = points.shape[1]
    pts = np.asarray(points, np.float64)
    h = np.diagonal(pts[:n] - pts[n:])
    vals = np.asarray(values, np.float64)
    return ((vals[:n] - vals[n:]) / h[:, None]).T


def hessian_fd(
    potential: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    steps: jax.Array,
    devices: int = 1,
    gradients: Callable[[jax.Array], np.ndarray] | None = None,
) -> np.ndarray:
    """Hessian by central differences of the autodiff gradient (one compiled loop).

    Column ``i`` is ``(g(x + h_i e_i) - g(x - h_i e_i)) / (2 h_i)``, exact for quadratics and
    accurate to ``O(h^2)`` otherwise; the result is symmetrised. Only the gradient is compiled
    (cheaper to compile than forward-over-reverse autodiff). The ``2 dim`` gradients are split
    over up to ``devices`` local devices, or computed by ``gradients(points) -> (m, dim)``
    when given (e.g. by an already compiled program, to compile nothing new).
    """
    n = x.shape[0]
    steps = np.asarray(steps).astype(np.asarray(x).dtype)
    pts = fd_points(x, steps)
    if gradients is None:
        call, pack, unpack, _ = row_loop(jax.grad(potential), pts.shape[0], devices)
        g = np.asarray(unpack(call(*pack(pts)), 2 * n), np.float64)
    else:
        g = np.asarray(gradients(pts), np.float64)
    h = (g[:n] - g[n:]) / (2.0 * np.asarray(steps, dtype=np.float64)[:, None])
    return 0.5 * (h + h.T)


def laplace_covariance(
    potential: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    *,
    method: Literal["fd", "autodiff"] = "fd",
    steps: jax.Array | None = None,
    devices: int = 1,
    gradients: Callable[[jax.Array], np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """Inverse Hessian of ``potential`` at ``x`` and the number of non-positive eigenvalues.

    ``method="autodiff"`` uses ``jax.hessian`` (forward over reverse); ``"fd"`` central
    differences of the gradient (:func:`hessian_fd`, split over up to ``devices`` local
    devices, or by ``gradients``) with ``steps`` (default ``1e-4 (1 + |x|)``). Non-positive (or
    tiny) eigenvalues, found away from a strict minimum, are replaced by their magnitude, at
    least ``1e-12`` of the largest (saddle-free Newton, Dauphin et al. 2014), so that the
    covariance stays usable; their count is returned for a warning.
    """
    if method == "autodiff":
        h = np.asarray(jax.hessian(potential)(x), dtype=np.float64)
        h = 0.5 * (h + h.T)
    elif method == "fd":
        if steps is None:
            steps = 1e-4 * (1.0 + np.abs(np.asarray(x)))
        h = hessian_fd(potential, x, steps, devices=devices, gradients=gradients)
    else:
        raise ValueError(f"method must be 'fd' or 'autodiff', got {method!r}")
    w, v = np.linalg.eigh(h)
    floor = max(float(np.max(np.abs(w))) * 1e-12, 1e-300)
    bad = int(np.sum(w <= floor))
    # saddle-free repair: a negative curvature is replaced by its magnitude, a vanishing one
    # by the floor, so no direction gets an absurdly large variance
    w = np.maximum(np.abs(w), floor)
    return (v / w) @ v.T, bad


def cap_covariance(result, max_variance: float = 1.0):
    """The MAP result with its unconstrained Laplace covariance capped at ``max_variance``.

    Directions where the Hessian at the MAP is flat or negative (floored eigenvalues, e.g. when
    the optimiser stopped near a saddle) get huge Laplace variances, which would throw the
    jittered chain starts and the initial mass matrix of NUTS far outside the prior. In the
    unconstrained space every prior of the lens model has a standard deviation of at most ~1
    (``z`` is N(0, 1)), so eigenvalues are capped at 1 by default; well-constrained directions
    are untouched. A non-finite covariance (``laplace=False``) is returned as it is; the
    covariance of the summary parameters (``cov``) is not changed.

    Parameters
    ----------
    result : vaelens.infer.MAPResult
        A MAP fit with its Laplace covariance.
    max_variance
        Largest eigenvalue kept (unconstrained units squared).

    Returns
    -------
    MAPResult
        A copy with ``cov_unconstrained`` replaced. The ``vaelens`` logger says how many
        directions were capped.
    """
    cov = np.asarray(result.cov_unconstrained, dtype=np.float64)
    if not np.all(np.isfinite(cov)):
        return result
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    n_capped = int(np.sum(w > max_variance))
    if n_capped:
        log.info(
            "Laplace covariance: %d direction(s) wider than the prior capped at variance %g",
            n_capped, max_variance,
        )
    capped = (v * np.clip(w, 0.0, max_variance)) @ v.T
    return dataclasses.replace(result, cov_unconstrained=capped)
