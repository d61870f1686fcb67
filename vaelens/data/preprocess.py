"""Preprocessing of real galaxy stamps into fixed-size, unit-flux training stamps.

Steps of :func:`prepare_stamp`:

1. optional resampling to a common pixel scale (flux conserving);
2. light centroid: flux-weighted centroid of the connected, thresholded segment (of a Gaussian
   smoothed copy) that contains the brightest smoothed pixel near the stamp centre;
3. optional canonicalisation: rotation of the major axis (second moments) onto the +x axis and
   rescaling to a fixed moment radius;
4. crop or pad to ``size x size`` so the light centre sits at pixel ``((size-1)/2, (size-1)/2)``
   (the convention of :class:`vaelens.lensing.PixelatedSource`), padding with fresh Gaussian noise
   of the stamp's variance; optional sub-pixel recentring (Fourier shift);
5. flux normalisation to unit flux (the flux inside the input footprint, so that padding noise
   does not scatter the scale), returning the factor and the normalised noise variance
   (``variance / flux**2``) so that chi^2 in normalised units equals chi^2 in data units.

Interpolation correlates the noise; where a stamp is interpolated (resampling, rotation, zoom),
the returned variance is the per-pixel variance of identically transformed white noise, measured
on a seeded noise field, so the diagonal noise level stays right (covariances are ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

__all__ = [
    "PreparedStamp",
    "crop_or_pad",
    "fourier_shift",
    "light_centroid",
    "moments",
    "prepare_stamp",
]


def as_generator(rng: Any) -> np.random.Generator:
    """numpy Generator from a Generator, an int seed, a SeedSequence or a JAX PRNG key."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer, np.random.SeedSequence)) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    if type(rng).__module__.startswith("jax"):
        data = rng
        if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
            data = jax.random.key_data(rng)
        return np.random.default_rng(np.asarray(data, dtype=np.uint64).ravel().tolist())
    raise TypeError(
        f"pass randomness explicitly: a numpy Generator, an int seed or a JAX key, got {rng!r}"
    )


@dataclass(frozen=True, eq=False)
class PreparedStamp:
    """A preprocessed training stamp.

    Attributes
    ----------
    image : numpy.ndarray
        ``(size, size)`` float64 image, unit galaxy flux (when normalised; pixel sum 1 up to
        the padding noise), light centred at pixel
        ``((size-1)/2, (size-1)/2)``.
    noise_variance : float
        Per-pixel noise variance of ``image`` (data variance / ``flux**2``, times the
        interpolation factor when the stamp was interpolated).
    flux : float
        Normalisation factor: ``image = data_image / flux`` (data units, at the output pixel
        scale; 1 when not normalised).
    center : tuple of float
        Light centre (row, col) in input-image pixels (after resampling, if any).
    pixel_scale : float or None
        Pixel scale of ``image``, arcsec.
    angle : float
        Canonicalisation rotation, rad: the galaxy's major axis was at ``angle`` from the +x axis
        (counter-clockwise, x = column, y = row); 0 when not canonicalised.
    scale : float
        Canonicalisation zoom: lengths in ``image`` are ``scale`` times the input lengths;
        1 when not canonicalised.
    """

    image: np.ndarray
    noise_variance: float
    flux: float
    center: tuple[float, float]
    pixel_scale: float | None
    angle: float = 0.0
    scale: float = 1.0


