"""Pixel noise model: Gaussian background plus Gaussian-approximated Poisson noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._validation import check_positive, concrete

__all__ = ["noise_variance", "draw_noise"]


def noise_variance(model, bkg_rms, exposure_time):
    """Per-pixel noise variance of a model image.

    .. math:: \\sigma^2 = \\sigma_{\\rm bkg}^2 + \\max(m, 0) / t_{\\rm exp}

    Parameters
    ----------
    model : array
        Model image in counts per second per pixel (flux units).
    bkg_rms : float or array
        Background noise standard deviation (same units as ``model``), >= 0.
    exposure_time : float or array
        Exposure time in seconds (scalar or a map broadcastable to ``model``), > 0.

    Returns
    -------
    jax.Array
        Variance, same shape as ``model``.
    """
    b = concrete(bkg_rms)
    if b is not None and not (b >= 0).all():
        raise ValueError(f"bkg_rms must be >= 0, got {bkg_rms!r}")
    check_positive("exposure_time", exposure_time)
    model = jnp.asarray(model)
    et = jnp.asarray(exposure_time)
    if et.ndim and jnp.broadcast_shapes(et.shape, model.shape) != model.shape:
        raise ValueError(
            f"exposure_time of shape {et.shape} does not broadcast to model shape {model.shape}"
        )
    return jnp.square(bkg_rms) + jnp.maximum(model, 0.0) / exposure_time


def draw_noise(key, model, bkg_rms, exposure_time):
    """Draw a Gaussian noise realisation with variance :func:`noise_variance`.

    Parameters
    ----------
    key : jax.random key
        Explicit random key.
    model, bkg_rms, exposure_time
        As in :func:`noise_variance`.

    Returns
    -------
    jax.Array
        Noise image (add it to ``model`` to obtain mock data).
    """
    var = noise_variance(model, bkg_rms, exposure_time)
    return jnp.sqrt(var) * jax.random.normal(key, var.shape, dtype=var.dtype)
