"""L-BFGS (``optax.lbfgs`` with a zoom line search) as one ``lax.while_loop``.

Limited-memory BFGS (Nocedal 1980; Nocedal & Wright 2006, *Numerical Optimization*, 2nd ed.,
Algorithm 7.5) with optax's zoom line search (strong Wolfe conditions, Algorithm 3.5). The loop
stops when ``max|grad| < gtol``, when the objective decreased by less than ``ftol * (|f| + 1)``
in three consecutive iterations, or after ``max_iter`` iterations; ``max_iter`` may be a traced
integer, so one compiled program serves any iteration limit. The function is pure and can be
``jit``-ed and ``vmap``-ed over starting points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

__all__ = ["LBFGSResult", "lbfgs_minimize"]


class LBFGSResult(NamedTuple):
    """Outcome of :func:`lbfgs_minimize`.

    Attributes
    ----------
    x, value, grad
        Final point, objective and gradient (the objective and gradient of the last accepted
        iterate; ``inf`` and zeros when no iteration ran).
    num_iterations
        Iterations done.
    converged
        The gradient or the progress tolerance was met.
    """

    x: jax.Array
    value: jax.Array
    grad: jax.Array
    num_iterations: jax.Array
    converged: jax.Array


def lbfgs_minimize(
    fun: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    max_iter: int | jax.Array,
    gtol: float = 1e-4,
    ftol: float = 0.0,
    memory_size: int = 10,
    max_linesearch_steps: int = 16,
) -> LBFGSResult:
    """Minimise ``fun`` from ``x0`` (a flat vector) by L-BFGS.

    Parameters
    ----------
    fun
        Scalar objective of a flat vector.
    x0
        Starting point ``(n,)``.
    max_iter
        Iteration limit (may be traced).
    gtol
        Stop when the max-norm of the gradient is below ``gtol``.
    ftol
        Stop after three consecutive iterations whose decrease is below ``ftol * (|f| + 1)``
        (0 disables the test).
    memory_size, max_linesearch_steps
        L-BFGS memory and the zoom line search's step limit.
    """
    opt = optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=max_linesearch_steps),
    )
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state, f_prev, n_small, _ = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        x = optax.apply_updates(x, updates)
        small = (f_prev - value) <= ftol * (jnp.abs(value) + 1.0)
        n_small = jnp.where(small, n_small + 1, 0)
        gmax = jnp.max(jnp.abs(grad))
        done = ((gmax < gtol) & jnp.isfinite(gmax)) | (n_small >= 3)
        return x, state, value, n_small, done

    def cond(carry):
        _, state, _, _, done = carry
        return (otu.tree_get(state, "count") < max_iter) & ~done

    inf = jnp.asarray(jnp.inf, x0.dtype)
    carry = (x0, opt.init(x0), inf, jnp.asarray(0), jnp.asarray(False))
    x, state, _, _, done = jax.lax.while_loop(cond, step, carry)
    return LBFGSResult(
        x=x,
        value=otu.tree_get(state, "value"),
        grad=otu.tree_get(state, "grad"),
        num_iterations=otu.tree_get(state, "count"),
        converged=done,
    )
