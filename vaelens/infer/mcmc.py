"""NUTS and HMC sampling (NumPyro) initialised at the MAP, returning ArviZ InferenceData.

The chains run in whitened coordinates ``u`` with ``x = x* + L u``, where ``x*`` is the MAP
point (flat, unconstrained) and ``L L^T`` a covariance estimate: the Laplace covariance of a
:class:`~vaelens.infer.MAPResult` (default) or the covariance of an SVI fit. This is exactly an
initial (dense) inverse mass matrix ``L L^T`` (Neal 2011, Handbook of MCMC, sec. 5.4.1), but
it also makes NumPyro's warm-up adaptation work in units of the posterior width: lens
posteriors span orders of magnitude in scale (an Einstein radius known to 1e-4 of its value
next to latent coordinates known to ~0.5), and Stan-style mass-matrix estimates from a short
warm-up window, regularised towards the identity, would otherwise swamp the narrow directions
and force tiny steps and maximal trees. Chains start at ``u = jitter * N(0, I)``, inside the
typical set, and the diagonal or dense mass matrix is then adapted in Stan-style windows
(Hoffman & Gelman 2014, JMLR 15, 1593; Betancourt 2017, arXiv:1701.02434).

After the warm-up the draws are taken in chunks (``chunk_size`` draws per chain, each chunk
starting from the last sampler state of the previous one, so that the draws do not depend on
the chunk size), optionally written to a checkpoint folder and resumed from it
(:mod:`vaelens.infer.chunked`). Image-valued deterministic sites are summarised by their mean
and standard deviation unless kept per draw (``keep_draws``).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import HMC, MCMC, NUTS

from vaelens.infer._map_result import MAPResult
from vaelens.infer.chunked import (
    MOMENTS_GROUP,
    ResumeError,
    RunningMoments,
    SamplingInterrupted,
    SamplingStore,
)
from vaelens.infer.convert import clean_attrs, to_inference_data
from vaelens.infer.map import map_fit

__all__ = ["nuts", "hmc", "whitening"]


def whitening(map_result: MAPResult, init_mass: Any = "laplace") -> np.ndarray:
    """Matrix ``L`` of the affine map ``x = x* + L u`` in which the chains run.

    ``L L^T`` is the covariance that initialises the geometry: the Laplace covariance
    (``"laplace"``), the covariance of the unconstrained draws of an InferenceData (e.g. from
    :func:`vaelens.infer.svi`), an explicit ``(dim, dim)`` covariance or ``(dim,)`` variances in
    the flat unconstrained order, or None (identity: no preconditioning); ``"gauss-newton"``:
    the inverse of the Fisher information of the likelihood plus the Hessian of the log prior at
    the MAP (:func:`gauss_newton_covariance`).
    """
    dim = len(map_result.x)
    if init_mass is None:
        return np.eye(dim)
    if isinstance(init_mass, str):
        if init_mass not in ("laplace", "gauss-newton"):
            raise ValueError(
                "init_mass must be 'laplace', 'gauss-newton', an InferenceData, an array or "
                f"None, got {init_mass!r}"
            )
        if init_mass == "laplace":
            cov = map_result.cov_unconstrained
        else:
            cov = gauss_newton_covariance(map_result)
    elif hasattr(init_mass, "posterior"):
        cov = _unconstrained_covariance(map_result, init_mass)
        if not np.all(np.isfinite(cov)):
            warnings.warn(
                "the covariance of the given posterior draws is not finite (a diverged SVI "
                "fit?); whitening with the Laplace covariance instead",
                RuntimeWarning,
                stacklevel=3,
            )
            cov = map_result.cov_unconstrained
    else:
        cov = np.asarray(init_mass, dtype=float)
        if cov.ndim == 1:
            cov = np.diag(cov)
    if cov.shape != (dim, dim) or not np.all(np.isfinite(cov)):
        raise ValueError(f"the initial covariance must be finite with shape ({dim}, {dim})")
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    w = np.clip(w, max(float(w.max()), 0.0) * 1e-12 + 1e-300, None)
    return v * np.sqrt(w)


def gauss_newton_covariance(map_result: MAPResult) -> np.ndarray:
    """Gauss-Newton (Fisher) covariance of the flat unconstrained parameters at the MAP.

    The inverse of ``F + H_prior``: ``F`` is the Fisher information of the Normal likelihood
    sites, ``J_mu^T J_mu + 2 J_s^T J_s`` with ``J_mu = d(loc)/dx / scale`` and
    ``J_s = d(log scale)/dx`` over the unmasked values (forward-mode Jacobians), and
    ``H_prior`` the Hessian of the negative log prior (with the log-Jacobians of the
    transforms). Unlike the Hessian of the log posterior it is positive semi-definite
    wherever the likelihood is, so it stays a usable metric where the MAP sits at a saddle
    or in a flat direction (VAE latents).
    """
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    from vaelens.infer.convert import _normal_parts

    fm = map_result.flat_model
    model, args = map_result.model, map_result.model_args
    kwargs = dict(map_result.model_kwargs)
    x = jnp.asarray(map_result.x)
    latent = list(fm.site_shapes)

    def normal_terms(x):
        sites = fm.constrain(fm.unravel(x))
        sub = handlers.substitute(model, data={k: sites[k] for k in latent})
        tr = handlers.trace(handlers.seed(sub, jax.random.PRNGKey(0))).get_trace(*args, **kwargs)
        mus, logs = [], []
        for site in tr.values():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            parts = _normal_parts(site["fn"])
            if parts is None:
                raise ValueError(
                    "init_mass='gauss-newton' needs Normal likelihoods; "
                    f"site {site['name']!r} is not one"
                )
            loc, scale, mask = parts
            shape = jnp.shape(site["value"])
            mask = jnp.broadcast_to(mask, shape)
            loc, scale = jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)
            mus.append(jnp.where(mask, loc / jax.lax.stop_gradient(scale), 0.0).ravel())
            logs.append(jnp.where(mask, jnp.sqrt(2.0) * jnp.log(scale), 0.0).ravel())
        return jnp.concatenate(mus + logs)

    def prior_potential(x):
        hidden = handlers.block(model, hide_fn=lambda site: site.get("is_observed", False))
        return potential_energy(hidden, args, kwargs, fm.unravel(x))

    jac = np.asarray(jax.jit(jax.jacfwd(normal_terms))(x), dtype=np.float64)
    h_prior = np.asarray(jax.jit(jax.hessian(prior_potential))(x), dtype=np.float64)
    h = jac.T @ jac + 0.5 * (h_prior + h_prior.T)
    w, v = np.linalg.eigh(0.5 * (h + h.T))
    floor = max(float(np.max(np.abs(w))) * 1e-12, 1e-300)
    return (v / np.maximum(w, floor)) @ v.T


def _unconstrained_covariance(map_result: MAPResult, idata: Any) -> np.ndarray:
    """Covariance of the posterior draws of ``idata`` mapped to the flat unconstrained space."""
    from jax.flatten_util import ravel_pytree
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to

    names = list(map_result.unconstrained)
    tr = handlers.trace(
        handlers.seed(
            handlers.substitute(map_result.model, data={k: map_result.params[k] for k in names}),
            jax.random.PRNGKey(0),
        )
    ).get_trace(*map_result.model_args, **map_result.model_kwargs)
    post = idata.posterior
    draws = {
        n: jnp.asarray(np.asarray(post[n]).reshape((-1, *np.shape(map_result.params[n]))))
        for n in names
    }

    def to_flat(d):
        return ravel_pytree({n: biject_to(tr[n]["fn"].support).inv(d[n]) for n in names})[0]

    flat = np.asarray(jax.vmap(to_flat)(draws), dtype=np.float64)
    flat = flat[np.all(np.isfinite(flat), axis=1)]
    if flat.shape[0] < 2:
        return np.full((flat.shape[1], flat.shape[1]), np.nan)
    return np.cov(flat, rowvar=False)


def _state_template(kernel_cls, potential_u, kernel_kwargs, dense_mass, num_warmup, u0, key):
    """Structure and shapes of one chain's sampler state (no compilation)."""
    kernel = kernel_cls(potential_fn=potential_u, dense_mass=dense_mass, **kernel_kwargs)
    shape = jax.eval_shape(lambda u: kernel.init(key, num_warmup, u, (), {}), u0[0])
    return jax.tree_util.tree_flatten(shape)


