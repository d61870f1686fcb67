"""A NumPyro model seen as a function of one flat vector of unconstrained parameters.

:func:`flatten_model` traces the model once (without compiling anything); the returned
:class:`FlatModel` holds a pure ``potential(x)`` (negative log joint density in unconstrained
space, including the log-Jacobians of the constraining transforms), the maps between the flat
vector and the site dictionaries, and the constraining ``postprocess`` that also evaluates the
deterministic sites. Every optimiser and sampler of :mod:`vaelens.infer` works on it, so the
model is traced once and the potential compiled once.

The model's array arguments (the data: :class:`vaelens.data.ImageData` is a pytree) are kept
apart (:attr:`FlatModel.arrays`), and the ``*_with`` functions take them as an argument, so
compiled programs receive the data as arguments instead of embedding them as constants.

The flat order is that of :func:`jax.flatten_util.ravel_pytree` on the unconstrained site
dictionary (sites sorted by name), the same order NumPyro uses for a dense mass matrix and for
the ``AutoMultivariateNormal`` guide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import constrain_fn, log_density, potential_energy

from vaelens.infer._args import with_split_args

__all__ = ["FlatModel", "flatten_model", "flat_labels", "is_summary_site"]


@dataclasses.dataclass(frozen=True, eq=False)
class FlatModel:
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
    potential_aux
        ``x -> (potential(x), aux)``: the same potential and, from the same evaluation of the
        model, ``aux = {"chi2": ..., "num_observed": ..., "sites": ...}``: the chi^2 of its
        observed Normal sites (summed over unmasked values; NaN for other likelihoods), the
        number of unmasked observed values, and the constrained latent and deterministic
        sites (what ``constrain(unravel(x))`` returns). Lets an optimiser report its optimum
        without compiling the model a second time.
    unconstrain
        Dictionary of constrained values of some latent sites -> their unconstrained values.
    dtype
        Floating dtype of the flat vector.
    arrays
        The array leaves of the model's arguments (the data), as device arrays.
    potential_with, potential_aux_with, constrain_with
        :attr:`potential`, :attr:`potential_aux` and :attr:`constrain` with the arrays as
        their last argument, ``potential_with(x, arrays)``: compiled programs call these with
        :attr:`arrays` as an argument (the functions without ``_with`` close over them, so a
        program that traces them embeds the data as constants).
    """

    potential: Callable[[jax.Array], jax.Array]
    unravel: Callable[[jax.Array], dict]
    constrain: Callable[[dict], dict]
    init_flat: Any = dataclasses.field(repr=False)
    dim: int
    site_shapes: dict[str, tuple[int, ...]]
    potential_aux: Callable[[jax.Array], tuple[jax.Array, dict]]
    unconstrain: Callable[[dict], dict]
    dtype: Any
    arrays: list = dataclasses.field(repr=False, default_factory=list)
    potential_with: Callable = dataclasses.field(repr=False, default=None)
    potential_aux_with: Callable = dataclasses.field(repr=False, default=None)
    constrain_with: Callable = dataclasses.field(repr=False, default=None)

    @property
    def site_slices(self) -> dict[str, slice]:
        """Slice of the flat vector that holds each latent site (flat order)."""
        out, i = {}, 0
        for name, shape in self.site_shapes.items():
            n = int(np.prod(shape, dtype=int))
            out[name] = slice(i, i + n)
            i += n
        return out

    def unravel_numpy(self, x) -> dict[str, np.ndarray]:
        """:attr:`unravel` in NumPy (host arrays; no JAX dispatch)."""
        x = np.asarray(x)
        return {
            name: x[..., sl].reshape(x.shape[:-1] + tuple(self.site_shapes[name]))
            for name, sl in self.site_slices.items()
        }


