"""NumPyro model of a single galaxy stamp fitted by the VAE decoder.

Generative model (:func:`galaxy_model`)::

    z ~ Normal(0, 1)^64;  flux, center_x, center_y (, size, angle) ~ GalaxyPriors
    galaxy = flux * decoder(z), placed at the centre, resampled to the stamp's pixels
    model  = PSF * galaxy
    obs    ~ Normal(model, sqrt(noise_variance))   on unmasked pixels

The decoder's native pixel scale is that of its training images (``VAE.pixel_scale``, read from
the model card; by default the shipped VAE's); a stamp at that scale and the default size and
angle reproduces ``flux * decoder(z)`` pixel for pixel (the bicubic interpolation is exact at the
source's own pixel centres).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from vaelens.models.decoder import Decoder, resolve_decoder
from vaelens.models.priors import GalaxyPriors

__all__ = ["galaxy_model"]


def galaxy_model(
    image,
    noise_variance,
    decoder: Decoder | None = None,
    *,
    priors: GalaxyPriors | None = None,
    pixel_scale: float | None = None,
    native_pixel_scale: float | None = None,
    psf=None,
    mask=None,
    save_model_image: bool = True,
) -> None:
    """NumPyro model of one galaxy stamp.

    Parameters
    ----------
    image
        ``(ny, nx)`` stamp (flux per pixel), observed at the site ``obs``.
    noise_variance
        Per-pixel noise variance (scalar or ``(ny, nx)``, image units squared), positive.
    decoder
        ``z -> (64, 64)`` unit-flux image; default the pretrained VAE.
    priors
        :class:`GalaxyPriors`; by default the flux prior is centred on the pixel sum.
    pixel_scale
        Arcsec per stamp pixel (default: ``native_pixel_scale``); the stamp grid is centred on
        the image.
    native_pixel_scale
        Arcsec per pixel of the decoded images, ``vae.pixel_scale`` of the decoder's VAE
        (default: the shipped VAE's, from its model card).
    psf
        Optional PSF kernel (unit sum) convolved with the model.
    mask
        Optional boolean ``(ny, nx)`` array, True where pixels enter the likelihood.
    save_model_image
        Record the noise-free model as the deterministic site ``model_image``.

    Notes
    -----
    Sample sites: ``z``, ``flux`` (total flux, image units), ``center_x``, ``center_y``
    (arcsec), and ``size`` / ``angle`` when enabled in ``priors``. Deterministic: ``source``
    (``flux * decoder(z)``) and ``model_image``.
    """
    from vaelens.lensing import PixelatedSource, PixelGrid, convolve_psf

    priors = GalaxyPriors() if priors is None else priors
    decoder = resolve_decoder(decoder)
    if native_pixel_scale is None:
        from vaelens.vae.weights import pretrained_pixel_scale

        native_pixel_scale = pretrained_pixel_scale()
    native_pixel_scale = float(native_pixel_scale)
    pixel_scale = native_pixel_scale if pixel_scale is None else float(pixel_scale)
    image_np = np.asarray(image, dtype=float)
    grid = PixelGrid(image_np.shape, pixel_scale)
    x, y = grid.coordinates()
    flux_guess = float(max(np.nansum(image_np), 1e-12))
    n = 64  # side of the decoded images (see vaelens.models.decoder.Decoder)
    dists = priors.distributions(flux_guess, native_size=n * native_pixel_scale)
    params = {name: numpyro.sample(name, d) for name, d in dists.items()}
    unit = decoder(params["z"])
    native = unit.shape[-1] * native_pixel_scale
    size = params.get("size", native)
    angle = params.get("angle", 0.0)
    numpyro.deterministic("source", params["flux"] * unit)
    # surface brightness amp * unit per arcsec^2 of source pixels (size/n)^2 -> total = flux
    amp = params["flux"] / (size / unit.shape[-1]) ** 2
    src = PixelatedSource(unit, params["center_x"], params["center_y"], size, angle, amp)
    model = src.surface_brightness(jnp.asarray(x), jnp.asarray(y)) * grid.pixel_area
    if psf is not None:
        model = convolve_psf(model, jnp.asarray(psf))
    if save_model_image:
        numpyro.deterministic("model_image", model)
    m = jnp.ones(image_np.shape, bool) if mask is None else jnp.asarray(mask, bool)
    numpyro.sample(
        "obs",
        dist.Normal(model, jnp.sqrt(jnp.asarray(noise_variance))).mask(m),
        obs=jnp.asarray(np.nan_to_num(image_np)),
    )
