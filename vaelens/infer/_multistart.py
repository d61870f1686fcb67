"""One compiled multi-start optimiser of a :class:`~vaelens.infer.flat.FlatModel`."""

from __future__ import annotations

import jax
import numpy as np

from vaelens.infer._rows import row_loop
from vaelens.infer._solvers import bfgs_solver, lbfgs_solver
from vaelens.infer.flat import FlatModel

__all__ = ["MultiStart"]


class MultiStart:
    """One compiled multi-start optimiser of a :class:`FlatModel`.

    The solver runs ``capacity`` rows per call, each from its own starting point with its own
    iteration limit (padding rows get limit 0 and cost nothing), with a mask of the free
    coordinates and a Newton-decrement tolerance shared by the rows. The model's data
    (:attr:`FlatModel.arrays`) are an argument of the compiled program, not constants in it.
    With BFGS the objective also returns the chi^2 and the constrained and deterministic sites
    (:attr:`FlatModel.potential_aux`), so the one compiled program serves the stages of
    :func:`vaelens.infer.staged_map_fit` (fixed sites are masked), the gradients and sites at
    the points of the finite-difference Laplace Hessian (limit 1) and the report of the
    optimum: the model is compiled once.
    """

    def __init__(self, fm: FlatModel, method, max_iter, gtol, dtol, num_rows, devices, vectorize):
        def solve(x0, limit, mask, tol, arrays):
            if method == "bfgs":
                fun = bfgs_solver(lambda x: fm.potential_aux_with(x, arrays), max_iter, gtol,
                                  dtol, has_aux=True)
            else:
                fun = lbfgs_solver(lambda x: fm.potential_with(x, arrays), max_iter, gtol)
            return fun(x0, limit, mask, tol)

        n_dev = min(jax.local_device_count(), num_rows, int(devices or num_rows))
        self.n_dev = 1 if vectorize else max(1, n_dev)
        self.fm = fm
        self.method = method
        self.dim = fm.dim
        self.dtype = fm.dtype
        self.dtol = dtol
        self.call, self.pack, self.unpack, self.capacity = row_loop(
            solve, num_rows, n_dev, n_row_args=2, n_args=3, vectorize=vectorize
        )
        proto = self.pack(np.zeros((1, fm.dim), self.dtype), np.zeros((1,), np.int32))
        tol = np.asarray(dtol, self.dtype)
        self.compiled = self.call.lower(*proto, np.ones(fm.dim, bool), tol, fm.arrays).compile()
        self._grad = None

    def run(self, points, limit: int, mask=None, dtol: float | None = None) -> tuple:
        """Solver outputs ``(x, f, converged, nit, diag(H^-1), grad, aux)`` of every row."""
        points = np.asarray(points, self.dtype)
        mask = np.ones(self.dim, bool) if mask is None else np.asarray(mask, bool)
        tol = np.asarray(self.dtol if dtol is None else dtol, self.dtype)
        outs = []
        for i in range(0, points.shape[0], self.capacity):
            chunk = points[i : i + self.capacity]
            m = chunk.shape[0]
            limits = np.zeros((self.capacity,), np.int32)
            limits[:m] = int(limit)
            out = self.compiled(*self.pack(chunk, limits), mask, tol, self.fm.arrays)
            outs.append(self.unpack(jax.block_until_ready(out), m))
        return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outs)

    def gradients(self, points) -> tuple[np.ndarray, dict | None]:
        """Gradients of the potential at ``points`` ``(m, dim)`` and, with BFGS, the sites there.

        BFGS: the compiled solver with an iteration limit of 1 evaluates value, gradient and
        sites at its starting points (no second compilation of the model). L-BFGS: one more
        compiled loop over the gradients (its first iteration is a step).
        """
        if self.method == "bfgs":
            out = self.run(points, 1)
            return out[5], out[6]["sites"]
        points = np.asarray(points, self.dtype)
        if self._grad is None:
            self._grad = row_loop(jax.grad(self.fm.potential_with), points.shape[0], self.n_dev,
                                  n_row_args=1, n_args=1)
        call, pack, unpack, capacity = self._grad
        outs = []
        for i in range(0, points.shape[0], capacity):
            chunk = points[i : i + capacity]
            outs.append(unpack(call(*pack(chunk), self.fm.arrays), chunk.shape[0]))
        return np.concatenate(outs), None
