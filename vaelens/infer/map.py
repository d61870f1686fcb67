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
import optax
import optax.tree_utils as otu
from jax.flatten_util import ravel_pytree

from vaelens.infer.flat import FlatModel, flat_labels, flatten_model, summary_vector
from vaelens.infer.optim import bfgs_minimize

__all__ = [
    "MAPResult",
    "map_fit",
    "staged_map_fit",
    "laplace_covariance",
    "bfgs_solver",
    "lbfgs_solver",
]


def bfgs_solver(
    fun: Callable[[jax.Array], jax.Array], max_iter: int, gtol: float, dtol: float = 0.0
) -> Callable[..., tuple[jax.Array, ...]]:
    """BFGS (:func:`vaelens.infer.optim.bfgs_minimize`) as
    ``(x0, max_iter=max_iter) -> (x, f, converged, nit, diag(H^-1), grad)``.

    ``max_iter`` may be a traced integer, so one compiled solver serves any iteration limit;
    with ``max_iter=1`` it only evaluates ``fun`` and its gradient at ``x0`` (the first
    iteration is a zero step), which :func:`map_fit` uses for the Laplace Hessian.
    """

    def solve(x0, limit=max_iter):
        st = bfgs_minimize(fun, x0, max_iter=limit, gtol=gtol, dtol=dtol)
        return st.x, st.value, st.converged, st.iteration, jnp.diag(st.inv_hessian), st.grad

    return solve


def lbfgs_solver(
    fun: Callable[[jax.Array], jax.Array], max_iter: int, gtol: float, memory_size: int = 10
) -> Callable[..., tuple[jax.Array, ...]]:
    """L-BFGS with a zoom line search (``optax.lbfgs``) in a ``lax.while_loop``; the same
    call signature and outputs as :func:`bfgs_solver` (``diag(H^-1)`` is NaN)."""
    opt = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(fun)

    def solve(x0, limit=max_iter):
        def step(carry):
            x, state = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
            return optax.apply_updates(x, updates), state

        def cond(carry):
            _, state = carry
            count = otu.tree_get(state, "count")
            grad = otu.tree_get(state, "grad")
            err = jnp.max(jnp.abs(grad))
            return (count == 0) | ((count < limit) & (err >= gtol) & jnp.isfinite(err))

        x, state = jax.lax.while_loop(cond, step, (x0, opt.init(x0)))
        count = otu.tree_get(state, "count")
        grad = otu.tree_get(state, "grad")
        err = jnp.max(jnp.abs(grad))
        value = otu.tree_get(state, "value")
        return x, value, err < gtol, count, jnp.full_like(x, jnp.nan), grad

    return solve


