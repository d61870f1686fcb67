"""What the stamp fits share: pixel weights, the profiled flux, moments and the result record.

Reduced chi^2 is ``chi^2 / (N_pix - N_par)`` with the noise variance given, over unmasked pixels.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.lensing import PixelGrid

__all__ = ["ParametricFitResult"]


@dataclasses.dataclass(frozen=True)
class ParametricFitResult:
    """Result of a Sersic or shapelet fit of one stamp.

    Attributes
    ----------
    params
        Fitted parameters by name (Sersic: ``amp, R_sersic, n_sersic, e1, e2, center_x,
        center_y`` of :class:`vaelens.lensing.Sersic`, arcsec; shapelets: ``beta`` (arcsec),
        ``coeffs``, ``center_x``, ``center_y``).
    model
        Model image.
    chi2, reduced_chi2
        ``sum w (d - m)^2 / v`` over unmasked pixels and ``chi2 / (N_pix - n_params)``.
    n_params
        Number of fitted parameters used in the reduced chi^2.
    """

    params: dict[str, np.ndarray | float]
    model: np.ndarray
    chi2: float
    reduced_chi2: float
    n_params: int


def float_dtype():
    """float64 when JAX has it enabled, else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def pixel_weights(image, noise_variance, mask):
    """``mask / variance`` per pixel (``mask`` 0/1 or None), broadcast to the image."""
    w = 1.0 / jnp.broadcast_to(jnp.asarray(noise_variance, image.dtype), image.shape)
    if mask is not None:
        w = w * jnp.asarray(mask, image.dtype)
    return w


def profiled_flux(data, model, w):
    """Weighted least-squares amplitude ``a`` minimising ``sum w (data - a model)^2``."""
    return jnp.sum(w * data * model) / jnp.maximum(jnp.sum(w * model * model), 1e-30)


def reduced_chi2(chi2, n_pix, n_par):
    """``chi2 / max(n_pix - n_par, 1)`` as a float."""
    return float(chi2 / max(n_pix - n_par, 1))


def light_moments(image, grid: PixelGrid):
    """First and second moments of the positive flux: ``cx, cy, Qxx, Qyy, Qxy`` (arcsec)."""
    img = np.clip(np.asarray(image, np.float64), 0, None)
    x, y = grid.coordinates_numpy()
    s = img.sum() + 1e-30
    cx, cy = (img * x).sum() / s, (img * y).sum() / s
    qxx = (img * (x - cx) ** 2).sum() / s
    qyy = (img * (y - cy) ** 2).sum() / s
    qxy = (img * (x - cx) * (y - cy)).sum() / s
    return cx, cy, qxx, qyy, qxy
