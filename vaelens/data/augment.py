"""Data augmentation of galaxy stamps: the dihedral group D4, rotations, shifts, fresh noise.

Galaxy images have no preferred orientation or handedness, so a stamp may be mapped by any of
the 8 symmetries of the square (:func:`dihedral`: 4 quarter turns, each optionally mirrored;
exact, no interpolation). Two flavours with explicit randomness: :func:`augment` and
:func:`add_noise` for the numpy data pipeline (a ``numpy.random.Generator``, seed or JAX key),
and pure JAX functions taking a ``jax.random`` key for jitted training steps
(:func:`random_dihedral`, :func:`random_shift_jax`). All operate on batches ``(n, ny, nx)`` and
conserve flux (arbitrary rotations up to the corners that leave the stamp). Sub-pixel shifts use
:func:`vaelens.data.preprocess.fourier_shift`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from vaelens.data.preprocess import as_generator, fourier_shift

__all__ = [
    "add_noise",
    "augment",
    "dihedral",
    "random_dihedral",
    "random_shift_jax",
]


def _d4_element(r: int, flip: bool):
    def apply(image: jax.Array) -> jax.Array:
        out = jnp.rot90(image, r, axes=(-2, -1))
        return jnp.flip(out, axis=-1) if flip else out

    return apply


_D4 = [_d4_element(k % 4, k >= 4) for k in range(8)]


def dihedral(image: Any, k: Any) -> jax.Array:
    """Element ``k`` (0..7) of the dihedral group D4 acting on the last two axes (pure JAX).

    ``k % 4`` counter-clockwise quarter turns (``rot90``), followed by a left-right flip when
    ``k >= 4``. ``k`` may be a traced integer (``lax.switch``), so ``jax.vmap(dihedral)`` maps
    each image of a batch by its own element. Exact: pixels are only permuted.

    Parameters
    ----------
    image : array_like
        ``(..., ny, nx)`` images (numpy or JAX; square for the quarter turns of a batch).
    k : int or integer array (scalar)
        Group element.
    """
    return jax.lax.switch(jnp.asarray(k, jnp.int32), _D4, jnp.asarray(image))


def add_noise(images: np.ndarray, sigma: float | np.ndarray, rng: Any) -> np.ndarray:
    """Add fresh white Gaussian noise of standard deviation ``sigma`` (scalar or per image)."""
    rng = as_generator(rng)
    images = np.asarray(images)
    sig = np.asarray(sigma, dtype=np.float64).reshape((-1,) + (1,) * (images.ndim - 1))
    if np.any(sig < 0):
        raise ValueError("sigma must be non-negative")
    return (images + sig * rng.standard_normal(images.shape)).astype(images.dtype)


def augment(
    images: np.ndarray,
    rng: Any,
    *,
    flips: bool = True,
    rot90: bool = True,
    rotate: bool = False,
    max_shift: float = 0.0,
    noise_sigma: float | np.ndarray | None = None,
) -> np.ndarray:
    """Randomly transform a batch of stamps ``(n, ny, nx)`` (numpy).

    Parameters
    ----------
    images : numpy.ndarray
        Batch of stamps.
    rng : numpy.random.Generator, int or JAX key
        Randomness (required).
    flips, rot90 : bool
        Random left-right flip / random quarter turn per image (together: the 8 symmetries of
        the square, exact, no interpolation).
    rotate : bool
        Additional rotation by a uniform angle in [0, 2 pi) (bicubic, zero outside; best for
        noiseless images).
    max_shift : float
        Sub-pixel shifts uniform in [-max_shift, max_shift] pixels per axis (Fourier).
    noise_sigma : float or array, optional
        Standard deviation of fresh Gaussian noise added afterwards.
    """
    rng = as_generator(rng)
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected a batch (n, ny, nx), got shape {images.shape}")
    n = images.shape[0]
    k = rng.integers(0, 4, size=n) if rot90 else np.zeros(n, dtype=int)
    k = k + (4 * rng.integers(0, 2, size=n) if flips else 0)
    angles = rng.uniform(0.0, 360.0, size=n) if rotate else None
    shifts = rng.uniform(-max_shift, max_shift, size=(n, 2)) if max_shift > 0 else None
    out = np.array(jax.vmap(dihedral)(images, jnp.asarray(k)), dtype=images.dtype)
    if angles is not None:
        for i in range(n):
            out[i] = ndimage.rotate(out[i], angles[i], reshape=False, order=3, mode="constant")
    if shifts is not None:
        out = np.asarray(fourier_shift(out, shifts[:, 0], shifts[:, 1]), dtype=images.dtype)
    if noise_sigma is not None:
        out = add_noise(out, noise_sigma, rng)
    return out


def random_dihedral(
    key: jax.Array, images: jax.Array, variances: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """Map each image of a ``(B, ny, nx)`` batch by a random D4 element (pure JAX, jit-able).

    Per-pixel variance maps ``(B, ny, nx)`` get the same element; per-image variances ``(B,)``
    (or None) are returned unchanged.
    """
    k = jax.random.randint(key, (images.shape[0],), 0, 8)
    out = jax.vmap(dihedral)(images, k)
    if variances is not None and jnp.ndim(variances) == 3:
        variances = jax.vmap(dihedral)(variances, k)
    return out, variances


def random_shift_jax(key: jax.Array, images: jax.Array, max_shift: float) -> jax.Array:
    """Random sub-pixel shifts uniform in [-max_shift, max_shift] per axis (pure JAX)."""
    shifts = jax.random.uniform(key, (images.shape[0], 2), minval=-max_shift, maxval=max_shift)
    return fourier_shift(images, shifts[:, 0], shifts[:, 1]).astype(images.dtype)
