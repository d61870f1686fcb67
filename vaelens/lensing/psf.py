"""Point-spread-function kernels and FFT convolution."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._validation import check_finite, check_positive, concrete

__all__ = ["convolve_psf", "gaussian_psf", "fft_size"]


def fft_size(n: int) -> int:
    """Smallest integer ``>= n`` whose prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def convolve_psf(image, kernel, normalize: bool = True):
    """Convolve an image with a pixelated PSF kernel by FFT (zero padding, no wrap-around).

    Parameters
    ----------
    image : array, shape (..., ny, nx)
        Image(s) on the kernel's pixel grid; leading axes are batch axes.
    kernel : array, shape (ky, kx)
        PSF kernel. Its centre is pixel ``(ky // 2, kx // 2)``: the middle pixel for odd
        sizes and, for even sizes, the pixel just above/right of the geometric centre (the
        ``numpy.fft.fftshift`` convention). A delta function at pixel ``p`` therefore becomes
        the kernel with its centre pixel on ``p``.
    normalize : bool
        Divide the kernel by its sum (default), so that the convolution preserves flux.

    Returns
    -------
    jax.Array
        Same shape as ``image``. For odd kernels this equals
        ``scipy.signal.fftconvolve(image, kernel, mode='same')``.
    """
    image = jnp.asarray(image)
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {kernel.shape}")
    if image.ndim < 2:
        raise ValueError(f"image must be at least 2-D, got shape {image.shape}")
    check_finite("kernel", kernel)
    k_np = concrete(kernel)
    if normalize and k_np is not None and not np.sum(k_np) > 0:
        raise ValueError("kernel must have a positive sum to be normalised")
    ny, nx = image.shape[-2:]
    ky, kx = kernel.shape
    cy, cx = ky // 2, kx // 2
    ly = fft_size(ny + max(cy, ky - 1 - cy))
    lx = fft_size(nx + max(cx, kx - 1 - cx))
    dtype = jnp.result_type(image, kernel)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    kfft = _kernel_fft(kernel, k_np, (ly, lx), (cy, cx), dtype, normalize)
    pad = [(0, 0)] * (image.ndim - 2) + [(0, ly - ny), (0, lx - nx)]
    ipad = jnp.pad(image.astype(dtype), pad)
    kfft = kfft.reshape((1,) * (image.ndim - 2) + kfft.shape)  # over any batch axes
    out = jnp.fft.irfft2(jnp.fft.rfft2(ipad) * kfft, s=(ly, lx))
    return out[..., :ny, :nx]


def _kernel_fft(kernel, k_np, shape, centre, dtype, normalize):
    """``rfft2`` of the kernel zero-padded to ``shape`` with its centre rolled to ``(0, 0)``.

    A concrete kernel (the usual case: a PSF that is data, not a parameter) is transformed
    once in NumPy, in float64, and enters the compiled program as a constant, so a jitted
    forward model does not repeat the kernel's FFT on every call. A traced kernel (a fitted
    PSF) is transformed in JAX.
    """
    (ly, lx), (cy, cx) = shape, centre
    ky, kx = kernel.shape
    if k_np is not None:
        kpad = np.zeros((ly, lx))
        kpad[:ky, :kx] = k_np / np.sum(k_np) if normalize else k_np
        kfft = np.fft.rfft2(np.roll(kpad, (-cy, -cx), axis=(0, 1)))
        return jnp.asarray(kfft, dtype=jnp.result_type(dtype, jnp.complex64))
    kernel = kernel.astype(dtype)
    if normalize:
        kernel = kernel / jnp.sum(kernel)
    kpad = jnp.zeros((ly, lx), dtype).at[:ky, :kx].set(kernel)
    kpad = jnp.roll(kpad, (-cy, -cx), axis=(0, 1))
    return jnp.fft.rfft2(kpad)


def gaussian_psf(fwhm: float, pixel_scale: float, size: int):
    """A normalised circular Gaussian PSF kernel sampled at pixel centres.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in arcsec (> 0); ``sigma = fwhm / (2 sqrt(2 ln 2))``.
    pixel_scale : float
        Pixel size of the kernel in arcsec (> 0).
    size : int
        Odd number of pixels on a side.

    Returns
    -------
    jax.Array
        ``(size, size)`` kernel summing to 1, centred on the middle pixel.
    """
    check_positive("fwhm", fwhm)
    check_positive("pixel_scale", pixel_scale)
    if int(size) != size or int(size) < 1 or int(size) % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    size = int(size)
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    u = (jnp.arange(size) - (size - 1) / 2.0) * pixel_scale
    g = jnp.exp(-0.5 * (u / sigma) ** 2)
    k = g[:, None] * g[None, :]
    return k / jnp.sum(k)
