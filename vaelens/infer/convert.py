"""Conversion of parameter draws to ArviZ InferenceData (one code path for MAP, SVI and MCMC).

:func:`to_inference_data` takes constrained draws of the latent sites with shape
``(chain, draw, ...)`` and, in one vectorised pass over the model per chunk of draws, evaluates

* the deterministic sites (``e1``, ``e2``, the decoded ``source``, the ``model_image``...),
* the pointwise log-likelihood of every observed site (``log_likelihood`` group),
* the chi^2 of the observed sites (``sample_stats.chi2``) for Normal likelihoods,
* optionally a posterior-predictive draw of every observed site.

Dimensions are named: ``z`` -> ``latent``; ``(64, 64)`` images -> ``source_y, source_x``;
observed-size images -> ``y, x``.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from collections.abc import Callable, Mapping
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.primitives import Messenger

from vaelens.infer._args import with_split_args

__all__ = [
    "to_inference_data",
    "evaluate_draws",
    "package_versions",
    "chi2_of",
    "clean_attrs",
]


class _Unobserve(Messenger):
    """Turn observed sample sites into latent ones so that they are drawn (predictive)."""

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg.get("is_observed"):
            msg["value"] = None
            msg["is_observed"] = False


def _normal_parts(fn: Any) -> tuple[Any, Any, Any] | None:
    """``(loc, scale, mask)`` of a (masked / independent) Normal distribution, else None."""
    mask = True
    while True:
        if isinstance(fn, dist.MaskedDistribution):
            mask = jnp.logical_and(mask, fn._mask)
            fn = fn.base_dist
        elif isinstance(fn, dist.Independent):
            fn = fn.base_dist
        else:
            break
    if isinstance(fn, dist.Normal):
        return fn.loc, fn.scale, mask
    return None


def chi2_of(site: dict) -> jax.Array:
    """chi^2 = sum over unmasked pixels of ``((obs - loc) / scale)^2`` for a Normal site."""
    parts = _normal_parts(site["fn"])
    if parts is None:
        return jnp.nan
    loc, scale, mask = parts
    r2 = ((site["value"] - loc) / scale) ** 2
    return jnp.sum(jnp.where(jnp.broadcast_to(mask, r2.shape), r2, 0.0))


def num_observed_of(site: dict) -> jax.Array:
    """Number of unmasked values of an observed site (all of them unless it is a masked
    Normal)."""
    parts = _normal_parts(site["fn"])
    shape = jnp.shape(site["value"])
    mask = True if parts is None else parts[2]
    return jnp.sum(jnp.broadcast_to(mask, shape), dtype=jnp.int32)


def _one_draw(model, args, kwargs, latent, key, predictive: bool, exclude=()):
    tr = handlers.trace(handlers.seed(handlers.substitute(model, data=latent), key)).get_trace(
        *args, **kwargs
    )
    det, ll, chi2 = {}, {}, {}
    for name, site in tr.items():
        if site["type"] == "deterministic":
            if name not in exclude:
                det[name] = site["value"]
        elif site["type"] == "sample" and site["is_observed"]:
            ll[name] = site["fn"].log_prob(site["value"])
            chi2[name] = chi2_of(site)
    pp = {}
    if predictive:
        tr_pp = handlers.trace(
            handlers.seed(_Unobserve(handlers.substitute(model, data=latent)), key)
        ).get_trace(*args, **kwargs)
        pp = {name: tr_pp[name]["value"] for name in ll}
    return det, ll, chi2, pp


def evaluate_draws(
    model: Callable,
    model_args: tuple,
    model_kwargs: Mapping | None,
    latents: Mapping[str, Any],
    *,
    key: jax.Array,
    predictive: bool = False,
    chunk_size: int = 200,
    exclude: tuple[str, ...] = (),
):
    """Deterministic sites, pointwise log-likelihoods, chi^2 and predictive draws.

    Parameters
    ----------
    latents
        Constrained latent sample sites, each with one leading draw axis ``(n, ...)``.
    exclude
        Deterministic sites left out (not computed, not returned).

    Returns
    -------
    det, loglik, chi2, pred : dict of numpy arrays with leading axis ``n``
    """
    n = int(np.shape(next(iter(latents.values())))[0])
    keys = jax.random.split(key, n)

    def run(arrays, static):
        # the data enter the compiled program as an argument
        arrays = [jnp.asarray(a) for a in arrays]

        @jax.jit
        def batch(lat, keys, arrays):
            args, kwargs = static.merge(arrays)
            return jax.vmap(
                lambda la, k: _one_draw(model, args, kwargs, la, k, predictive, exclude)
            )(lat, keys)

        outs = []
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            lat = {k: jnp.asarray(v)[start:stop] for k, v in latents.items()}
            k_ = keys[start:stop]
            if stop - start < chunk_size and n > chunk_size:  # pad to avoid a recompilation
                pad = chunk_size - (stop - start)
                lat = {k: jnp.concatenate([v, jnp.repeat(v[-1:], pad, 0)]) for k, v in lat.items()}
                k_ = jnp.concatenate([k_, jnp.repeat(k_[-1:], pad, 0)])
            res = jax.device_get(batch(lat, k_, arrays))
            outs.append(jax.tree_util.tree_map(lambda a, m=stop - start: np.asarray(a)[:m], res))
        return outs

    outs = with_split_args(run, model_args, model_kwargs)
    det, ll, chi2, pp = (
        {k: np.concatenate([o[i][k] for o in outs]) for k in outs[0][i]} for i in range(4)
    )
    return det, ll, chi2, pp


#: The packages whose versions shape a result.
RESULT_PACKAGES = ("vaelens", "jax", "jaxlib", "numpyro", "flax", "optax", "arviz", "numpy")


def package_versions(packages: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, str]:
    """Python's and the installed versions of ``packages`` (``"missing"`` if absent)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _attr_value(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return int(v)
    if isinstance(v, str | int | float | np.integer | np.floating):
        return v
    arr = np.asarray(v) if isinstance(v, list | tuple | np.ndarray | jax.Array) else None
    if arr is not None and arr.ndim == 1 and np.issubdtype(arr.dtype, np.number):
        return arr
    return json.dumps(v, default=str)


