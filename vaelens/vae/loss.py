"""The beta-VAE objective with a noise-weighted Gaussian likelihood.

For an image ``x`` with per-pixel noise variance ``v`` (unit-flux units; 0 for noise-free
synthetic images) and its reconstruction ``x_hat`` from ``z ~ q(z | x) = N(mean, exp(log_var))``,

.. math::

    L = \\frac{1}{N_\\mathrm{pix}} \\left[ \\frac{1}{2} \\sum_i
        \\frac{s^2 (x_i - \\hat x_i)^2}{s^2 v_i + \\sigma_\\mathrm{floor}^2}
        + \\beta \\, \\mathrm{KL}\\left(q(z|x) \\,\\|\\, N(0, I)\\right) \\right],

with the internal intensity scale ``s`` and noise floor ``sigma_floor`` of the
:class:`~vaelens.vae.config.VAEConfig` (both hidden from users of ``encode`` / ``decode``), i.e. the
negative ELBO per pixel up to a constant when ``beta = 1`` (Kingma & Welling 2014; Higgins et al.
2017). The KL divergence of a diagonal Gaussian from the standard normal is
``0.5 * sum(mean**2 + exp(log_var) - 1 - log_var)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vaelens.vae.network import VAE

__all__ = ["gaussian_kl", "vae_loss"]


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_var)) || N(0, 1)) summed over the last axis (nats)."""
    return 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1)


def vae_loss(
    model: VAE,
    images: jax.Array,
    variances: jax.Array,
    key: jax.Array,
    beta: jax.Array | float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Batch-mean beta-VAE loss per pixel and its parts.

    Parameters
    ----------
    model
        The VAE.
    images
        ``(B, 64, 64)`` unit-flux images.
    variances
        Noise variance of ``images`` in the same (unit-flux) units: ``(B,)`` per image or
        ``(B, 64, 64)`` per pixel.
    key
        ``jax.random`` key of the reparameterisation draw.
    beta
        KL weight (after any warm-up).

    Returns
    -------
    loss, aux
        ``aux`` holds ``chi2`` (mean chi^2 per pixel of the sampled reconstruction) and ``kl``
        (mean KL per image, nats).
    """
    cfg = model.config
    recon, mean, log_var = model(images, key)
    s = cfg.intensity_scale
    if variances.ndim == 1:
        variances = variances[:, None, None]
    inv_var = 1.0 / (s**2 * variances + cfg.sigma_floor**2)
    n_pix = images.shape[-1] * images.shape[-2]
    chi2 = jnp.sum((s * (recon - images)) ** 2 * inv_var, axis=(-2, -1))
    kl = gaussian_kl(mean, log_var)
    loss = jnp.mean(0.5 * chi2 + beta * kl) / n_pix
    return loss, {"chi2": jnp.mean(chi2) / n_pix, "kl": jnp.mean(kl)}
