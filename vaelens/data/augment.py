"""Data augmentation of galaxy stamps: flips, rotations, sub-pixel shifts, fresh noise.

Two flavours with explicit randomness: numpy functions taking a ``numpy.random.Generator`` (or a
seed / JAX key) for the data pipeline, and pure JAX functions taking a ``jax.random`` key for use
inside jitted training steps. All operate on batches ``(n, ny, nx)`` and conserve flux (arbitrary
rotations up to the corners that leave the stamp).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from vaelens.data.preprocess import as_generator

__all__ = [
    "add_noise",
    "augment",
    "dihedral",
    "random_dihedral_jax",
    "random_shift_jax",
    "shift_jax",
]


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """Element ``k`` (0..7) of the dihedral group D4 acting on the last two axes.

    ``k % 4`` counter-clockwise quarter turns, followed by a left-right flip when ``k >= 4``.
    """
    out = np.rot90(image, k % 4, axes=(-2, -1))
    return out[..., ::-1] if k >= 4 else out


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
    out = np.empty_like(images)
    for i in range(n):
        img = dihedral(images[i], int(k[i]))
        if angles is not None:
            img = ndimage.rotate(img, angles[i], reshape=False, order=3, mode="constant")
        if shifts is not None:
            ft = ndimage.fourier_shift(np.fft.fft2(img), shifts[i])
            img = np.fft.ifft2(ft).real
        out[i] = img
    if noise_sigma is not None:
        out = add_noise(out, noise_sigma, rng)
    return out


def random_dihedral_jax(key: jax.Array, images: jax.Array) -> jax.Array:
    """Apply an independent random D4 symmetry to each image of a batch (pure JAX, jit-able)."""
    variants = []
    for k in range(8):
        v = jnp.rot90(images, k % 4, axes=(-2, -1))
        variants.append(v[..., ::-1] if k >= 4 else v)
    stack = jnp.stack(variants, axis=0)  # (8, n, ny, nx)
    choice = jax.random.randint(key, (images.shape[0],), 0, 8)
    return stack[choice, jnp.arange(images.shape[0])]


def shift_jax(images: jax.Array, shifts: jax.Array) -> jax.Array:
    """Shift each image by ``shifts[i] = (dy, dx)`` pixels with a Fourier phase ramp (periodic)."""
    ny, nx = images.shape[-2:]
    ky = jnp.fft.fftfreq(ny)[None, :, None]
    kx = jnp.fft.fftfreq(nx)[None, None, :]
    phase = jnp.exp(-2j * jnp.pi * (shifts[:, 0, None, None] * ky + shifts[:, 1, None, None] * kx))
    return jnp.fft.ifft2(jnp.fft.fft2(images) * phase).real.astype(images.dtype)


def random_shift_jax(key: jax.Array, images: jax.Array, max_shift: float) -> jax.Array:
    """Random sub-pixel shifts uniform in [-max_shift, max_shift] per axis (pure JAX)."""
    shifts = jax.random.uniform(key, (images.shape[0], 2), minval=-max_shift, maxval=max_shift)
    return shift_jax(images, shifts)