def clean_attrs(attrs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """netCDF-safe attributes: nested dicts become ``prefix_key`` entries, bools ints, numeric
    sequences arrays, anything else a JSON string."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            out.update(clean_attrs(v, f"{prefix}{k}_"))
        else:
            out[f"{prefix}{k}"] = _attr_value(v)
    return out


def _dims_for(name: str, shape: tuple[int, ...], obs_shape: tuple[int, ...] | None) -> list[str]:
    """Dimension names of one variable's event shape."""
    if name == "z" and len(shape) == 1:
        return ["latent"]
    if len(shape) == 2 and obs_shape is not None and tuple(shape) == tuple(obs_shape):
        return ["y", "x"]
    if len(shape) == 2 and name.startswith("source"):
        return ["source_y", "source_x"]
    return [f"{name}_dim_{i}" for i in range(len(shape))]


def to_inference_data(
    model: Callable,
    model_args: tuple,
    model_kwargs: Mapping | None,
    samples: Mapping[str, Any],
    *,
    key: jax.Array,
    sample_stats: Mapping[str, Any] | None = None,
    log_likelihood: bool = True,
    posterior_predictive: bool = False,
    attrs: Mapping[str, Any] | None = None,
    chunk_size: int = 200,
    exclude: tuple[str, ...] = (),
) -> az.InferenceData:
    """Build an InferenceData from draws of the latent sites.

    Parameters
    ----------
    model, model_args, model_kwargs
        The NumPyro model and its (observed) arguments.
    samples
        Constrained latent sample sites with leading ``(chain, draw)`` axes. Deterministic sites
        present here are recomputed.
    key
        ``jax.random`` key of the posterior-predictive draws.
    sample_stats
        Per-draw sampler statistics ``(chain, draw)`` (diverging, energy, tree_depth, ...).
    log_likelihood
        Store the pointwise log-likelihood of every observed site.
    posterior_predictive
        Draw each observed site once per draw (``posterior_predictive`` group).
    attrs
        Extra global attributes (timings, seed, method); package versions are always added.
    exclude
        Deterministic sites not stored per draw (e.g. ``("source", "model_image")``, whose
        moments a sampler accumulates instead).

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``sample_stats`` (with ``chi2`` and ``lp`` where known),
        ``observed_data``, and ``log_likelihood`` / ``posterior_predictive`` when asked.
    """
    shape2 = np.shape(next(iter(samples.values())))[:2]
    n = int(np.prod(shape2))
    flat = {k: np.asarray(v).reshape((n, *np.shape(v)[2:])) for k, v in samples.items()}
    det, ll, chi2, pp = evaluate_draws(
        model, model_args, model_kwargs, flat, key=key, predictive=posterior_predictive,
        chunk_size=chunk_size, exclude=tuple(exclude),
    )

    def unflat(a):
        return np.asarray(a).reshape((*shape2, *np.shape(a)[1:]))

    # observed values from one trace of the model
    tr = handlers.trace(
        handlers.seed(handlers.substitute(model, data={k: v[0] for k, v in flat.items()}), key)
    ).get_trace(*model_args, **dict(model_kwargs or {}))
    observed = {
        name: np.asarray(site["value"])
        for name, site in tr.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    obs_shape = next(iter(observed.values())).shape if observed else None

    posterior = {k: unflat(v) for k, v in flat.items()}
    posterior.update({k: unflat(v) for k, v in det.items()})
    dims = {k: _dims_for(k, np.shape(v)[2:], obs_shape) for k, v in posterior.items()}
    for name, v in observed.items():
        dims[name] = _dims_for(name, v.shape, obs_shape)
    stats = {k: np.asarray(v) for k, v in (sample_stats or {}).items()}
    for name, v in chi2.items():
        stats["chi2" if len(chi2) == 1 else f"chi2_{name}"] = unflat(v)

    groups: dict[str, Any] = {
        "posterior": posterior,
        "sample_stats": stats,
        "observed_data": observed,
    }
    if log_likelihood:
        groups["log_likelihood"] = {k: unflat(v).astype(np.float32) for k, v in ll.items()}
    if posterior_predictive:
        groups["posterior_predictive"] = {k: unflat(v) for k, v in pp.items()}
    all_attrs = {"inference_library": "numpyro", **package_versions()}
    all_attrs.update(clean_attrs(attrs or {}))
    idata = az.from_dict(**groups, dims=dims, attrs=all_attrs)
    return idata
