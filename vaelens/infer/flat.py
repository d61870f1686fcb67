"""A NumPyro model seen as a function of one flat vector of unconstrained parameters.

:func:`flatten_model` wraps :func:`numpyro.infer.util.initialize_model` once: the returned
:class:`FlatModel` holds a pure ``potential(x)`` (negative log joint density in unconstrained
space, including the log-Jacobians of the constraining transforms), the maps between the flat
vector and the site dictionaries, and the constraining ``postprocess`` that also evaluates the
deterministic sites. Every optimiser and sampler of :mod:`vaelens.infer` works on it, so the
model is traced once and the potential compiled once.

The flat order is that of :func:`jax.flatten_util.ravel_pytree` on the unconstrained site
dictionary (sites sorted by name), the same order NumPyro uses for a dense mass matrix and for
the ``AutoMultivariateNormal`` guide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.initialization import init_to_sample
from numpyro.infer.util import initialize_model

__all__ = ["FlatModel", "flatten_model", "flat_labels", "is_summary_site"]


class FlatModel(NamedTuple):
    """A model flattened to one unconstrained vector.

    Attributes
    ----------
    potential
        ``x -> -log p(x, data)`` for a flat unconstrained ``x`` (pure, jit-able).
    unravel
        Flat vector -> dictionary of unconstrained sample-site values.
    constrain
        Dictionary of unconstrained values -> constrained sample sites plus deterministic sites.
    init_flat
        ``(num_inits, dim)`` initial points (prior draws by default).
    dim
        Number of unconstrained parameters.
    site_shapes
        Unconstrained shape of every latent sample site, in flat order.
    """

    potential: Callable[[jax.Array], jax.Array]
    unravel: Callable[[jax.Array], dict]
    constrain: Callable[[dict], dict]
    init_flat: jax.Array
    dim: int
    site_shapes: dict[str, tuple[int, ...]]


def flatten_model(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    key: jax.Array,
    num_inits: int = 1,
    init_strategy: Callable = init_to_sample,
) -> FlatModel:
    """Trace ``model`` once and return its flat unconstrained view.

    Parameters
    ----------
    model, model_args, model_kwargs
        The NumPyro model and its arguments (held fixed).
    key
        ``jax.random`` key of the initial draws.
    num_inits
        Number of initial points drawn with ``init_strategy`` (default: prior draws).
    init_strategy
        A NumPyro init strategy (``init_to_sample``, ``init_to_median``, ``init_to_value``...).
    """
    keys = jax.random.split(key, num_inits)
    info = initialize_model(
        keys if num_inits > 1 else keys[0],
        model,
        init_strategy=init_strategy,
        model_args=tuple(model_args),
        model_kwargs=dict(model_kwargs or {}),
    )
    z = info.param_info.z
    if num_inits == 1:
        z = jax.tree_util.tree_map(lambda a: a[None], z)
    first = jax.tree_util.tree_map(lambda a: a[0], z)
    flat0, unravel = ravel_pytree(first)
    init_flat = jax.vmap(lambda d: ravel_pytree(d)[0])(z)
    potential_fn = info.potential_fn

    def potential(x: jax.Array) -> jax.Array:
        return potential_fn(unravel(x))

    shapes = {k: tuple(np.shape(v)) for k, v in sorted(first.items())}
    return FlatModel(
        potential=potential,
        unravel=unravel,
        constrain=info.postprocess_fn,
        init_flat=init_flat,
        dim=int(flat0.shape[0]),
        site_shapes=shapes,
    )


def is_summary_site(value: Any) -> bool:
    """True for sites summarised per parameter (scalars and vectors such as ``z``).

    Images (``source``, ``model_image``; two or more dimensions) are excluded.
    """
    return jnp.ndim(value) <= 1


def flat_labels(values: dict[str, Any]) -> list[str]:
    """Labels ``name`` or ``name[i]`` of the flattened summary sites of ``values`` (sorted)."""
    labels = []
    for name in sorted(values):
        v = values[name]
        if not is_summary_site(v):
            continue
        if jnp.ndim(v) == 0:
            labels.append(name)
        else:
            labels += [f"{name}[{i}]" for i in range(jnp.shape(v)[0])]
    return labels


def summary_vector(values: dict[str, Any]) -> jax.Array:
    """Flatten the summary sites of ``values`` in the order of :func:`flat_labels`."""
    parts = [jnp.ravel(values[n]) for n in sorted(values) if is_summary_site(values[n])]
    return jnp.concatenate(parts) if parts else jnp.zeros(0)
