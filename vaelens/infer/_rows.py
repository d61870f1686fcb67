"""Rows of starting points run by one compiled loop, split over local devices.

The multi-start MAP and the finite-difference Laplace Hessian evaluate one function at many
points. :func:`row_loop` turns it into one compiled ``lax.map`` loop over the rows (or one
``jax.vmap`` batch), dealt out over several local devices with ``jax.pmap`` when there are,
e.g. CPU host devices, one per core.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

__all__ = ["row_loop"]


def row_loop(
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
