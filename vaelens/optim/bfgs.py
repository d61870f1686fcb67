"""A small, robust BFGS for smooth potentials (pure functions over a NamedTuple state).

Quasi-Newton BFGS with the inverse-Hessian update (Nocedal & Wright 2006, *Numerical
Optimization*, 2nd ed., Algorithm 6.1, eq. 6.17) and a backtracking Armijo line search
(Algorithm 3.1). Unlike a Wolfe line search that gives up, every failure is recoverable: a
non-descent direction or a failed line search resets the inverse Hessian to a scaled identity
(steepest descent), and the curvature update is skipped when ``y.s`` is not positive. All
control flow is ``lax.while_loop``, so :func:`bfgs_minimize` can be ``jit``-ed and ``vmap``-ed
over starting points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["BFGSState", "bfgs_init", "bfgs_step", "bfgs_minimize"]


class BFGSState(NamedTuple):
    """State of the BFGS iteration.

    Attributes
    ----------
    x, value, grad
        Current point, objective and gradient.
    inv_hessian
        Current inverse-Hessian approximation ``(n, n)``.
    iteration
        Number of completed iterations (iteration 0 evaluates the starting point).
    converged
        ``max|grad| < gtol`` or the objective stalled (relative change ``< ftol`` twice).
    stall
        Consecutive iterations with a negligible decrease.
    aux
        With ``has_aux``: the auxiliary output of ``fun`` at ``x`` (else ``None``).
    """

    x: jax.Array
    value: jax.Array
    grad: jax.Array
    inv_hessian: jax.Array
    iteration: jax.Array
    converged: jax.Array
    stall: jax.Array
    aux: Any = None


def bfgs_init(fun: Callable, x0: jax.Array, has_aux: bool = False) -> BFGSState:
    """Initial state at ``x0``.

    The objective is not evaluated here: the state holds ``value = inf`` and a zero gradient,
    so the first :func:`bfgs_step` (a zero step, accepted at once) evaluates ``fun`` at ``x0``.
    This keeps a single copy of the objective in a compiled :func:`bfgs_minimize`. With
    ``has_aux`` (``fun`` returns ``(value, aux)``) the auxiliary output starts as zeros.
    """
    n = x0.shape[0]
    aux = None
    if has_aux:
        shapes = jax.eval_shape(fun, x0)[1]
        aux = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    return BFGSState(
        x0,
        jnp.asarray(jnp.inf, x0.dtype),
        jnp.zeros_like(x0),
        jnp.eye(n, dtype=x0.dtype),
        jnp.asarray(0),
        jnp.asarray(False),
        jnp.asarray(0),
        aux,
    )


def _backtrack(vg, x, value, slope, direction, max_halvings: int, aux, c1: float = 1e-4):
    """Backtracking Armijo line search (N&W Algorithm 3.1) with ``t = 1, 1/2, 1/4, ...``.

    Each trial evaluates value, auxiliary output and gradient together (one copy of the
    objective in the compiled program; ``vg(x) -> ((f, aux), g)``). Returns
    ``(t, f, g, aux, ok)`` at the accepted (or last) trial.
    """

    def accept(t, f, g):
        return jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & (f <= value + c1 * t * slope)

    def cond(c):
        k, t, f, g, _ = c
        return (k == 0) | ((k < max_halvings) & ~accept(t, f, g))

    def body(c):
        k, t, _, _, _ = c
        t = jnp.where(k == 0, t, 0.5 * t)
        (f, a), g = vg(x + t * direction)
        return k + 1, t, f, g, a

    init = (jnp.asarray(0), jnp.asarray(1.0, x.dtype), jnp.asarray(jnp.inf, x.dtype),
            jnp.zeros_like(x), aux)
    _, t, f, g, aux = jax.lax.while_loop(cond, body, init)
    return t, f, g, aux, accept(t, f, g)


def bfgs_step(
    fun: Callable[[jax.Array], jax.Array],
    state: BFGSState,
    *,
    gtol: float = 1e-5,
    ftol: float = 1e-6,
    dtol: float = 0.0,
    max_step: float = 1.0,
    max_halvings: int = 20,
    has_aux: bool = False,
) -> BFGSState:
    """One BFGS iteration (direction, backtracking line search, inverse-Hessian update).

    See :func:`bfgs_minimize` for the tolerances and ``has_aux``; ``max_step`` caps the
    max-norm of a trial step in the unconstrained space.
    """
    x, value, g, hinv = state.x, state.value, state.grad, state.inv_hessian
    n = x.shape[0]
    eye = jnp.eye(n, dtype=x.dtype)
    d = -hinv @ g
    slope = g @ d
    descent = (slope < 0) & jnp.all(jnp.isfinite(d))
    hinv = jnp.where(descent, hinv, eye)
    d = jnp.where(descent, d, -g)
    slope = jnp.where(descent, slope, -(g @ g))
    scale = jnp.minimum(1.0, max_step / (jnp.max(jnp.abs(d)) + 1e-30))
    d = d * scale
    slope = slope * scale

    if has_aux:
        vg = jax.value_and_grad(fun, has_aux=True)
        aux = state.aux
    else:
        vg = jax.value_and_grad(lambda z: (fun(z), None), has_aux=True)
        aux = None
    t, f_t, g_t, aux_t, ok = _backtrack(vg, x, value, slope, d, max_halvings, aux)
    x_new = jnp.where(ok, x + t * d, x)
    value_new = jnp.where(ok, f_t, value)
    g_new = jnp.where(ok, g_t, g)
    aux_new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), aux_t, aux)

    s = x_new - x
    y = g_new - g
    sy = s @ y
    rho = 1.0 / jnp.where(sy > 1e-12 * jnp.sqrt((s @ s) * (y @ y)) + 1e-300, sy, 1.0)
    # initial scaling of the identity before the first update (N&W eq. 6.20); iteration 0
    # only evaluated the starting point
    hinv = jnp.where(state.iteration == 1, eye * jnp.where(sy > 0, sy / (y @ y + 1e-300), 1.0),
                     hinv)
    a = eye - rho * jnp.outer(s, y)
    updated = a @ hinv @ a.T + rho * jnp.outer(s, s)
    good_curv = ok & (sy > 1e-12 * jnp.sqrt((s @ s) * (y @ y)) + 1e-300)
    hinv_new = jnp.where(good_curv, updated, jnp.where(ok, hinv, eye))

    # Newton decrement g.H^-1.g: twice the predicted remaining decrease, and the squared
    # Mahalanobis distance to the optimum in the metric of the (approximate) Hessian.
    decrement = g_new @ (hinv_new @ g_new)
    precision = 10.0 * jnp.finfo(x.dtype).eps * jnp.abs(value_new)
    small = (jnp.abs(value - value_new) <= ftol + precision) | (
        (state.iteration >= 2) & (decrement < dtol)
    )
    # a failed line search along steepest descent cannot be rescued: stop
    hopeless = ~ok & ~descent
    stall = jnp.where(small | ~ok, state.stall + 1, 0)
    converged = (jnp.max(jnp.abs(g_new)) < gtol) | (stall >= 3) | hopeless
    return BFGSState(
        x_new, value_new, g_new, hinv_new, state.iteration + 1, converged, stall, aux_new
    )


def bfgs_minimize(
    fun: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    max_iter: int = 500,
    gtol: float = 1e-5,
    ftol: float = 1e-6,
    dtol: float = 0.0,
    max_step: float = 1.0,
    has_aux: bool = False,
) -> BFGSState:
    """Minimise ``fun`` from ``x0``; returns the final :class:`BFGSState`.

    Parameters
    ----------
    fun
        Smooth scalar objective of a flat vector.
    x0
        Starting point ``(n,)``.
    max_iter
        Iteration limit.
    gtol
        Convergence when the max-norm of the gradient falls below ``gtol``.
    ftol, dtol
        An iteration counts as stalled when the objective decreased by less than ``ftol``
        (absolute, plus the float precision of the objective) or the Newton decrement
        ``g.H^-1.g`` (the squared distance to the optimum in units of the posterior width when
        ``fun`` is a negative log density) is below ``dtol``; three stalled iterations in a row
        (or a failed line search along steepest descent) end the run.
    max_step
        Largest trial step (max-norm) in the unconstrained space.
    has_aux
        ``fun`` returns ``(value, aux)``; the state then carries ``aux`` at its point ``x``
        (e.g. a chi^2 evaluated by the same model evaluation as the objective).
    """

    def cond(state):
        started = (state.iteration == 0) | jnp.isfinite(state.value)
        return (state.iteration < max_iter) & ~state.converged & started

    def body(state):
        return bfgs_step(
            fun, state, gtol=gtol, ftol=ftol, dtol=dtol, max_step=max_step, has_aux=has_aux
        )

    return jax.lax.while_loop(cond, body, bfgs_init(fun, x0, has_aux))
