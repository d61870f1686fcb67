"""Frozen dataclasses registered as JAX pytrees (every field is a leaf).

Instances are rebuilt by JAX (``tree_unflatten``) without calling ``__init__``, so constructor
validation runs only when a user creates a profile, never on the placeholder leaves that JAX
transformations pass around.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import jax

T = TypeVar("T")

__all__ = ["pytree_dataclass"]


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Turn ``cls`` into a frozen dataclass whose fields are all pytree leaves."""
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))

    def flatten_with_keys(obj):
        return tuple((jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in names), None

    def flatten(obj):
        return tuple(getattr(obj, n) for n in names), None

    def unflatten(_aux, children):
        obj = object.__new__(cls)
        for n, v in zip(names, children, strict=True):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls
