"""Keyed on-the-fly augmentation of training stamps by the dihedral group D4.

Galaxy images have no preferred orientation or handedness, so each image of a batch is mapped by
one of the 8 symmetries of the square (4 rotations by 90 degrees, each optionally mirrored), drawn
with an explicit ``jax.random`` key. Exact (no interpolation), flux- and noise-preserving.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["dihedral", "random_dihedral"]


def dihedral(image: jax.Array, k: jax.Array) -> jax.Array:
    """Apply symmetry ``k`` in 0..7 to a ``(H, W)`` image.

    ``rot90`` applied ``k % 4`` times, then a left-right flip if ``k >= 4``.
    """
    branches = [
        (lambda im, r=r, f=f: jnp.flip(jnp.rot90(im, r), axis=-1) if f else jnp.rot90(im, r))
        for f in (False, True)
        for r in range(4)
    ]
    return jax.lax.switch(k, branches, image)


def random_dihedral(
    key: jax.Array, images: jax.Array, variances: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """Map each ``(H, W)`` image of a ``(B, H, W)`` batch by a random D4 symmetry.

    Per-pixel variance maps ``(B, H, W)`` get the same symmetry; per-image variances ``(B,)`` are
    returned unchanged.
    """
    k = jax.random.randint(key, (images.shape[0],), 0, 8)
    out = jax.vmap(dihedral)(images, k)
    if variances is not None and variances.ndim == 3:
        variances = jax.vmap(dihedral)(variances, k)
    return out, variances