def light_centroid(
    image: np.ndarray,
    noise_variance: float,
    *,
    smooth_sigma: float = 1.5,
    threshold: float = 2.0,
    search_radius: float | None = None,
) -> tuple[float, float, np.ndarray]:
    """Flux-weighted centroid of the central galaxy.

    The image is smoothed with a Gaussian of ``smooth_sigma`` pixels and thresholded at
    ``threshold`` times the smoothed noise rms; the connected segment containing the brightest
    smoothed pixel within ``search_radius`` pixels of the stamp centre (default: a quarter of the
    stamp) defines the galaxy, and the centroid is the flux-weighted mean position of the
    positive smoothed flux in that segment.

    Returns
    -------
    row, col : float
        Centroid in pixel-index coordinates.
    segment : numpy.ndarray
        Boolean mask of the segment.
    """
    image = np.asarray(image, dtype=np.float64)
    ny, nx = image.shape
    smooth = ndimage.gaussian_filter(image, smooth_sigma, mode="nearest")
    # rms of white noise after Gaussian smoothing: sigma / (2 sqrt(pi) s)
    rms = np.sqrt(max(noise_variance, 0.0)) / (2.0 * np.sqrt(np.pi) * smooth_sigma)
    yy, xx = np.mgrid[:ny, :nx]
    r_search = search_radius if search_radius is not None else 0.25 * min(ny, nx)
    near = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) <= max(r_search, 1.0)
    peak = np.unravel_index(np.argmax(np.where(near, smooth, -np.inf)), smooth.shape)
    mask = smooth > threshold * rms
    labels, _ = ndimage.label(mask)
    if mask[peak]:
        segment = labels == labels[peak]
    else:  # no significant detection: fall back to the central search region
        segment = near
    w = np.where(segment, np.maximum(smooth, 0.0), 0.0)
    total = w.sum()
    if total <= 0:
        return (ny - 1) / 2, (nx - 1) / 2, segment
    return float((w * yy).sum() / total), float((w * xx).sum() / total), segment


def moments(image: np.ndarray, segment: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Second moments ``[[Mxx, Mxy], [Mxy, Myy]]`` (pixels^2) of the positive flux in a segment."""
    ny, nx = image.shape
    yy, xx = np.mgrid[:ny, :nx]
    w = np.where(segment, np.maximum(image, 0.0), 0.0)
    total = max(w.sum(), 1e-300)
    dx, dy = xx - center[1], yy - center[0]
    mxx = (w * dx * dx).sum() / total
    myy = (w * dy * dy).sum() / total
    mxy = (w * dx * dy).sum() / total
    return np.array([[mxx, mxy], [mxy, myy]])


def fourier_shift(image: Any, dy: Any, dx: Any) -> jax.Array:
    """Translate images by ``(dy, dx)`` pixels with the Fourier shift theorem (pure JAX).

    ``dy`` moves the light towards larger row index, ``dx`` towards larger column index.
    Exact for band-limited images, flux conserving and periodic (light leaving one edge
    re-enters at the other; negligible for centred galaxies shifted by a few pixels). An integer
    shift equals ``np.roll(image, (dy, dx), axis=(-2, -1))``. Differentiable in ``dy`` and ``dx``,
    so it serves both data preparation (call it on numpy arrays) and fits of sub-pixel centres.

    Parameters
    ----------
    image : array_like
        ``(..., ny, nx)`` real images (numpy or JAX).
    dy, dx : float or array_like
        Shifts in pixels, scalars or arrays broadcasting against the leading axes ``...``.

    Returns
    -------
    jax.Array
        Shifted images, same shape as ``image`` (floating dtype of ``image``; float32 for
        integer input, or when float64 is disabled in JAX).

    References
    ----------
    Bracewell, R. N. 2000, *The Fourier Transform and Its Applications*, 3rd ed. (shift theorem).
    """
    image = jnp.asarray(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        image = image.astype(jnp.float32)
    ny, nx = image.shape[-2:]
    dy = jnp.asarray(dy, image.dtype)
    dx = jnp.asarray(dx, image.dtype)
    lead = jnp.broadcast_shapes(dy.shape, dx.shape)
    ones = (1,) * len(lead)
    ky = jnp.fft.fftfreq(ny).astype(image.dtype).reshape(*ones, ny, 1)
    kx = jnp.fft.rfftfreq(nx).astype(image.dtype).reshape(*ones, 1, nx // 2 + 1)
    dy = jnp.broadcast_to(dy, lead)[..., None, None]
    dx = jnp.broadcast_to(dx, lead)[..., None, None]
    phase = jnp.exp(-2j * jnp.pi * (ky * dy + kx * dx))
    return jnp.fft.irfft2(jnp.fft.rfft2(image) * phase, s=(ny, nx))


def crop_or_pad(
    image: np.ndarray,
    size: int,
    center: tuple[float, float],
    noise_variance: float,
    rng: Any,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Cut a ``size x size`` stamp whose pixel ``((size-1)/2,)*2`` is nearest to ``center``.

    Pixels outside the input are filled with Gaussian noise of variance ``noise_variance``.

    Returns
    -------
    stamp : numpy.ndarray
        ``(size, size)`` float64.
    residual : tuple of float
        Remaining sub-pixel offset (row, col) of ``center`` from the stamp centre, each in
        [-0.5, 0.5].
    """
    rng = as_generator(rng)
    ny, nx = image.shape
    half = (size - 1) / 2.0
    start = np.floor(np.array(center) - half + 0.5).astype(int)
    residual = tuple(float(v) for v in np.array(center) - half - start)
    out = rng.normal(0.0, np.sqrt(max(noise_variance, 0.0)), size=(size, size))
    r0, c0 = start
    ys = slice(max(r0, 0), min(r0 + size, ny))
    xs = slice(max(c0, 0), min(c0 + size, nx))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys.start - r0 : ys.stop - r0, xs.start - c0 : xs.stop - c0] = image[ys, xs]
    return out, residual


