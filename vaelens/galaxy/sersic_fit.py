"""Fit of a PSF-convolved elliptical Sersic profile to a galaxy stamp (multi-start L-BFGS)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.galaxy._stamp import (
    ParametricFitResult,
    float_dtype,
    light_moments,
    pixel_weights,
    profiled_flux,
    reduced_chi2,
)
from vaelens.lensing import PixelGrid, Sersic, convolve_psf
from vaelens.optim import lbfgs_minimize

__all__ = ["fit_sersic"]

_N_RANGE = (0.2, 10.0)  # Sersic indices allowed in the fit
_E_MAX = 0.95  # largest |e| reached by the tanh map of the ellipticity


def _ellipticity(t1, t2, xp):
    """``(e1, e2)`` with ``|e| < _E_MAX`` from unconstrained ``(t1, t2)`` (tanh of the radius)."""
    t = xp.sqrt(t1**2 + t2**2 + 1e-12)
    scale = xp.tanh(t) * _E_MAX / t
    return t1 * scale, t2 * scale


@functools.lru_cache(maxsize=8)
def _sersic_fitter(grid: PixelGrid, supersampling: int, max_iter: int):
    x, y = grid.supersampled_coordinates(supersampling)

    def render(p, psf):
        # p = (log R, log n, t1, t2, cx, cy)
        e1, e2 = _ellipticity(p[2], p[3], jnp)
        s = Sersic(
            amp=1.0,
            R_sersic=jnp.exp(p[0]),
            n_sersic=jnp.clip(jnp.exp(p[1]), *_N_RANGE),
            e1=e1,
            e2=e2,
            center_x=p[4],
            center_y=p[5],
        )
        img = grid.downsample(
            s.surface_brightness(x.astype(p.dtype), y.astype(p.dtype)), supersampling
        )
        return convolve_psf(img * grid.pixel_area, psf)

    def fit(image, w, psf, p0):
        def objective(p):
            m = render(p, psf)
            a = profiled_flux(image, m, w)
            return 0.5 * jnp.sum(w * (image - a * m) ** 2)

        p = lbfgs_minimize(objective, p0, max_iter=max_iter, gtol=1e-4, ftol=1e-7).x
        m = render(p, psf)
        a = profiled_flux(image, m, w)
        return p, a, a * m, jnp.sum(w * (image - a * m) ** 2)

    return jax.jit(jax.vmap(fit, in_axes=(None, None, None, 0)))


def fit_sersic(
    image: np.ndarray,
    noise_variance: np.ndarray | float,
    *,
    pixel_scale: float,
    psf: np.ndarray | None = None,
    supersampling: int = 3,
    max_iter: int = 200,
    mask: np.ndarray | None = None,
) -> ParametricFitResult:
    """Fit a PSF-convolved elliptical :class:`vaelens.lensing.Sersic` profile to a stamp.

    Multi-start L-BFGS (:func:`vaelens.optim.lbfgs_minimize`; Sersic index 1 and 4, two sizes
    from the second moments) over ``(log R_sersic, log n_sersic, e1, e2, center_x, center_y)``
    with ``0.2 <= n <= 10`` and ``|e| < 0.95``, amplitude profiled out; the image is rendered
    with ``supersampling`` x ``supersampling`` sub-pixels per pixel on a grid centred on the
    stamp (:class:`vaelens.lensing.PixelGrid`).

    Parameters
    ----------
    image
        ``(ny, nx)`` stamp, flux per pixel.
    noise_variance
        Per-pixel noise variance, scalar or ``(ny, nx)``.
    pixel_scale
        Arcsec per pixel (for decoder stamps: ``vae.config.pixel_scale``).
    psf
        PSF kernel (unit sum) at the stamp's pixel scale; None for no convolution.
    supersampling, max_iter
        Sub-pixels per pixel side; L-BFGS iterations per start.
    mask
        Optional 0/1 pixel mask (1 = used).

    Returns
    -------
    ParametricFitResult
        ``params`` of :class:`vaelens.lensing.Sersic` (``R_sersic``: half-light radius,
        arcsec; ``amp`` in flux per arcsec^2), ``n_params = 7``.
    """
    image = jnp.asarray(image, float_dtype())
    if image.ndim != 2:
        raise ValueError(f"expected one (ny, nx) stamp, got shape {tuple(image.shape)}")
    grid = PixelGrid(tuple(image.shape), float(pixel_scale))
    w = pixel_weights(image, noise_variance, mask)
    psf_arr = jnp.asarray(np.ones((1, 1)) if psf is None else psf, image.dtype)
    cx, cy, qxx, qyy, qxy = light_moments(image, grid)
    r0 = max(np.sqrt(max(qxx + qyy, 1e-8) / 2.0) * 1.18, grid.pixel_scale)
    tr = qxx + qyy + 1e-30
    e1m, e2m = 0.5 * (qxx - qyy) / tr, qxy / tr
    starts = np.array(
        [[np.log(r0 * f), np.log(n), e1m, e2m, cx, cy] for n in (1.0, 4.0) for f in (0.7, 1.5)]
    )
    fit = _sersic_fitter(grid, int(supersampling), int(max_iter))
    p, a, models, chi2 = fit(image, w, psf_arr, jnp.asarray(starts, image.dtype))
    best = int(jnp.argmin(chi2))
    pb = np.asarray(p[best], np.float64)
    e1, e2 = _ellipticity(pb[2], pb[3], np)
    params = {
        "amp": float(a[best]),
        "R_sersic": float(np.exp(pb[0])),
        "n_sersic": float(np.clip(np.exp(pb[1]), *_N_RANGE)),
        "e1": float(e1),
        "e2": float(e2),
        "center_x": float(pb[4]),
        "center_y": float(pb[5]),
    }
    c2 = float(chi2[best])
    n_pix = int(jnp.sum(w > 0))
    return ParametricFitResult(params, np.asarray(models[best]), c2, reduced_chi2(c2, n_pix, 7), 7)
