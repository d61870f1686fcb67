"""Model arguments split into the arrays a compiled program takes and the static rest.

A NumPyro model's arguments mix data (arrays, :class:`vaelens.data.ImageData` and other
pytrees of arrays) with configuration (a frozen :class:`vaelens.models.LensSpec`, a decoder
function, Python numbers). The arrays enter every compiled program of :mod:`vaelens.infer` as
arguments, so a program compiled once serves other data of the same shapes and no data are
baked into it as constants; the rest is static (hashed or closed over), as with ``jax.jit``'s
``static_argnums``. The split follows ``equinox.partition(tree, equinox.is_array)``.

A model that computes something on the host from an array argument (e.g. a prior centred on
``np.sum(image)``) cannot be traced with that array abstract; :func:`with_split_args` then
treats every argument as static, as if the data were closed over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["ModelArgs", "split_args", "with_split_args"]

#: Errors of a model that needs the concrete values of an array argument while it is traced.
_NEEDS_VALUES = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, np.ndarray | np.generic | jax.Array)


class ModelArgs:
    """The static part of ``(model_args, model_kwargs)`` and the rule that rebuilds them.

    ``merge(arrays)`` returns ``(model_args, model_kwargs)`` with the array leaves taken from
    ``arrays`` (a list, e.g. of tracers inside a compiled program) and every other leaf from
    the original arguments.
    """

    def __init__(self, treedef, static: list, is_dynamic: list[bool]):
        self._treedef = treedef
        self._static = static
        self._is_dynamic = is_dynamic

    def merge(self, arrays: list) -> tuple[tuple, dict]:
        it = iter(arrays)
        leaves = [next(it) if d else s for d, s in zip(self._is_dynamic, self._static,
                                                       strict=True)]
        args, kwargs = jax.tree_util.tree_unflatten(self._treedef, leaves)
        return args, kwargs

    def bind(self, fn: Callable) -> Callable:
        """``(*xs, arrays) -> fn(*xs, args, kwargs)``: ``fn`` with the arguments rebuilt."""

        def bound(*xs_and_arrays):
            *xs, arrays = xs_and_arrays
            args, kwargs = self.merge(arrays)
            return fn(*xs, args, kwargs)

        return bound


def split_args(
    model_args: tuple, model_kwargs: dict | None, dynamic: bool = True
) -> tuple[list, ModelArgs]:
    """``(arrays, static)``: the array leaves of the model arguments and the rest.

    Arrays are NumPy / JAX arrays and scalars (``np.float64(1.0)``), including the array
    fields of registered pytrees such as :class:`vaelens.data.ImageData`; Python numbers,
    strings, functions and unregistered objects are static. ``dynamic=False``: everything is
    static (``arrays`` is empty).
    """
    leaves, treedef = jax.tree_util.tree_flatten((tuple(model_args), dict(model_kwargs or {})))
    dynamic = [dynamic and _is_array(v) for v in leaves]
    arrays = [v for v, d in zip(leaves, dynamic, strict=True) if d]
    static = [None if d else v for v, d in zip(leaves, dynamic, strict=True)]
    return arrays, ModelArgs(treedef, static, dynamic)


def with_split_args(fn: Callable, model_args: tuple, model_kwargs: dict | None):
    """``fn(arrays, static)`` for the split model arguments (``fn`` traces the model).

    If the model needs the concrete value of an array argument while it is traced, ``fn``
    runs again with every argument static (``arrays`` empty, the data closed over).
    """
    arrays, static = split_args(model_args, model_kwargs)
    if not arrays:
        return fn(arrays, static)
    try:
        return fn(arrays, static)
    except _NEEDS_VALUES:
        return fn(*split_args(model_args, model_kwargs, dynamic=False))