def _state_arrays(state) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves(state)
    return {f"state_{i:03d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}


def _state_from(arrays, template, num_chains: int):
    shapes, treedef = template
    leaves = [arrays.get(f"state_{i:03d}") for i in range(len(shapes))]
    lead = (num_chains,) if num_chains > 1 else ()
    for i, (leaf, ref) in enumerate(zip(leaves, shapes, strict=True)):
        if leaf is None or leaf.shape != lead + tuple(ref.shape):
            raise ResumeError(
                f"the stored sampler state does not match this model (entry {i}: "
                f"{None if leaf is None else leaf.shape} stored, {lead + tuple(ref.shape)} "
                "expected)"
            )
    if f"state_{len(shapes):03d}" in arrays:
        raise ResumeError("the stored sampler state does not match this model")
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(a, r.dtype) for a, r in zip(leaves, shapes, strict=True)]
    )


def _image_sites(fm, x_star) -> dict[str, tuple[int, ...]]:
    """Deterministic sites with two or more dimensions (images) of the flat model."""
    sites = jax.eval_shape(lambda x: fm.constrain(fm.unravel(x)), x_star)
    latent = set(fm.site_shapes)
    return {k: tuple(v.shape) for k, v in sites.items() if k not in latent and len(v.shape) >= 2}