def flatten_model(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    *,
    key: jax.Array,
    num_inits: int = 1,
    init_values: dict[str, Any] | None = None,
) -> FlatModel:
    """Trace ``model`` once and return its flat unconstrained view.

    The ``num_inits`` starting points are prior draws (one vmapped, jitted pass over the prior
    part of the model, with the data as an argument; the likelihood is dead code there and is
    not compiled).

    Parameters
    ----------
    model, model_args, model_kwargs
        The NumPyro model and its arguments (held fixed).
    key
        ``jax.random`` key of the trace and of the initial draws.
    num_inits
        Number of initial points.
    init_values
        Constrained values that replace the prior draws of some sites in every initial point
        (e.g. ``{"z": jnp.zeros(64)}``).
    """
    init_values = {k: jnp.asarray(v) for k, v in (init_values or {}).items()}
    found: dict[str, Any] = {}

    def draw(k, arrays, static):
        args, kwargs = static.merge(arrays)
        tr = handlers.trace(handlers.seed(model, k)).get_trace(*args, **kwargs)
        out = {}
        for name, site in tr.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if site["fn"].support.is_discrete:
                raise ValueError(f"discrete latent site {name!r} is not supported")
            found[name] = (site["fn"].support, len(site["fn"].event_shape))
            value = init_values.get(name, site["value"])
            out[name] = biject_to(site["fn"].support).inv(value)
        return out

    # jit + vmap: the likelihood does not feed the returned values, so it is removed as dead
    # code and this compiles only the prior part of the model. Tracing it (lower) finds the
    # sites and the flat layout.
    layout: dict[str, Any] = {}

    def draw_flat(k, arrays, static):
        flat, layout["unravel"] = ravel_pytree(draw(k, arrays, static))
        return flat

    keys = jax.random.split(key, num_inits)

    def lower(arrays, static):
        arrays = [jnp.asarray(a) for a in arrays]
        found.clear()
        fn = jax.jit(jax.vmap(lambda k, a: draw_flat(k, a, static), in_axes=(0, None)))
        return fn.lower(keys, arrays), arrays, static

    lowered, arrays, static = with_split_args(lower, model_args, model_kwargs)
    if not found:
        raise ValueError("the model has no latent sample sites")
    unknown = set(init_values) - set(found)
    if unknown:
        raise ValueError(f"init_values for unknown sites: {sorted(unknown)}")
    unravel = layout["unravel"]
    out_info = lowered.out_info
    dim, dtype = int(out_info.shape[1]), out_info.dtype
    first = jax.eval_shape(unravel, jax.ShapeDtypeStruct((dim,), dtype))

    inits = lowered.compile()(keys, arrays)

    def potential_with(x: jax.Array, arrays: list) -> jax.Array:
        args, kwargs = static.merge(arrays)
        return potential_energy(model, args, kwargs, unravel(x))

    transforms = {name: biject_to(support) for name, (support, _) in found.items()}

    def potential_aux_with(x: jax.Array, arrays: list) -> tuple[jax.Array, dict]:
        # numpyro's potential_energy written out with public functions, keeping the trace:
        # log p(constrained values) + log|det J| of the constraining transforms
        from vaelens.infer.convert import chi2_of, num_observed_of

        args, kwargs = static.merge(arrays)
        u = unravel(x)
        c = {k: transforms[k](v) for k, v in u.items()}
        log_joint, tr = log_density(model, args, kwargs, c)
        for k, v in u.items():
            log_det = transforms[k].log_abs_det_jacobian(v, c[k])
            log_joint = log_joint + jnp.sum(log_det)
        observed = [s for s in tr.values() if s["type"] == "sample" and s["is_observed"]]
        sites = dict(c)
        sites.update({k: s["value"] for k, s in tr.items() if s["type"] == "deterministic"})
        aux = {
            "chi2": sum(chi2_of(s) for s in observed) if observed else jnp.nan * x[0],
            "num_observed": sum(num_observed_of(s) for s in observed) if observed else 0,
            "sites": sites,
        }
        return -log_joint, aux

    def constrain_with(params: dict, arrays: list) -> dict:
        args, kwargs = static.merge(arrays)
        return constrain_fn(model, args, kwargs, params, return_deterministic=True)

    def unconstrain(values: dict) -> dict:
        unknown = set(values) - set(transforms)
        if unknown:
            raise ValueError(f"unknown latent sites: {sorted(unknown)}")
        return {k: transforms[k].inv(jnp.asarray(v)) for k, v in values.items()}

    shapes = {k: tuple(v.shape) for k, v in sorted(first.items())}
    return FlatModel(
        potential=lambda x: potential_with(x, arrays),
        unravel=unravel,
        constrain=lambda params: constrain_with(params, arrays),
        init_flat=inits,
        dim=dim,
        site_shapes=shapes,
        potential_aux=lambda x: potential_aux_with(x, arrays),
        unconstrain=unconstrain,
        dtype=dtype,
        arrays=arrays,
        potential_with=potential_with,
        potential_aux_with=potential_aux_with,
        constrain_with=constrain_with,
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