def _affine(
    image: np.ndarray,
    matrix: np.ndarray,
    center_in: tuple[float, float],
    out_shape: tuple[int, int],
    noise_variance: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Resample ``image`` so that output pixel o maps to input ``center_in + matrix @ (o - c_out)``.

    Returns the resampled image (values per output pixel, not yet flux-rescaled; regions mapping
    outside the input filled with noise of the interpolated variance), the per-pixel
    variance of identically interpolated white noise, and the footprint (mask of output pixels
    inside the input).
    """
    c_out = (np.array(out_shape) - 1) / 2.0
    offset = np.array(center_in) - matrix @ c_out
    kwargs = dict(order=3, mode="constant", cval=np.nan, prefilter=True)
    out = ndimage.affine_transform(image, matrix, offset=offset, output_shape=out_shape, **kwargs)
    white = rng.standard_normal(image.shape)
    probe = ndimage.affine_transform(white, matrix, offset=offset, output_shape=out_shape, **kwargs)
    good = np.isfinite(probe)
    factor = float(np.var(probe[good])) if good.sum() > 16 else 1.0
    variance = noise_variance * factor
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = rng.normal(0.0, np.sqrt(max(variance, 0.0)), size=int(bad.sum()))
    return out, variance, ~bad


def prepare_stamp(
    image: np.ndarray,
    noise_variance: float,
    size: int = 64,
    *,
    rng: Any,
    pixel_scale: float | None = None,
    target_pixel_scale: float | None = None,
    recenter: bool = True,
    subpixel: bool = True,
    normalize: bool = True,
    canonicalize: bool = False,
    target_radius: float = 6.0,
    smooth_sigma: float = 1.5,
    threshold: float = 2.0,
) -> PreparedStamp:
    """Turn a real galaxy stamp into a ``size x size`` unit-flux training stamp.

    Parameters
    ----------
    image : numpy.ndarray
        ``(ny, nx)`` stamp in data units.
    noise_variance : float
        Per-pixel noise variance of ``image`` (data units squared).
    size : int
        Output width in pixels.
    rng : numpy.random.Generator, int or JAX key
        Randomness for the padding noise (and the interpolation-variance probe); required so
        that output is reproducible.
    pixel_scale, target_pixel_scale : float, optional
        Input pixel scale and the common scale to resample to (arcsec); no resampling when either
        is None or they are equal. Resampling conserves flux.
    recenter : bool
        Centre the light centroid on the stamp centre (otherwise keep the input centre).
    subpixel : bool
        Also remove the sub-pixel residual of the centring with a Fourier shift.
    normalize : bool
        Divide by the flux inside the input footprint (the pixels not filled with padding
        noise), an unbiased estimate of the galaxy's flux in the stamp; the pixel sum of the
        result is 1 up to the zero-mean padding noise (exactly 1 for noiseless input).
    canonicalize : bool
        Rotate the major axis onto +x and zoom so that the moment radius
        ``(det M)^(1/4)`` equals ``target_radius`` pixels (interpolating once, bicubic).
        The applied ``angle`` and ``scale`` are returned.
    target_radius : float
        Moment radius after canonicalisation, pixels.
    smooth_sigma, threshold : float
        Detection parameters of :func:`light_centroid`.

    Returns
    -------
    PreparedStamp
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"expected a 2-d image, got shape {image.shape}")
    if not np.isfinite(noise_variance) or noise_variance < 0:
        raise ValueError(f"noise_variance must be finite and >= 0, got {noise_variance}")
    if size < 2:
        raise ValueError("size must be >= 2")
    if not np.all(np.isfinite(image)):
        raise ValueError("image contains NaN or inf")
    rng = as_generator(rng)
    variance = float(noise_variance)
    scale_px = pixel_scale

    if (
        pixel_scale is not None
        and target_pixel_scale is not None
        and not np.isclose(pixel_scale, target_pixel_scale)
    ):
        ratio = target_pixel_scale / pixel_scale  # input pixels per output pixel
        shape = tuple(max(int(round(n / ratio)), 2) for n in image.shape)
        centre_in = tuple((np.array(image.shape) - 1) / 2.0)
        image, variance, _ = _affine(image, np.eye(2) * ratio, centre_in, shape, variance, rng)
        image = image * ratio**2  # surface brightness -> flux per (larger) pixel
        variance *= ratio**4
        scale_px = target_pixel_scale

    if recenter:
        cy, cx, segment = light_centroid(
            image, variance, smooth_sigma=smooth_sigma, threshold=threshold
        )
    else:
        cy, cx = (image.shape[0] - 1) / 2.0, (image.shape[1] - 1) / 2.0
        segment = np.ones(image.shape, dtype=bool)

    angle, scale = 0.0, 1.0
    if canonicalize:
        # moments of the smoothed image, minus the smoothing kernel's covariance
        m = moments(ndimage.gaussian_filter(image, smooth_sigma), segment, (cy, cx))
        evals, evecs = np.linalg.eigh(m - smooth_sigma**2 * np.eye(2))
        evals = np.maximum(evals, 0.25)
        major = evecs[:, 1]  # (x, y) direction of the largest eigenvalue
        angle = float(np.mod(np.arctan2(major[1], major[0]), np.pi))
        radius = float(np.sqrt(max(np.sqrt(max(np.prod(evals), 0.0)), 1e-12)))
        scale = float(np.clip(target_radius / radius, 0.25, 4.0))
        # output offset o = (row, col) -> input offset: the galaxy frame (x' along the major
        # axis = output column) rotated by `angle` and shrunk by `scale`
        c, s = np.cos(angle), np.sin(angle)
        matrix = np.array([[c, s], [-s, c]]) / scale
        image, variance, footprint = _affine(image, matrix, (cy, cx), (size, size), variance, rng)
        image = image / scale**2
        variance /= scale**4
        stamp = image
    else:
        stamp, residual = crop_or_pad(image, size, (cy, cx), variance, rng)
        ones = np.ones(image.shape)
        footprint = crop_or_pad(ones, size, (cy, cx), 0.0, np.random.default_rng(0))[0] > 0.5
        if recenter and subpixel and (residual[0] != 0 or residual[1] != 0):
            stamp = np.asarray(fourier_shift(stamp, -residual[0], -residual[1]), dtype=stamp.dtype)

    flux = 1.0
    if normalize:
        # flux inside the input footprint: the padding noise carries no galaxy light and would
        # only add scatter (large for small, faint stamps padded to `size`)
        flux = float(stamp[footprint].sum())
        if not np.isfinite(flux) or flux <= 0:
            raise ValueError("stamp has non-positive total flux; cannot normalise")
        stamp = stamp / flux
        variance = variance / flux**2
    return PreparedStamp(
        image=stamp,
        noise_variance=float(variance),
        flux=flux,
        center=(float(cy), float(cx)),
        pixel_scale=scale_px if scale == 1.0 else (None if scale_px is None else scale_px / scale),
        angle=angle,
        scale=scale,
    )