def _run(
    kernel_name: str,
    model: Callable,
    model_args: tuple,
    *,
    key: jax.Array,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    chain_method: str,
    dense_mass: bool,
    init: MAPResult | None,
    init_mass: Any,
    jitter: float,
    progress_bar: bool,
    log_likelihood: bool,
    posterior_predictive: bool,
    model_kwargs: dict | None,
    kernel_kwargs: dict,
    map_kwargs: dict | None,
    chunk_size: int = 100,
    keep_draws: Sequence[str] | bool = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    checkpoint_info: dict | None = None,
):
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint folder of the interrupted run")
    t0 = time.perf_counter()
    k_map, k_init, k_mcmc, k_conv = jax.random.split(key, 4)
    timings: dict[str, float] = {}
    if init is None:
        init = map_fit(model, *model_args, key=k_map, model_kwargs=model_kwargs,
                       **(map_kwargs or {}))
        timings["map"] = init.timings["total"]
    fm = init.flat_model
    dtype = jnp.asarray(init.x).dtype
    key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    seed = np.asarray(key_data).ravel().astype(np.int64)
    fingerprint = {
        "kernel": kernel_name, "num_chains": int(num_chains), "num_warmup": int(num_warmup),
        "dim": int(fm.dim), "dtype": str(np.dtype(dtype)), "seed": seed.tolist(),
        "dense_mass": bool(dense_mass), "jitter": float(jitter),
        "init_mass": init_mass if isinstance(init_mass, str | None) else "given",
        "kernel_kwargs": {k: v for k, v in kernel_kwargs.items()},
    }
    store = SamplingStore(checkpoint) if checkpoint is not None else None
    stored = None
    if resume:
        store.check_settings(fingerprint)
        stored = store.state()
    if stored is not None:
        x_star = jnp.asarray(stored["x_star"], dtype)
        lmat = jnp.asarray(stored["lmat"], dtype)
        if x_star.shape != (fm.dim,) or lmat.shape != (fm.dim, fm.dim):
            raise ResumeError("the stored whitening does not match this model")
    else:
        x_star = jnp.asarray(init.x, dtype)
        lmat = jnp.asarray(whitening(init, init_mass), dtype)
    if store is not None and not resume:
        store.create({**fingerprint, "num_samples": int(num_samples),
                      "chunk_size": int(chunk_size), "info": checkpoint_info or {}})

    def potential_u(u):
        return fm.potential(x_star + lmat @ u)

    u0 = jitter * jax.random.normal(k_init, (num_chains, fm.dim), dtype)
    kernel_cls = NUTS if kernel_name == "nuts" else HMC
    kernel = kernel_cls(potential_fn=potential_u, dense_mass=dense_mass, **kernel_kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=min(int(chunk_size), int(num_samples)),
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    extra = ("diverging", "num_steps", "energy", "potential_energy", "accept_prob",
             "adapt_state.step_size")
    init_params = u0 if num_chains > 1 else u0[0]
    images = _image_sites(fm, x_star)
    if keep_draws is True:
        keep = set(images)
    else:
        keep = set(keep_draws or ())
        unknown = keep - set(images)
        if unknown:
            raise ValueError(
                f"keep_draws: {sorted(unknown)} are not image-valued deterministic sites of the "
                f"model (those are {sorted(images)})"
            )
    accumulate = {k: s for k, s in images.items() if k not in keep}
    moments = {k: RunningMoments(s) for k, s in accumulate.items()}
    t1 = time.perf_counter()
    if stored is not None:
        state = _state_from(
            stored, _state_template(kernel_cls, potential_u, kernel_kwargs, dense_mass,
                                    num_warmup, u0, k_mcmc), num_chains)
        done = int(stored["chunks_done"])
        draws_done = int(stored["draws_done"])
        moments = {k: RunningMoments.from_state(k, stored) for k in accumulate}
        chunks = store.chunks(done)
    else:
        mcmc.warmup(k_mcmc, init_params=init_params, extra_fields=extra)
        state = mcmc.post_warmup_state
        done, draws_done, chunks = 0, 0, []
        if store is not None:
            store.write_state({"x_star": np.asarray(x_star), "lmat": np.asarray(lmat),
                               "chunks_done": np.asarray(0), "draws_done": np.asarray(0),
                               **_state_arrays(state),
                               **{n: v for k, m in moments.items() for n, v in m.state(k).items()}})
    jax.block_until_ready(state)
    timings["warmup"] = time.perf_counter() - t1
    moment_fn = _moment_fn(fm, x_star, lmat, tuple(accumulate)) if accumulate else None
    if getattr(kernel, "_sample_fn", None) is None:  # resumed: the kernel needs its functions
        if chain_method == "vectorized" and num_chains > 1:  # NumPyro's batched kernel
            kernel.init(jax.random.split(k_mcmc, num_chains), num_warmup, u0, (), {})
        else:
            kernel.init(k_mcmc, num_warmup, u0[0], (), {})
    chunk_fns: dict[int, Callable] = {}

    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(num_samples), initial=draws_done, desc="sample (draws per chain)")
    try:
        while draws_done < num_samples:
            n = min(int(chunk_size), int(num_samples) - draws_done)
            if n not in chunk_fns:
                chunk_fns[n] = _chunk_fn(kernel, n, num_chains, chain_method)
            state, (u_chunk, fields) = chunk_fns[n](state)
            chunk = {"u": np.asarray(u_chunk)}
            if num_chains == 1:
                chunk["u"] = chunk["u"][None]
            chunk.update({f"stat_{k}": np.asarray(v).reshape(chunk["u"].shape[:2])
                          for k, v in fields.items()})
            if moment_fn is not None:
                batch = moment_fn(jnp.asarray(chunk["u"]).reshape(-1, fm.dim))
                for k, m in moments.items():
                    m.update(np.asarray(batch[k]))
            chunks.append(chunk)
            done, draws_done = done + 1, draws_done + n
            if store is not None:
                store.write_chunk(done - 1, chunk)
                store.write_state({"x_star": np.asarray(x_star), "lmat": np.asarray(lmat),
                                   "chunks_done": np.asarray(done),
                                   "draws_done": np.asarray(draws_done),
                                   **_state_arrays(state),
                                   **{n_: v for k, m in moments.items()
                                      for n_, v in m.state(k).items()}})
            if bar is not None:
                bar.update(n)
            if on_chunk is not None:
                on_chunk(done, draws_done)
    except KeyboardInterrupt as exc:
        if isinstance(exc, SamplingInterrupted):
            raise
        where = store.folder if store is not None else None
        msg = f"sampling interrupted after {draws_done} of {num_samples} draws per chain"
        msg += (f"; the finished chunks are in {where}" if where is not None
                else " (no checkpoint folder: nothing was kept)")
        raise SamplingInterrupted(msg, where, draws_done, int(num_samples)) from None
    finally:
        if bar is not None:
            bar.close()
    t2 = time.perf_counter()
    timings["mcmc"] = t2 - t1

    u = jnp.asarray(np.concatenate([c["u"] for c in chunks], axis=1)[:, :num_samples])
    xs = x_star[None, None] + jnp.einsum("ij,cdj->cdi", lmat, u)
    latent = list(init.unconstrained)

    def constrain(x):
        out = fm.constrain(fm.unravel(x))
        return {k: out[k] for k in latent}

    flat = jax.jit(jax.vmap(constrain))(xs.reshape(-1, fm.dim))
    samples = {
        k: np.asarray(v).reshape((*u.shape[:2], *np.shape(v)[1:])) for k, v in flat.items()
    }

    def stat(name):
        return np.concatenate([c[f"stat_{name}"] for c in chunks], axis=1)[:, :num_samples]

    num_steps = np.asarray(stat("num_steps"))
    stats = {
        "diverging": np.asarray(stat("diverging"), bool),
        "energy": stat("energy"),
        "lp": -stat("potential_energy"),
        "acceptance_rate": stat("accept_prob"),
        "step_size": stat("adapt_state.step_size"),
        "n_steps": num_steps,
    }
    if kernel_name == "nuts":
        stats["tree_depth"] = np.log2(np.maximum(num_steps, 1)).astype(int) + 1
    idata = to_inference_data(
        model,
        model_args,
        model_kwargs,
        samples,
        key=k_conv,
        sample_stats=stats,
        log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive,
        exclude=tuple(accumulate),
    )
    if moments:
        _add_moments(idata, moments)
    t3 = time.perf_counter()
    timings.update(convert=t3 - t2, total=t3 - t0)
    idata.attrs.update(
        clean_attrs(
            {
                "method": kernel_name,
                "num_chains": num_chains,
                "num_warmup": num_warmup,
                "num_samples": num_samples,
                "chunk_size": chunk_size,
                "resumed": bool(stored is not None),
                "chain_method": chain_method,
                "dense_mass": dense_mass,
                "init_mass": fingerprint["init_mass"],
                "seed": seed,
                "map_loss": init.loss,
                "map_chi2": init.chi2,
                "timing": timings,
            }
        )
    )
    return idata


