"""NUTS and HMC sampling (NumPyro) initialised at the MAP, returning ArviZ InferenceData.

Chains start from the MAP point jittered by a fraction of the Laplace standard deviations (in
the unconstrained space), so warm-up begins inside the typical set instead of at a prior draw.
The mass matrix is diagonal or dense and may be initialised from a covariance estimate: the
Laplace covariance of a :class:`~vaelens.infer.MAPResult` or the covariance of an SVI fit (an
InferenceData from :func:`vaelens.infer.svi`); warm-up adaptation then refines it (Stan-style
windows, Hoffman & Gelman 2014, JMLR 15, 1593; Betancourt 2017, arXiv:1701.02434).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import HMC, MCMC, NUTS

from vaelens.infer.convert import to_inference_data
from vaelens.infer.map import MAPResult, map_fit

__all__ = ["nuts", "hmc", "initial_points"]


def initial_points(
    map_result: MAPResult, key: jax.Array, num_chains: int, jitter: float = 0.5
) -> dict[str, jax.Array]:
    """Unconstrained starting points ``(num_chains, ...)`` around the MAP.

    ``x_c = x* + jitter * L eps_c`` with ``L L^T`` the diagonal of the Laplace covariance.
    """
    sd = map_result.sigma_unconstrained
    sd = np.where(np.isfinite(sd), sd, 0.0)
    eps = np.asarray(jax.random.normal(key, (num_chains, len(map_result.x))))
    flat = map_result.x[None, :] + jitter * sd[None, :] * eps
    unravel = map_result.flat_model.unravel
    dtype = jnp.asarray(map_result.x).dtype
    return jax.vmap(unravel)(jnp.asarray(flat, dtype))


def _inverse_mass(
    map_result: MAPResult, init_mass: Any, dense: bool
) -> np.ndarray | None:
    """Initial inverse mass matrix in the flat unconstrained order, or None."""
    if init_mass is None:
        return None
    if isinstance(init_mass, str) and init_mass == "laplace":
        cov = map_result.cov_unconstrained
    elif hasattr(init_mass, "posterior"):  # InferenceData, e.g. from svi(): sample covariance
        cov = _unconstrained_covariance(map_result, init_mass)
    else:
        cov = np.asarray(init_mass, dtype=float)
    if not np.all(np.isfinite(cov)):
        return None
    if cov.ndim == 2 and not dense:
        return np.diag(cov).copy()
    if cov.ndim == 1 and dense:
        return np.diag(cov)
    return cov


def _unconstrained_covariance(map_result: MAPResult, idata: Any) -> np.ndarray:
    """Covariance of the posterior draws of ``idata`` mapped to the unconstrained space."""
    from jax.flatten_util import ravel_pytree
    from numpyro.distributions.transforms import biject_to

    post = idata.posterior
    names = list(map_result.unconstrained)
    tr = _trace_supports(map_result)
    flats = []
    draws = {n: np.asarray(post[n]).reshape((-1, *np.shape(map_result.params[n]))) for n in names}
    n_draws = next(iter(draws.values())).shape[0]
    for i in range(n_draws):
        u = {n: biject_to(tr[n]).inv(jnp.asarray(draws[n][i])) for n in names}
        flats.append(np.asarray(ravel_pytree(u)[0]))
    return np.cov(np.stack(flats), rowvar=False)


def _trace_supports(map_result: MAPResult) -> dict[str, Any]:
    from numpyro import handlers

    tr = handlers.trace(
        handlers.seed(
            handlers.substitute(
                map_result.model, data={k: map_result.params[k] for k in map_result.unconstrained}
            ),
            jax.random.PRNGKey(0),
        )
    ).get_trace(*map_result.model_args, **map_result.model_kwargs)
    return {n: tr[n]["fn"].support for n in map_result.unconstrained}


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
):
    t0 = time.perf_counter()
    k_map, k_init, k_mcmc, k_conv = jax.random.split(key, 4)
    timings: dict[str, float] = {}
    if init is None:
        init = map_fit(model, *model_args, key=k_map, model_kwargs=model_kwargs,
                       **(map_kwargs or {}))
        timings["map"] = init.timings["total"]
    inv_mass = _inverse_mass(init, init_mass, dense_mass)
    params0 = initial_points(init, k_init, num_chains, jitter)

    kernel_cls = NUTS if kernel_name == "nuts" else HMC
    kernel = kernel_cls(
        model,
        dense_mass=dense_mass,
        inverse_mass_matrix=None if inv_mass is None else jnp.asarray(inv_mass),
        **kernel_kwargs,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    extra = ("diverging", "num_steps", "energy", "potential_energy", "accept_prob",
             "adapt_state.step_size")
    t1 = time.perf_counter()
    # one run (warm-up + sampling) = one compilation of the sampler
    mcmc.run(k_mcmc, *model_args, init_params=params0, extra_fields=extra,
             **dict(model_kwargs or {}))
    jax.block_until_ready(mcmc.last_state)
    t3 = time.perf_counter()
    timings["mcmc"] = t3 - t1

    latent = list(init.unconstrained)
    samples = mcmc.get_samples(group_by_chain=True)
    samples = {k: np.asarray(samples[k]) for k in latent}
    ex = mcmc.get_extra_fields(group_by_chain=True)
    num_steps = np.asarray(ex["num_steps"])
    stats = {
        "diverging": np.asarray(ex["diverging"], bool),
        "energy": np.asarray(ex["energy"]),
        "lp": -np.asarray(ex["potential_energy"]),
        "acceptance_rate": np.asarray(ex["accept_prob"]),
        "step_size": np.asarray(ex["adapt_state.step_size"]),
        "n_steps": num_steps,
    }
    if kernel_name == "nuts":
        stats["tree_depth"] = (np.log2(np.maximum(num_steps, 1)).astype(int) + 1)
    idata = to_inference_data(
        model,
        model_args,
        model_kwargs,
        samples,
        key=k_conv,
        sample_stats=stats,
        log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive,
        attrs={},
    )
    t4 = time.perf_counter()
    timings.update(convert=t4 - t3, total=t4 - t0)
    seed = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                      else key).ravel().tolist()
    from vaelens.infer.convert import clean_attrs

    idata.attrs.update(
        clean_attrs(
            {
                "method": kernel_name,
                "num_chains": num_chains,
                "num_warmup": num_warmup,
                "num_samples": num_samples,
                "chain_method": chain_method,
                "dense_mass": dense_mass,
                "init_mass": init_mass if isinstance(init_mass, str | None) else "given",
                "seed": seed,
                "map_loss": init.loss,
                "map_chi2": init.chi2,
                "timing": timings,
            }
        )
    )
    return idata


def nuts(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: Literal["vectorized", "parallel", "sequential"] = "vectorized",
    dense_mass: bool = True,
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
        ``"vectorized"`` (one vmapped program, best on a CPU), ``"parallel"`` (one device per
        chain; on a CPU call ``numpyro.set_host_device_count(n)`` before JAX starts) or
        ``"sequential"``.
    dense_mass
        Dense (True) or diagonal mass matrix.
    init
        A :class:`MAPResult` of the same model and data; computed with ``map_kwargs`` if None.
    init_mass
        Initial inverse mass matrix: ``"laplace"`` (the MAP's Laplace covariance), an
        InferenceData of an SVI fit (covariance of its draws), an explicit array (flat
        unconstrained order) or None (identity).
    jitter
        Chains start at ``x* + jitter * sigma_laplace * N(0, 1)`` (unconstrained space).
    max_tree_depth, target_accept_prob
        NUTS settings.
    progress_bar
        Show NumPyro's progress bar.
    log_likelihood, posterior_predictive
        Include the ``log_likelihood`` / ``posterior_predictive`` groups.
    model_kwargs, map_kwargs
        Keyword arguments of the model and of :func:`map_fit` (when ``init`` is None).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (all latent and deterministic sites), ``sample_stats`` (``diverging``,
        ``tree_depth``, ``n_steps``, ``energy``, ``lp``, ``acceptance_rate``, ``step_size``,
        ``chi2``), ``observed_data``, ``log_likelihood`` and (optionally)
        ``posterior_predictive``; ``attrs`` hold timings per stage (``timing_*`` seconds), the
        seed, the settings and package versions.
    """
    return _run(
        "nuts", model, tuple(model_args), key=key, num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, chain_method=chain_method,
        dense_mass=dense_mass, init=init, init_mass=init_mass, jitter=jitter,
        progress_bar=progress_bar, log_likelihood=log_likelihood,
        posterior_predictive=posterior_predictive, model_kwargs=model_kwargs,
        kernel_kwargs={"max_tree_depth": max_tree_depth,
                       "target_accept_prob": target_accept_prob},
        map_kwargs=map_kwargs,
    )


def hmc(
    model: Callable,
    *model_args: Any,
    key: jax.Array,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    chain_method: Literal["vectorized", "parallel", "sequential"] = "vectorized",
    dense_mass: bool = True,
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
):
    """Static-trajectory HMC; same interface and output as :func:`nuts`.

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
                       "target_accept_prob": target_accept_prob},
        map_kwargs=map_kwargs,
    )
