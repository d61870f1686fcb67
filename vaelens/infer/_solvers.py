"""The optimisers of :mod:`vaelens.optim` as the row solvers of the multi-start MAP.

Both solvers have one call signature, ``(x0, limit, mask, tol) -> (x, f, converged, nit,
diag(H^-1), grad, aux)``, so one compiled multi-start program runs either, and the same
program serves several iteration limits and masks of fixed coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from vaelens.optim import bfgs_minimize, lbfgs_minimize

__all__ = ["bfgs_solver", "lbfgs_solver"]


def _masked(fun: Callable, mask: jax.Array | None) -> Callable:
    """``fun`` with its gradient zeroed where ``mask`` is False (those coordinates stay put)."""
    if mask is None:
        return fun

    def masked(x):
        return fun(jnp.where(mask, x, jax.lax.stop_gradient(x)))

    return masked


def bfgs_solver(
    fun: Callable[[jax.Array], Any],
    max_iter: int,
    gtol: float,
    dtol: float = 0.0,
    has_aux: bool = False,
) -> Callable[..., tuple[jax.Array, ...]]:
    """BFGS (:func:`vaelens.optim.bfgs_minimize`) as
    ``(x0, limit=max_iter, mask=None, tol=dtol) -> (x, f, converged, nit, diag(H^-1), grad,
    aux)``.

    ``limit`` may be a traced integer, so one compiled solver serves any iteration limit;
    with ``limit=1`` it only evaluates ``fun`` and its gradient at ``x0`` (the first
    iteration is a zero step), which :func:`vaelens.infer.map_fit` uses for the Laplace
    Hessian, and with ``limit=0`` it returns ``x0`` untouched. ``mask`` (boolean, like
    ``x0``), if given, zeroes the gradient of the coordinates where it is False: BFGS then
    never moves them (its inverse Hessian keeps an identity block there), so the same
    compiled solver also fits with some parameters held fixed. ``fun`` returns
    ``(value, aux)`` if ``has_aux`` (``aux`` at the final point is returned), else only the
    value (``aux`` is ``None``). ``tol``, the Newton-decrement tolerance ``dtol``, may differ
    per call (a traced scalar, e.g. a looser tolerance for a first, exploratory stage).
    """

    def solve(x0, limit=max_iter, mask=None, tol=dtol):
        f = fun if has_aux else (lambda x: (fun(x), None))
        st = bfgs_minimize(_masked(f, mask), x0, max_iter=limit, gtol=gtol, dtol=tol,
                           has_aux=True)
        hdiag = jnp.diag(st.inv_hessian)
        return st.x, st.value, st.converged, st.iteration, hdiag, st.grad, st.aux

    return solve


def lbfgs_solver(
    fun: Callable[[jax.Array], jax.Array], max_iter: int, gtol: float, memory_size: int = 10
) -> Callable[..., tuple[jax.Array, ...]]:
    """L-BFGS (:func:`vaelens.optim.lbfgs_minimize`) with the call signature and outputs of
    :func:`bfgs_solver` (``diag(H^-1)`` is NaN, ``aux`` is ``None``)."""

    def solve(x0, limit=max_iter, mask=None, tol=None):
        del tol  # the L-BFGS stops on the gradient tolerance alone
        r = lbfgs_minimize(_masked(fun, mask), x0, max_iter=limit, gtol=gtol,
                           memory_size=memory_size)
        return r.x, r.value, r.converged, r.num_iterations, jnp.full_like(x0, jnp.nan), r.grad, None

    return solve