_FIELDS = ("diverging", "num_steps", "energy", "potential_energy", "accept_prob")


def _chunk_fn(kernel, n: int, num_chains: int, chain_method: str) -> Callable:
    """Compiled ``state -> (state, (u, fields))``: ``n`` transitions of every chain.

    One program per chunk length, held by the caller (NumPyro's ``MCMC.run`` compiles its loop
    anew on every call after ``post_warmup_state``). Each transition draws from the state's
    own random key, so consecutive chunks continue one random stream.
    """

    def one_chain(state):
        def step(s, _):
            s = kernel.sample(s, (), {})
            fields = {k: getattr(s, k) for k in _FIELDS}
            fields["adapt_state.step_size"] = s.adapt_state.step_size
            return s, (s.z, fields)

        return jax.lax.scan(step, state, None, length=n)

    if num_chains == 1:
        return jax.jit(one_chain)
    if chain_method == "vectorized":  # NumPyro's vectorized kernel maps the chains itself

        @jax.jit
        def batched(states):
            state, out = one_chain(states)
            return state, jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), out)

        return batched
    if chain_method == "parallel":
        return jax.pmap(one_chain)
    return jax.jit(lambda states: jax.lax.map(one_chain, states))


def _moment_fn(fm, x_star, lmat, names: tuple[str, ...]):
    """Compiled ``u (n, dim) -> {name: (n, ...)}`` of the image-valued deterministic sites."""
    arrays = fm.arrays

    @jax.jit
    def fn(u, x_star, lmat, arrays):
        def one(ui):
            sites = fm.constrain_with(fm.unravel(x_star + lmat @ ui), arrays)
            return {k: sites[k] for k in names}

        return jax.lax.map(one, u, batch_size=64)

    return lambda u: fn(u, x_star, lmat, arrays)