def _row_loop(fn: Callable, xs: jax.Array, n_dev: int, n_args: int = 0, vectorize: bool = False):
    """``fn(row, *args)`` applied to every row of ``xs``: ``(callable, pack, unpack, capacity)``.

    One ``lax.map`` loop, split over ``n_dev`` local devices when ``n_dev > 1`` (e.g. CPU host
    devices, one per core: each device loops over its share in parallel). ``capacity`` is the
    number of rows of ``xs`` rounded up to a multiple of the devices; ``pack(rows)`` pads at most
    ``capacity`` rows with copies of the first to ``capacity`` and lays them out for
    ``callable(packed, *args)``; ``unpack(outputs, n)`` returns the outputs
    of the first ``n`` rows in order. The ``n_args`` extra arguments are the same for every
    row. ``callable`` can be lowered and compiled ahead of the call. ``vectorize`` replaces
    the loop by one ``jax.vmap`` batch on one device.
    """
    n_dev = 1 if vectorize else max(1, min(int(n_dev), jax.local_device_count(), xs.shape[0]))
    per = -(-xs.shape[0] // n_dev)
    capacity = per * n_dev
    tail = xs.shape[1:]

    def loop(rows, *args):
        return jax.lax.map(lambda r: fn(r, *args), rows)

    def pack(rows):
        rows = jnp.asarray(rows, xs.dtype)
        if rows.shape[0] > capacity:
            raise ValueError(f"at most {capacity} rows per call, got {rows.shape[0]}")
        rows = jnp.concatenate(
            [rows, jnp.broadcast_to(rows[:1], (capacity - rows.shape[0], *tail))]
        )
        return rows if n_dev == 1 else rows.reshape(n_dev, per, *tail)

    in_axes = (0,) + (None,) * n_args
    if n_dev == 1:
        call = jax.jit(jax.vmap(fn, in_axes=in_axes) if vectorize else loop)

        def unpack(out, n):
            return jax.tree_util.tree_map(lambda o: o[:n], jax.device_get(out))

    else:
        call = jax.pmap(loop, in_axes=in_axes, devices=jax.local_devices()[:n_dev])

        def unpack(out, n):
            return jax.tree_util.tree_map(
                lambda o: jnp.reshape(o, (-1, *o.shape[2:]))[:n], jax.device_get(out)
            )

    return call, pack, unpack, capacity


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
    eye = jnp.eye(n, dtype=x.dtype) * steps[:, None].astype(x.dtype)
    pts = jnp.concatenate([x[None] + eye, x[None] - eye])
    if gradients is None:
        call, pack, unpack, _ = _row_loop(jax.grad(potential), pts, devices)
        g = np.asarray(unpack(call(pack(pts)), 2 * n), np.float64)
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
            steps = 1e-4 * (1.0 + jnp.abs(x))
        h = hessian_fd(potential, x, jnp.asarray(steps), devices=devices, gradients=gradients)
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
        ``"bfgs"`` (:func:`vaelens.infer.optim.bfgs_minimize`, dense BFGS with a backtracking
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
    if method not in ("bfgs", "lbfgs"):
        raise ValueError(f"method must be 'bfgs' or 'lbfgs', got {method!r}")
    if num_starts < 1:
        raise ValueError("num_starts must be positive")
    t0 = time.perf_counter()
    fm = flatten_model(
        model, model_args, model_kwargs, key=key, num_inits=num_starts, init_values=init_values
    )
    x0 = fm.init_flat if init_points is None else jnp.asarray(init_points, fm.init_flat.dtype)
    if x0.ndim != 2 or x0.shape[1] != fm.dim:
        raise ValueError(f"init_points must have shape (n, {fm.dim})")

    if method == "bfgs":
        solver = bfgs_solver(fm.potential, max_iter, gtol, dtol)
    else:
        solver = lbfgs_solver(fm.potential, max_iter, gtol)
    if devices is not None and int(devices) < 1:
        raise ValueError("devices must be positive")
    n = x0.shape[0]
    n_dev = min(jax.local_device_count(), n, int(devices or n))
    batch, pack, unpack, capacity = _row_loop(solver, x0, n_dev, n_args=1, vectorize=vectorize)
    inputs = pack(x0)
    limit = jnp.asarray(max_iter, jnp.int32)
    compiled = batch.lower(inputs, limit).compile()
    t_compile = time.perf_counter()
    xs, fs, ok, nit, hdiag, _ = unpack(jax.block_until_ready(compiled(inputs, limit)), n)
    t_opt = time.perf_counter()

    losses = np.asarray(fs, dtype=np.float64)
    losses = np.where(np.isfinite(losses), losses, np.inf)
    if not np.isfinite(losses).any():
        raise RuntimeError("every MAP start diverged (non-finite loss); check priors and data")
    best = int(np.argmin(losses))
    x_best = xs[best]

    unconstrained = jax.device_get(fm.unravel(x_best))
    params = jax.device_get(fm.constrain(fm.unravel(x_best)))
    labels = tuple(flat_labels(params))
    if laplace:
        # finite-difference steps: a fraction of the BFGS estimate of each posterior width
        # (1/100 in float64, 1/10 in float32 where gradient round-off is larger)
        frac = 1e-1 if jnp.asarray(x_best).dtype == jnp.float32 else 1e-2
        width = np.sqrt(np.abs(np.asarray(hdiag[best], dtype=np.float64)))
        default = 1e-4 * (1.0 + np.abs(np.asarray(x_best, dtype=np.float64)))
        steps = np.where(np.isfinite(width) & (width > 0), frac * width, default)

        def gradients(points):
            # the compiled solver with an iteration limit of 1 evaluates the gradient at its
            # starting points: no second compilation of the model
            one = jnp.asarray(1, jnp.int32)
            out = []
            for i in range(0, points.shape[0], capacity):
                chunk = points[i : i + capacity]
                out.append(unpack(compiled(pack(chunk), one), chunk.shape[0])[5])
            return np.concatenate(out)

        cov_u, n_bad = laplace_covariance(
            fm.potential,
            x_best,
            method=hessian,
            steps=jnp.asarray(steps),
            devices=n_dev,
            gradients=gradients if method == "bfgs" else None,
        )
        if n_bad:
            warnings.warn(
                f"Laplace approximation: the Hessian at the MAP has {n_bad} non-positive "
                "eigenvalue(s) (not a strict minimum); their magnitudes were used instead",
                RuntimeWarning,
                stacklevel=2,
            )

        def derived(x):
            return summary_vector(fm.constrain(fm.unravel(x)))

        # jit: only the summary sites are returned, so the likelihood is dead code
        jac = np.asarray(jax.jit(jax.jacfwd(derived))(x_best), dtype=np.float64)
        cov = jac @ cov_u @ jac.T
    else:
        cov_u = np.full((fm.dim, fm.dim), np.nan)
        cov = np.full((len(labels), len(labels)), np.nan)
    t_lap = time.perf_counter()

    if evaluate:
        from vaelens.infer.convert import evaluate_draws

        _, _, chi2, _ = evaluate_draws(
            model,
            model_args,
            model_kwargs,
            {k: np.asarray(params[k])[None] for k in unconstrained},
            key=jax.random.PRNGKey(0),
        )
        chi2_total = float(sum(np.sum(v) for v in chi2.values()))
        num_pixels = _num_observed(model, model_args, model_kwargs, params, unconstrained)
    else:
        chi2_total, num_pixels = float("nan"), 0

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
        timings={
            "compile": t_compile - t0,
            "optimize": t_opt - t_compile,
            "laplace": t_lap - t_opt,
            "total": time.perf_counter() - t0,
        },
        flat_model=fm,
        model=model,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs or {}),
    )


