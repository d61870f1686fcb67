"""Maximum a posteriori fit: multi-start BFGS / L-BFGS and the Laplace approximation.

The negative log joint density ``U(x)`` of the model over its unconstrained parameters ``x``
(see :mod:`vaelens.infer.flat`) is minimised from ``num_starts`` prior draws by one compiled
program: the optimiser is mapped over the starts (``lax.map`` by default, ``jax.vmap`` with
``vectorize=True``), so the model is compiled once whatever the number of starts. The best
start defines the MAP point ``x*``; the Laplace approximation is the Gaussian
``N(x*, H^-1)`` with ``H`` the Hessian of ``U`` at ``x*`` (e.g. MacKay 2003, ch. 27), reported
for the constrained and derived parameters ``f(x)`` by the delta method ``J H^-1 J^T`` with
``J = df/dx`` (forward-mode autodiff).

Note that the optimum is the mode of the density of the *unconstrained* parameters (it includes
the log-Jacobians of the transforms, as in NumPyro's ``AutoLaplaceApproximation``), the natural
centre of a Gaussian approximation in that space.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.infer.flat import (
    FlatModel,
    flat_labels,
    flatten_model,
    run_in_background,
    summary_vector,
)
from vaelens.optim import bfgs_minimize, lbfgs_minimize

__all__ = [
    "MAPResult",
    "map_fit",
    "staged_map_fit",
    "laplace_covariance",
    "bfgs_solver",
    "lbfgs_solver",
]


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
    iteration is a zero step), which :func:`map_fit` uses for the Laplace Hessian, and with
    ``limit=0`` it returns ``x0`` untouched. ``mask`` (boolean, like ``x0``), if given, zeroes
    the gradient of the coordinates where it is False: BFGS then never moves them (its
    inverse Hessian keeps an identity block there), so the same compiled solver also fits
    with some parameters held fixed. ``fun`` returns ``(value, aux)`` if ``has_aux``
    (``aux`` at the final point is returned), else only the value (``aux`` is ``None``).
    ``tol``, the Newton-decrement tolerance ``dtol``, may differ per call (a traced scalar,
    e.g. a looser tolerance for a first, exploratory stage).
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


def _row_loop(
    fn: Callable,
    num_rows: int,
    n_dev: int,
    n_row_args: int = 1,
    n_args: int = 0,
    vectorize: bool = False,
):
    """``fn(*row_args, *args)`` applied to rows: ``(callable, pack, unpack, capacity)``.

    One ``lax.map`` loop over the rows, split over ``n_dev`` local devices when ``n_dev > 1``
    (e.g. CPU host devices, one per core: each device loops over its share in parallel).
    ``capacity`` is ``num_rows`` rounded up to a multiple of the devices. ``pack(*arrays)``
    takes the ``n_row_args`` per-row arrays (leading axis: rows, at most ``capacity``), pads
    them to ``capacity`` rows with copies of their first row and deals the rows out to the
    devices in turn (row ``i`` on device ``i % n_dev``, so a short batch is spread evenly);
    ``callable(*packed, *args)`` runs them, the ``n_args`` extra arguments being the same for
    every row, and ``unpack(outputs, n)`` returns the outputs of the first ``n`` rows in
    order. ``callable`` can be lowered and compiled ahead of the call. ``vectorize`` replaces
    the loop by one ``jax.vmap`` batch on one device.
    """
    n_dev = 1 if vectorize else max(1, min(int(n_dev), jax.local_device_count(), num_rows))
    per = -(-num_rows // n_dev)
    capacity = per * n_dev

    def loop(*args):
        rows, shared = args[:n_row_args], args[n_row_args:]
        return jax.lax.map(lambda r: fn(*r, *shared), rows)

    def pack(*arrays):
        # host (NumPy) bookkeeping: no small JAX programs to compile and dispatch
        out = []
        for a in arrays:
            a = np.asarray(a)
            if a.shape[0] > capacity:
                raise ValueError(f"at most {capacity} rows per call, got {a.shape[0]}")
            a = np.concatenate([a, np.broadcast_to(a[:1], (capacity - a.shape[0], *a.shape[1:]))])
            if n_dev > 1:
                a = np.ascontiguousarray(np.swapaxes(a.reshape(per, n_dev, *a.shape[1:]), 0, 1))
            out.append(a)
        return tuple(out)

    in_axes = (0,) * n_row_args + (None,) * n_args
    if n_dev == 1:
        call = jax.jit(jax.vmap(fn, in_axes=in_axes) if vectorize else loop)

        def unpack(out, n):
            return jax.tree_util.tree_map(lambda o: np.asarray(o)[:n], jax.device_get(out))

    else:
        call = jax.pmap(loop, in_axes=in_axes, devices=jax.local_devices()[:n_dev])

        def unpack(out, n):
            def one(o):
                o = np.swapaxes(np.asarray(o), 0, 1)
                return o.reshape(-1, *o.shape[2:])[:n]

            return jax.tree_util.tree_map(one, jax.device_get(out))

    return call, pack, unpack, capacity


class _MultiStart:
    """One compiled multi-start optimiser of a :class:`FlatModel`.

    The solver runs ``capacity`` rows per call, each from its own starting point with its own
    iteration limit (padding rows get limit 0 and cost nothing), with a mask of the free
    coordinates and a Newton-decrement tolerance shared by the rows. With BFGS the objective
    also returns the chi^2 and the constrained and deterministic sites
    (:attr:`FlatModel.potential_aux`), so the one compiled program serves the stages of
    :func:`staged_map_fit` (fixed sites are masked), the gradients of the finite-difference
    Laplace Hessian (limit 1) and the report of the optimum: the model is compiled once.
    """

    def __init__(self, fm: FlatModel, method, max_iter, gtol, dtol, num_rows, devices, vectorize):
        if method == "bfgs":
            solver = bfgs_solver(fm.potential_aux, max_iter, gtol, dtol, has_aux=True)
        else:
            solver = lbfgs_solver(fm.potential, max_iter, gtol)
        n_dev = min(jax.local_device_count(), num_rows, int(devices or num_rows))
        self.n_dev = 1 if vectorize else max(1, n_dev)
        self.dim = fm.dim
        self.dtype = fm.dtype
        self.dtol = dtol
        self.call, self.pack, self.unpack, self.capacity = _row_loop(
            solver, num_rows, n_dev, n_row_args=2, n_args=2, vectorize=vectorize
        )
        proto = self.pack(np.zeros((1, fm.dim), self.dtype), np.zeros((1,), np.int32))
        tol = np.asarray(dtol, self.dtype)
        self.compiled = self.call.lower(*proto, np.ones(fm.dim, bool), tol).compile()

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
            out = self.compiled(*self.pack(chunk, limits), mask, tol)
            outs.append(self.unpack(jax.block_until_ready(out), m))
        return jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outs)


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
    x = np.asarray(x)
    steps = np.asarray(steps).astype(x.dtype)
    eye = np.eye(n, dtype=x.dtype) * steps[:, None]
    pts = np.concatenate([x[None] + eye, x[None] - eye])
    if gradients is None:
        call, pack, unpack, _ = _row_loop(jax.grad(potential), pts.shape[0], devices)
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


@dataclasses.dataclass(frozen=True, eq=False)
class MAPResult:
    """Result of :func:`map_fit` (frozen).

    Attributes
    ----------
    params
        Constrained sample sites and deterministic sites (e.g. ``e1``, ``source``) at the best
        start.
    unconstrained
        The best point as a dictionary of unconstrained site values.
    x
        The best point as the flat unconstrained vector.
    loss
        ``U(x*)``, the negative log joint density at the best point.
    losses, converged, num_iterations
        Final loss, convergence flag and iteration count of every start (``(num_starts,)``).
    final_points
        ``(num_starts, dim)`` final unconstrained points of all starts.
    cov_unconstrained
        Laplace covariance ``H^-1`` of the flat unconstrained parameters.
    labels, cov
        Labels (``theta_E``, ``z[3]``...) and Laplace covariance of the constrained and derived
        summary parameters (delta method).
    chi2, num_pixels
        chi^2 of the best fit over the unmasked pixels and their number.
    method, timings
        Optimiser name; wall times in seconds (``compile``, ``optimize``, ``laplace``,
        ``total``).
    """

    params: dict[str, np.ndarray]
    unconstrained: dict[str, np.ndarray]
    x: np.ndarray
    loss: float
    losses: np.ndarray
    converged: np.ndarray
    num_iterations: np.ndarray
    final_points: np.ndarray
    cov_unconstrained: np.ndarray
    labels: tuple[str, ...]
    cov: np.ndarray
    chi2: float
    num_pixels: int
    method: str
    timings: dict[str, float]
    flat_model: FlatModel = dataclasses.field(repr=False)
    model: Callable = dataclasses.field(repr=False)
    model_args: tuple = dataclasses.field(repr=False, default=())
    model_kwargs: dict = dataclasses.field(repr=False, default_factory=dict)

    @property
    def sigma(self) -> dict[str, float]:
        """Laplace standard deviation of every summary parameter label."""
        sd = np.sqrt(np.clip(np.diag(self.cov), 0.0, None))
        return dict(zip(self.labels, sd.tolist(), strict=True))

    @property
    def sigma_unconstrained(self) -> np.ndarray:
        """Laplace standard deviations of the flat unconstrained parameters."""
        return np.sqrt(np.diag(self.cov_unconstrained))

    def summary_values(self) -> dict[str, float]:
        """Best-fit value of every summary parameter label."""
        vec = np.asarray(summary_vector(self.params))
        return dict(zip(self.labels, vec.tolist(), strict=True))

    def laplace_draws(self, key: jax.Array, num_samples: int) -> dict[str, np.ndarray]:
        """Constrained latent-site draws ``(num_samples, ...)`` from the Laplace approximation."""
        w, v = np.linalg.eigh(0.5 * (self.cov_unconstrained + self.cov_unconstrained.T))
        chol = v * np.sqrt(np.clip(w, 0.0, None))
        eps = np.asarray(jax.random.normal(key, (num_samples, len(self.x))), dtype=np.float64)
        flat = self.x[None, :] + eps @ chol.T
        fm = self.flat_model
        latent_names = list(self.unconstrained)

        def one(xi):
            out = fm.constrain(fm.unravel(jnp.asarray(xi, dtype=jnp.asarray(self.x).dtype)))
            return {k: out[k] for k in latent_names}

        return jax.device_get(jax.jit(jax.vmap(one))(flat))

    def to_inference_data(
        self,
        key: jax.Array | None = None,
        *,
        num_samples: int = 0,
        log_likelihood: bool = True,
        posterior_predictive: bool = False,
    ):
        """ArviZ InferenceData of the fit.

        With ``num_samples=0`` the posterior group holds the MAP point alone (one chain, one
        draw); otherwise ``num_samples`` draws of the Laplace approximation (needs ``key``).
        """
        from vaelens.infer.convert import to_inference_data

        key = jax.random.PRNGKey(0) if key is None else key
        k_draw, k_eval = jax.random.split(key)
        latent_names = list(self.unconstrained)
        if num_samples > 0:
            draws = self.laplace_draws(k_draw, num_samples)
            samples = {k: np.asarray(v)[None] for k, v in draws.items()}
        else:
            samples = {k: np.asarray(self.params[k])[None, None] for k in latent_names}
        attrs = {
            "method": f"map_{self.method}" + ("_laplace" if num_samples else ""),
            "map_loss": self.loss,
            "map_chi2": self.chi2,
            "num_starts": len(self.losses),
            "timing": self.timings,
        }
        return to_inference_data(
            self.model,
            self.model_args,
            self.model_kwargs,
            samples,
            key=k_eval,
            log_likelihood=log_likelihood,
            posterior_predictive=posterior_predictive,
            attrs=attrs,
        )


def map_fit(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    num_starts: int = 8,
    method: Literal["bfgs", "lbfgs"] = "bfgs",
    max_iter: int = 500,
    gtol: float = 1e-4,
    dtol: float = 1e-3,
    init_values: dict[str, Any] | None = None,
    init_points: np.ndarray | None = None,
    laplace: bool = True,
    hessian: Literal["fd", "autodiff"] = "fd",
    vectorize: bool = False,
    devices: int | None = None,
    model_kwargs: dict | None = None,
    evaluate: bool = True,
) -> MAPResult:
    """Multi-start MAP fit of a NumPyro model over its unconstrained parameters.

    Parameters
    ----------
    model, *model_args
        The NumPyro model and its positional arguments (e.g. ``lens_model, data, spec,
        decoder``).
    key
        ``jax.random`` key of the starting points.
    num_starts
        Number of starts (prior draws), optimised by one compiled program.
    method
        ``"bfgs"`` (:func:`vaelens.optim.bfgs_minimize`, dense BFGS with a backtracking
        line search that recovers from failures) or ``"lbfgs"`` (``optax.lbfgs``, zoom line
        search).
    max_iter, gtol
        Iteration limit and gradient tolerance (max-norm) of each start.
    dtol
        BFGS only: a start also stops after three iterations whose Newton decrement
        ``g.H^-1.g`` (the squared distance to the optimum in posterior widths) is below
        ``dtol``; in float32 the gradient tolerance is often out of reach, and iterating
        closer than ``1e-3`` widths changes nothing that matters.
    init_values
        Constrained values replacing the prior draws of some sites in every start (e.g.
        ``{"z": np.zeros(64)}`` to start every source from the mean latent code).
    init_points
        Optional ``(n, dim)`` flat unconstrained starting points, used instead of prior draws.
    laplace
        Compute the Laplace covariance.
    hessian
        ``"fd"``: central differences of the autodiff gradient, steps 1/100 of the BFGS
        estimate of each posterior width (one compiled loop over ``2 dim`` gradients; cheap
        to compile, exact for a Gaussian posterior); ``"autodiff"``: ``jax.hessian``.
    vectorize
        How the single compiled program runs the starts: ``False`` (default) loops over them
        with ``lax.map`` (each start stops at its own convergence), ``True`` runs them as one
        ``jax.vmap`` batch (in lock step until the slowest converges). On a CPU the loop is
        faster: the batched gather/scatter of the source interpolation costs 2-3x per start
        under ``vmap`` (measured on the lens model); on an accelerator ``vmap`` wins.
    devices
        Without ``vectorize``: split the starts over this many local devices (default: all,
        at most one per start), each looping over its share in parallel. On a CPU, JAX exposes
        several host devices only when ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
        is set before it starts (``vaelens fit`` and the benchmarks do); one device per core
        runs the starts on all cores. The gradients of the finite-difference Laplace Hessian
        are split the same way.
    model_kwargs
        Keyword arguments of the model.
    evaluate
        Compute the chi^2 of the best fit and the number of fitted pixels (one more compiled
        forward model); ``False`` leaves ``chi2`` NaN and ``num_pixels`` 0 (used by the first
        stage of :func:`staged_map_fit`, which needs only the optima).

    Returns
    -------
    MAPResult
    """
    _check_map_args(method, num_starts, devices)
    t0 = time.perf_counter()
    # the prior draws compile in the background while the optimiser compiles
    fm = flatten_model(
        model, model_args, model_kwargs, key=key, num_inits=num_starts, init_values=init_values,
        background=True,
    )
    if init_points is not None:
        init_points = np.asarray(init_points, fm.dtype)
        if init_points.ndim != 2 or init_points.shape[1] != fm.dim:
            raise ValueError(f"init_points must have shape (n, {fm.dim})")
    num_rows = num_starts if init_points is None else init_points.shape[0]
    prog = _MultiStart(fm, method, max_iter, gtol, dtol, num_rows, devices, vectorize)
    x0 = fm.init_flat if init_points is None else init_points
    t_compile = time.perf_counter()
    jacobian = _summary_jacobian(fm) if laplace else None
    out = prog.run(x0, max_iter)
    t_opt = time.perf_counter()
    return _finish(
        prog, fm, out, model, model_args, model_kwargs, method=method, laplace=laplace,
        hessian=hessian, evaluate=evaluate, jacobian=jacobian,
        times={"start": t0, "compile": t_compile, "optimize": t_opt},
    )


def _summary_jacobian(fm: FlatModel):
    """Future of the compiled Jacobian ``d summary / d x`` (delta method of the Laplace
    covariance), traced and compiled in the background thread while the optimiser runs.

    Only the summary sites are returned, so the likelihood is dead code. The caller must not
    trace the NumPyro model itself until the future is done (NumPyro's handler stack is
    global, not per thread).
    """

    def derived(x):
        return summary_vector(fm.constrain(fm.unravel(x)))

    proto = jax.ShapeDtypeStruct((fm.dim,), fm.dtype)
    return run_in_background(lambda: jax.jit(jax.jacfwd(derived)).lower(proto).compile())


def _check_map_args(method, num_starts, devices):
    if method not in ("bfgs", "lbfgs"):
        raise ValueError(f"method must be 'bfgs' or 'lbfgs', got {method!r}")
    if num_starts < 1:
        raise ValueError("num_starts must be positive")
    if devices is not None and int(devices) < 1:
        raise ValueError("devices must be positive")


def _finish(
    prog: _MultiStart,
    fm: FlatModel,
    out: tuple[np.ndarray, ...],
    model: Callable,
    model_args: tuple,
    model_kwargs: dict | None,
    *,
    method: str,
    laplace: bool,
    hessian: str,
    evaluate: bool,
    times: dict[str, float],
    jacobian=None,
) -> MAPResult:
    """Best start, Laplace covariance, chi^2 and the :class:`MAPResult` of a multi-start run.

    ``jacobian``: the future of :func:`_summary_jacobian` (waited for first), or None.
    """
    jac_fn = jacobian.result() if jacobian is not None else None
    xs, fs, ok, nit, hdiag, _, aux = out
    losses = np.asarray(fs, dtype=np.float64)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    if not np.isfinite(losses).any():
        raise RuntimeError("every MAP start diverged (non-finite loss); check priors and data")
    best = int(np.argmin(losses))
    x_best = np.asarray(xs[best])

    unconstrained = fm.unravel_numpy(x_best)
    if aux is not None:  # BFGS: the sites at the optimum came with it
        params = {k: v[best] for k, v in aux["sites"].items()}
    else:
        params = jax.device_get(fm.constrain(fm.unravel(x_best)))
    labels = tuple(flat_labels(params))
    if laplace:
        # finite-difference steps: a fraction of the BFGS estimate of each posterior width
        # (1/100 in float64, 1/10 in float32 where gradient round-off is larger)
        frac = 1e-1 if x_best.dtype == jnp.float32 else 1e-2
        width = np.sqrt(np.abs(np.asarray(hdiag[best], dtype=np.float64)))
        default = 1e-4 * (1.0 + np.abs(np.asarray(x_best, dtype=np.float64)))
        steps = np.where(np.isfinite(width) & (width > 0), frac * width, default)

        def gradients(points):
            # the compiled solver with an iteration limit of 1 evaluates the gradient at its
            # starting points: no second compilation of the model
            return prog.run(points, 1)[5]

        cov_u, n_bad = laplace_covariance(
            fm.potential, jnp.asarray(x_best), method=hessian, steps=steps,
            devices=prog.n_dev, gradients=gradients if method == "bfgs" else None,
        )
        if n_bad:
            warnings.warn(
                f"Laplace approximation: the Hessian at the MAP has {n_bad} non-positive "
                "eigenvalue(s) (not a strict minimum); their magnitudes were used instead",
                RuntimeWarning,
                stacklevel=3,
            )

        if jac_fn is None:
            jac_fn = _summary_jacobian(fm).result()
        jac = np.asarray(jac_fn(x_best), dtype=np.float64)
        cov = jac @ cov_u @ jac.T
    else:
        cov_u = np.full((fm.dim, fm.dim), np.nan)
        cov = np.full((len(labels), len(labels)), np.nan)
    t_lap = time.perf_counter()

    chi2_total, num_pixels = float("nan"), 0
    if evaluate:
        if aux is not None:
            chi2_total = float(aux["chi2"][best])
            num_pixels = int(aux["num_observed"][best])
        else:
            # L-BFGS (no chi^2 from the optimiser): one evaluation of the model
            from vaelens.infer.convert import evaluate_draws

            _, _, chi2, _ = evaluate_draws(
                model, model_args, model_kwargs,
                {k: np.asarray(params[k])[None] for k in unconstrained},
                key=jax.random.PRNGKey(0),
            )
            chi2_total = float(sum(np.sum(v) for v in chi2.values()))
            num_pixels = _num_observed(model, model_args, model_kwargs, params, unconstrained)

    t0 = times["start"]
    timings = {"compile": times["compile"] - t0}
    if "stage1" in times:
        timings["stage1"] = times["stage1"] - times["compile"]
        timings["optimize"] = times["optimize"] - times["stage1"]
    else:
        timings["optimize"] = times["optimize"] - times["compile"]
    timings["laplace"] = t_lap - times["optimize"]
    timings["total"] = time.perf_counter() - t0
    return MAPResult(
        params={k: np.asarray(v) for k, v in params.items()},
        unconstrained={k: np.asarray(v) for k, v in unconstrained.items()},
        x=np.asarray(x_best),
        loss=float(losses[best]),
        losses=losses,
        converged=np.asarray(ok, bool),
        num_iterations=np.asarray(nit),
        final_points=np.asarray(xs),
        cov_unconstrained=np.asarray(cov_u),
        labels=labels,
        cov=np.asarray(cov),
        chi2=chi2_total,
        num_pixels=num_pixels,
        method=method,
        timings=timings,
        flat_model=fm,
        model=model,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs or {}),
    )


def _num_observed(model, args, kwargs, params, latent_names) -> int:
    """Number of unmasked observed values of the model."""
    from numpyro import handlers

    from vaelens.infer.convert import num_observed_of

    tr = handlers.trace(
        handlers.seed(
            handlers.substitute(model, data={k: params[k] for k in latent_names}),
            jax.random.PRNGKey(0),
        )
    ).get_trace(*args, **dict(kwargs or {}))
    obs = [s for s in tr.values() if s["type"] == "sample" and s["is_observed"]]
    return int(sum(int(num_observed_of(s)) for s in obs))


def staged_map_fit(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    fixed: dict[str, Any],
    num_starts: int = 8,
    num_refine: int = 4,
    num_plain: int = 0,
    method: Literal["bfgs", "lbfgs"] = "bfgs",
    max_iter: int = 500,
    gtol: float = 1e-4,
    dtol: float = 1e-3,
    stage1_dtol: float = 0.1,
    laplace: bool = True,
    hessian: Literal["fd", "autodiff"] = "fd",
    vectorize: bool = False,
    devices: int | None = None,
    model_kwargs: dict | None = None,
    evaluate: bool = True,
) -> MAPResult:
    """Two-stage multi-start MAP: first with some sites held fixed, then everything free.

    Stage 1 fits ``model`` with the sites in ``fixed`` held at the given values, from
    ``num_starts`` prior draws, to a loose tolerance: a BFGS start stops once its Newton
    decrement (squared distance to its optimum in posterior widths) stays below
    ``stage1_dtol``, close enough to rank the starts and to seed stage 2. Stage 2 frees the
    fixed sites and refines the ``num_refine`` best stage-1 optima (and ``num_plain`` further
    plain prior draws, see below); its best point is the result, with the Laplace covariance
    and chi^2 of :func:`map_fit` (the other arguments are those of :func:`map_fit`).

    Both stages (and the Laplace gradients) run one compiled program over the full model:
    in stage 1 the gradient of the fixed sites is masked, so BFGS never moves them. Their
    log prior then only adds a constant to the stage-1 losses.

    For a lens with a VAE source, ``fixed={"z": np.zeros(64)}`` holds the source at the
    decoder's mean galaxy, a smooth blob: stage 1 then finds the lens and the source placement
    in a low-dimensional, well-behaved problem, and stage 2 only has to grow the source's
    structure. Random latent codes as starting points (plain :func:`map_fit`) put every start
    at a different, structured galaxy and often end in a wrong lens configuration; but a blob
    can also mislead stage 1 (on the real HST lens of the README it preferred a shallow slope
    that a plain start beat by 340 in chi^2), so ``num_plain`` plain prior draws (``fixed``
    sites drawn too) can join the stage-2 starts and the best of all wins.

    Returns
    -------
    MAPResult
        The stage-2 result; its ``timings`` gain ``stage1`` (seconds of stage-1 optimisation;
        ``compile`` covers the one compilation) and ``total`` covers both stages, and
        ``losses`` are those of the stage-2 starts.
    """
    if num_refine < 1:
        raise ValueError("num_refine must be positive")
    if num_plain < 0:
        raise ValueError("num_plain must be non-negative")
    _check_map_args(method, num_starts, devices)
    t0 = time.perf_counter()
    # the prior draws compile in the background while the optimiser compiles
    fm = flatten_model(model, model_args, model_kwargs, key=key, num_inits=num_starts + num_plain,
                       background=True)
    fixed_u = fm.unconstrain(fixed)
    num_refine = min(num_refine, num_starts)
    prog = _MultiStart(
        fm, method, max_iter, gtol, dtol, max(num_starts, num_refine + num_plain), devices,
        vectorize,
    )
    # stage-1 starts: prior draws with the fixed sites replaced; mask of the free coordinates
    inits = np.asarray(fm.init_flat)
    starts = inits[:num_starts].copy()
    mask = np.ones(fm.dim, bool)
    for name, sl in fm.site_slices.items():
        if name in fixed_u:
            starts[:, sl] = np.ravel(np.broadcast_to(fixed_u[name], fm.site_shapes[name]))
            mask[sl] = False
    t_compile = time.perf_counter()
    jacobian = _summary_jacobian(fm) if laplace else None
    out1 = prog.run(starts, max_iter, mask, dtol=max(stage1_dtol, dtol))
    t1 = time.perf_counter()
    losses1 = np.where(np.isfinite(out1[1]), out1[1], np.inf)
    order = np.argsort(losses1, kind="stable")[:num_refine]
    points = np.concatenate([out1[0][order], inits[num_starts:]])
    out2 = prog.run(points, max_iter)
    t2 = time.perf_counter()
    return _finish(
        prog, fm, out2, model, model_args, model_kwargs, method=method, laplace=laplace,
        hessian=hessian, evaluate=evaluate, jacobian=jacobian,
        times={"start": t0, "compile": t_compile, "stage1": t1, "optimize": t2},
    )