def _add_moments(idata, moments: dict) -> None:
    import xarray as xr

    data = {}
    for name, m in moments.items():
        dims = ["source_y", "source_x"] if name.startswith("source") else ["y", "x"]
        dims = dims if m.mean.ndim == 2 else [f"{name}_dim_{i}" for i in range(m.mean.ndim)]
        data[f"{name}_mean"] = (dims, m.mean)
        data[f"{name}_std"] = (dims, m.std)
    count = next(iter(moments.values())).count
    ds = xr.Dataset(data, attrs={"num_draws": count, "ddof": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a group outside ArviZ's schema
        idata.add_groups({MOMENTS_GROUP: ds})


def nuts(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: Literal["vectorized", "parallel", "sequential"] = "sequential",
    dense_mass: bool = False,
    adapt_mass_matrix: bool = True,
    init: MAPResult | None = None,
    init_mass: Any = "laplace",
    jitter: float = 0.5,
    max_tree_depth: int = 10,
    target_accept_prob: float = 0.8,
    progress_bar: bool = True,
    log_likelihood: bool = True,
    posterior_predictive: bool = False,
    model_kwargs: dict | None = None,
    map_kwargs: dict | None = None,
    chunk_size: int = 100,
    keep_draws: Sequence[str] | bool = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    checkpoint_info: dict | None = None,
):
    """Sample the posterior of a NumPyro model with NUTS, starting near the MAP.

    Parameters
    ----------
    model, *model_args
        The NumPyro model and its arguments, e.g. ``lens_model, data, spec, decoder``.
    key
        ``jax.random`` key (MAP starts if needed, jitter, sampling, predictive draws).
    num_warmup, num_samples, num_chains
        Warm-up (adaptation) iterations, kept draws per chain, number of chains.
    chain_method
        ``"sequential"`` (default: one compiled sampler run chain after chain; on a CPU this
        beats ``"vectorized"``, whose batched source interpolation costs 2-3x per chain, and
        each chain stops at its own pace), ``"vectorized"`` (one vmapped program; best on an
        accelerator) or ``"parallel"`` (one device per chain; on a CPU call
        ``numpyro.set_host_device_count(n)`` before JAX starts).
    dense_mass
        Adapt a dense (True) or diagonal (False, default) mass matrix in the whitened space.
        The whitening already carries the correlations of the Laplace (or SVI) covariance; a
        dense re-estimate from the short warm-up windows (rank-deficient in ~80 dimensions) is
        usually worse than a diagonal correction.
    adapt_mass_matrix
        Adapt the mass matrix during warm-up (False keeps the whitening metric as it is).
    init
        A :class:`MAPResult` of the same model and data; computed with ``map_kwargs`` if None.
    init_mass
        Covariance that whitens the sampling space (equivalently, the initial inverse mass
        matrix): ``"laplace"`` (the MAP's Laplace covariance), ``"gauss-newton"`` (Fisher
        information plus prior Hessian at the MAP, :func:`gauss_newton_covariance`), an
        InferenceData of an SVI fit (covariance of its draws), an explicit array (flat
        unconstrained order) or None (identity). See :func:`whitening`.
    jitter
        Chains start at ``u = jitter * N(0, I)`` in whitened units (``x* + jitter L eps``).
    max_tree_depth, target_accept_prob
        NUTS settings.
    progress_bar
        Show NumPyro's progress bar.
    log_likelihood, posterior_predictive
        Include the ``log_likelihood`` / ``posterior_predictive`` groups.
    model_kwargs, map_kwargs
        Keyword arguments of the model and of :func:`map_fit` (when ``init`` is None).
    chunk_size
        Draws per chain of each compiled sampling loop. Between chunks the draws are moved to
        the host (and written to ``checkpoint``), the progress bar advances and Ctrl-C takes
        effect; the draws do not depend on it.
    keep_draws
        Image-valued deterministic sites (``"source"``, ``"model_image"``) stored per draw;
        True: all of them. The others are not stored per draw: their per-pixel mean and
        standard deviation over all draws are accumulated chunk by chunk into the
        ``posterior_moments`` group (:func:`vaelens.infer.chunked.image_moments`).
    checkpoint
        Folder whose ``sampling/`` sub-folder receives every finished chunk and the sampler
        state after it (:mod:`vaelens.infer.chunked`).
    resume
        Continue the interrupted run recorded in ``checkpoint`` (same model, data, key and
        settings; the draws are those of an uninterrupted run). A record that holds no
        finished warm-up starts again from the beginning.
    on_chunk
        Called as ``on_chunk(chunks_done, draws_done)`` after each chunk (and its checkpoint).
    checkpoint_info
        JSON-serialisable entries stored with the checkpoint's settings (e.g. how to rerun).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (all latent and deterministic sites), ``sample_stats`` (``diverging``,
        ``tree_depth``, ``n_steps``, ``energy``, ``lp``, ``acceptance_rate``, ``step_size``,
        ``chi2``), ``observed_data``, ``log_likelihood``, (optionally)
        ``posterior_predictive`` and ``posterior_moments`` (see ``keep_draws``); ``attrs``
        hold timings per stage (``timing_*`` seconds), the
        seed, the settings and package versions.
    """
    return _run(
        "nuts", model, tuple(model_args), key=key, num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, chain_method=chain_method,
        dense_mass=dense_mass, init=init, init_mass=init_mass, jitter=jitter,
        progress_bar=progress_bar, log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive, model_kwargs=model_kwargs,
        kernel_kwargs={"max_tree_depth": max_tree_depth,
                       "target_accept_prob": target_accept_prob,
                       "adapt_mass_matrix": adapt_mass_matrix},
        map_kwargs=map_kwargs, chunk_size=chunk_size, keep_draws=keep_draws,
        checkpoint=checkpoint, resume=resume, on_chunk=on_chunk, checkpoint_info=checkpoint_info,
    )


def hmc(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: Literal["vectorized", "parallel", "sequential"] = "sequential",
    dense_mass: bool = False,
    adapt_mass_matrix: bool = True,
    init: MAPResult | None = None,
    init_mass: Any = "laplace",
    jitter: float = 0.5,
    num_steps: int | None = None,
    trajectory_length: float = 2 * np.pi,
    target_accept_prob: float = 0.8,
    progress_bar: bool = True,
    log_likelihood: bool = True,
    posterior_predictive: bool = False,
    model_kwargs: dict | None = None,
    map_kwargs: dict | None = None,
    chunk_size: int = 100,
    keep_draws: Sequence[str] | bool = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    checkpoint_info: dict | None = None,
):
    """Static-trajectory HMC; same interface (chunks, checkpoint, resume) and output as
    :func:`nuts`.

    ``num_steps`` leapfrog steps per trajectory, or a fixed ``trajectory_length`` (in units of
    the mass-matrix-whitened posterior) with an adapted step size when ``num_steps`` is None.
    """
    return _run(
        "hmc", model, tuple(model_args), key=key, num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, chain_method=chain_method,
        dense_mass=dense_mass, init=init, init_mass=init_mass, jitter=jitter,
        progress_bar=progress_bar, log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive, model_kwargs=model_kwargs,
        kernel_kwargs={"num_steps": num_steps, "trajectory_length": trajectory_length,
                       "target_accept_prob": target_accept_prob,
                       "adapt_mass_matrix": adapt_mass_matrix},
        map_kwargs=map_kwargs, chunk_size=chunk_size, keep_draws=keep_draws,
        checkpoint=checkpoint, resume=resume, on_chunk=on_chunk, checkpoint_info=checkpoint_info,
    )