def _num_observed(model, args, kwargs, params, latent_names) -> int:
    """Number of unmasked observed values of the model."""
    from numpyro import handlers

    from vaelens.infer.convert import _normal_parts

    tr = handlers.trace(
        handlers.seed(
            handlers.substitute(model, data={k: params[k] for k in latent_names}),
            jax.random.PRNGKey(0),
        )
    ).get_trace(*args, **dict(kwargs or {}))
    n = 0
    for site in tr.values():
        if site["type"] == "sample" and site["is_observed"]:
            parts = _normal_parts(site["fn"])
            shape = np.shape(site["value"])
            mask = True if parts is None else parts[2]
            n += int(np.sum(np.broadcast_to(np.asarray(mask), shape)))
    return n


def staged_map_fit(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    fixed: dict[str, Any],
    num_starts: int = 8,
    num_refine: int = 4,
    num_plain: int = 0,
    model_kwargs: dict | None = None,
    **map_kwargs: Any,
) -> MAPResult:
    """Two-stage multi-start MAP: first with some sites held fixed, then everything free.

    Stage 1 fits ``model`` with the sites in ``fixed`` conditioned on the given values, from
    ``num_starts`` prior draws (no Laplace step). Stage 2 frees them and refines the
    ``num_refine`` best stage-1 optima, each completed with the fixed values, by
    :func:`map_fit` (with ``**map_kwargs``, e.g. the Laplace covariance).

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
        The stage-2 result; its ``timings`` gain ``stage1`` (seconds) and ``total`` covers both
        stages, and ``losses`` are those of the stage-2 starts.
    """
    from numpyro import handlers

    if num_refine < 1:
        raise ValueError("num_refine must be positive")
    if num_plain < 0:
        raise ValueError("num_plain must be non-negative")
    t0 = time.perf_counter()
    fixed = {k: jnp.asarray(v) for k, v in fixed.items()}
    k1, k2, k3 = jax.random.split(key, 3)
    conditioned = handlers.condition(model, data=dict(fixed))
    stage1 = map_fit(
        conditioned,
        *model_args,
        key=k1,
        num_starts=num_starts,
        laplace=False,
        evaluate=False,
        model_kwargs=model_kwargs,
        **{k: v for k, v in map_kwargs.items() if k not in ("laplace", "hessian", "evaluate")},
    )
    t1 = time.perf_counter()
    fm = flatten_model(model, model_args, model_kwargs, key=k2, init_values=fixed)
    fixed_u = {k: v for k, v in fm.unravel(fm.init_flat[0]).items() if k in fixed}
    order = np.argsort(stage1.losses)[: min(num_refine, len(stage1.losses))]
    points = []
    for i in order:
        u = dict(stage1.flat_model.unravel(jnp.asarray(stage1.final_points[i])))
        u.update(fixed_u)
        points.append(ravel_pytree({k: u[k] for k in fm.site_shapes})[0])
    if num_plain > 0:
        plain = flatten_model(model, model_args, model_kwargs, key=k3, num_inits=num_plain)
        points.extend(list(plain.init_flat))
    res = map_fit(
        model,
        *model_args,
        key=k2,
        num_starts=len(points),
        init_points=jnp.stack(points),
        model_kwargs=model_kwargs,
        **map_kwargs,
    )
    timings = dict(res.timings)
    timings["stage1"] = t1 - t0
    timings["total"] = time.perf_counter() - t0
    return dataclasses.replace(res, timings=timings)
