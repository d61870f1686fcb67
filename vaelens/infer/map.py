"""Maximum a posteriori fit: multi-start BFGS / L-BFGS and the Laplace approximation.

The negative log joint density ``U(x)`` of the model over its unconstrained parameters ``x``
(see :mod:`vaelens.infer.flat`) is minimised from ``num_starts`` prior draws by one compiled
program (:class:`~vaelens.infer._multistart.MultiStart`; the data are its argument): the
optimiser is mapped over the starts (``lax.map`` by default, ``jax.vmap`` with
``vectorize=True``), so the model is compiled once whatever the number of starts. The best
start defines the MAP point ``x*``; the Laplace approximation is the Gaussian ``N(x*, H^-1)``
with ``H`` the Hessian of ``U`` at ``x*`` (:mod:`vaelens.infer._laplace`), reported for the
constrained and derived parameters ``f(x)`` by the delta method ``J H^-1 J^T`` with
``J = df/dx``.

Note that the optimum is the mode of the density of the *unconstrained* parameters (it includes
the log-Jacobians of the transforms, as in NumPyro's ``AutoLaplaceApproximation``), the natural
centre of a Gaussian approximation in that space.

:func:`map_fit` and :func:`staged_map_fit` share their set-up (:func:`_setup`) and their
finish (:func:`_finish`: best start, Laplace covariance, chi^2, :class:`MAPResult`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.infer._laplace import fd_jacobian, laplace_covariance
from vaelens.infer._map_result import MAPResult
from vaelens.infer._multistart import MultiStart
from vaelens.infer._solvers import bfgs_solver, lbfgs_solver
from vaelens.infer.flat import (
    FlatModel,
    flat_labels,
    flatten_model,
    is_summary_site,
    summary_vector,
)

__all__ = [
    "MAPResult",
    "map_fit",
    "staged_map_fit",
    "laplace_covariance",
    "bfgs_solver",
    "lbfgs_solver",
]


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
    if init_points is not None:
        init_points = np.asarray(init_points)
        if init_points.ndim != 2:
            raise ValueError("init_points must have shape (n, dim)")
    num_rows = num_starts if init_points is None else init_points.shape[0]
    fm, prog, times = _setup(
        model, model_args, model_kwargs, key=key, num_inits=num_starts, init_values=init_values,
        method=method, max_iter=max_iter, gtol=gtol, dtol=dtol, num_rows=num_rows,
        devices=devices, vectorize=vectorize, num_starts=num_starts, init_points=init_points,
    )
    x0 = fm.init_flat if init_points is None else np.asarray(init_points, fm.dtype)
    out = prog.run(x0, max_iter)
    times["optimize"] = time.perf_counter()
    return _finish(prog, out, model, model_args, model_kwargs, laplace=laplace,
                   hessian=hessian, evaluate=evaluate, times=times)


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
    num_refine = min(num_refine, num_starts)
    fm, prog, times = _setup(
        model, model_args, model_kwargs, key=key, num_inits=num_starts + num_plain,
        init_values=None, method=method, max_iter=max_iter, gtol=gtol, dtol=dtol,
        num_rows=max(num_starts, num_refine + num_plain), devices=devices, vectorize=vectorize,
        num_starts=num_starts,
    )
    fixed_u = fm.unconstrain(fixed)
    # stage-1 starts: prior draws with the fixed sites replaced; mask of the free coordinates
    inits = np.asarray(fm.init_flat)
    starts = inits[:num_starts].copy()
    mask = np.ones(fm.dim, bool)
    for name, sl in fm.site_slices.items():
        if name in fixed_u:
            starts[:, sl] = np.ravel(np.broadcast_to(fixed_u[name], fm.site_shapes[name]))
            mask[sl] = False
    out1 = prog.run(starts, max_iter, mask, dtol=max(stage1_dtol, dtol))
    times["stage1"] = time.perf_counter()
    losses1 = np.where(np.isfinite(out1[1]), out1[1], np.inf)
    order = np.argsort(losses1, kind="stable")[:num_refine]
    points = np.concatenate([out1[0][order], inits[num_starts:]])
    out2 = prog.run(points, max_iter)
    times["optimize"] = time.perf_counter()
    return _finish(prog, out2, model, model_args, model_kwargs, laplace=laplace,
                   hessian=hessian, evaluate=evaluate, times=times)


def _check_map_args(method, num_starts, devices):
    if method not in ("bfgs", "lbfgs"):
        raise ValueError(f"method must be 'bfgs' or 'lbfgs', got {method!r}")
    if num_starts < 1:
        raise ValueError("num_starts must be positive")
    if devices is not None and int(devices) < 1:
        raise ValueError("devices must be positive")


def _setup(
    model, model_args, model_kwargs, *, key, num_inits, init_values, method, max_iter, gtol,
    dtol, num_rows, devices, vectorize, num_starts, init_points=None,
) -> tuple[FlatModel, MultiStart, dict[str, float]]:
    """Checked arguments, the flat model with its prior draws and the compiled optimiser.

    Returns ``(flat model, program, times)`` with ``times`` holding the ``start`` and
    ``compile`` (end of the set-up) clock readings.
    """
    _check_map_args(method, num_starts, devices)
    t0 = time.perf_counter()
    fm = flatten_model(model, model_args, model_kwargs, key=key, num_inits=num_inits,
                       init_values=init_values)
    if init_points is not None and np.shape(init_points)[1] != fm.dim:
        raise ValueError(f"init_points must have shape (n, {fm.dim})")
    prog = MultiStart(fm, method, max_iter, gtol, dtol, num_rows, devices, vectorize)
    return fm, prog, {"start": t0, "compile": time.perf_counter()}


def _summary_jacobian(fm: FlatModel, x: np.ndarray) -> np.ndarray:
    """Jacobian ``d summary / d x`` at ``x`` by forward-mode autodiff (one compiled program,
    the data as its argument; only the summary sites are returned, so the likelihood is dead
    code)."""

    def derived(x, arrays):
        return summary_vector(fm.constrain_with(fm.unravel(x), arrays))

    return np.asarray(jax.jit(jax.jacfwd(derived))(jnp.asarray(x), fm.arrays), np.float64)


def _summary_rows(sites: dict[str, np.ndarray]) -> np.ndarray:
    """The summary vectors ``(m, k)`` of a batch of site dictionaries (leading axis ``m``)."""
    names = [n for n in sorted(sites) if is_summary_site(np.asarray(sites[n])[0])]
    m = np.shape(sites[names[0]])[0] if names else 0
    parts = [np.asarray(sites[n], np.float64).reshape(m, -1) for n in names]
    return np.concatenate(parts, axis=1) if parts else np.zeros((m, 0))


def _finish(
    prog: MultiStart,
    out: tuple[np.ndarray, ...],
    model: Callable,
    model_args: tuple,
    model_kwargs: dict | None,
    *,
    laplace: bool,
    hessian: str,
    evaluate: bool,
    times: dict[str, float],
) -> MAPResult:
    """Best start, Laplace covariance, chi^2 and the :class:`MAPResult` of a multi-start run.

    ``times``: clock readings ``start``, ``compile``, ``optimize`` (and ``stage1``).
    """
    fm, method = prog.fm, prog.method
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
        at_points: dict[str, Any] = {}

        def gradients(points):
            # the compiled program evaluates the gradients (and, with BFGS, the sites) at the
            # finite-difference points: no second compilation of the model
            g, sites = prog.gradients(points)
            at_points.update(points=points, sites=sites)
            return g

        cov_u, n_bad = laplace_covariance(
            fm.potential, jnp.asarray(x_best), method=hessian, steps=steps,
            devices=prog.n_dev, gradients=gradients,
        )
        if n_bad:
            warnings.warn(
                f"Laplace approximation: the Hessian at the MAP has {n_bad} non-positive "
                "eigenvalue(s): the optimum is not a strict minimum (a saddle or flat "
                "directions, usually of the latent code z); their magnitudes were used, so the "
                "Laplace errors of the parameters along them are unreliable. Refit in float64, "
                "restart from this fit, or sample the posterior (NUTS)",
                RuntimeWarning,
                stacklevel=3,
            )
        if at_points.get("sites") is not None:
            # delta method with the central differences of the sites at the same points
            jac = fd_jacobian(at_points["points"], _summary_rows(at_points["sites"]))
        else:
            jac = _summary_jacobian(fm, x_best)
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
