"""Mock lens images with known truth (for tests, benchmarks and the CLI)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.models.decoder import Decoder, resolve_decoder
from vaelens.models.lens import LensSpec, lens_components, render_lens
from vaelens.models.priors import raw_from_ellipticity

__all__ = ["complete_truth", "default_truth", "simulate_lens"]


def default_truth(spec: LensSpec, key: jax.Array) -> dict[str, Any]:
    """A plausible parameter set for ``spec`` near its prior centres.

    The mass is mildly elliptical and sheared, the source sits slightly off the optical axis
    (so the image is an incomplete ring), ``z`` is a standard-normal draw from ``key``.
    """
    lp = spec.lens
    truth: dict[str, Any] = {
        "theta_E": lp.theta_E,
        "e1": 0.08,
        "e2": -0.05,
        "center_x": lp.center_x + 0.01,
        "center_y": lp.center_y - 0.015,
    }
    if spec.mass_profile == "epl":
        truth["gamma"] = float(np.clip(lp.gamma_loc + 0.05, lp.gamma_low, lp.gamma_high))
    if spec.include_shear:
        truth.update(gamma1=0.03, gamma2=-0.02)
    if spec.include_lens_light:
        ll = spec.lens_light
        truth.update(
            light_amp=ll.amp,
            light_R_sersic=ll.R_sersic,
            light_n_sersic=0.5 * (ll.n_low + ll.n_high),
            light_e1=0.05,
            light_e2=0.02,
        )
        if not ll.tie_center:
            truth.update(light_center_x=truth["center_x"], light_center_y=truth["center_y"])
    if spec.source_model == "vae":
        sp = spec.source
        truth.update(
            z=np.asarray(jax.random.normal(key, (sp.latent_dim,))),
            source_center_x=sp.center_x + 0.05,
            source_center_y=sp.center_y - 0.03,
            source_size=sp.size,
            source_amp=sp.amp,
        )
        if sp.angle_scale is not None:
            truth["source_angle"] = sp.angle + 0.3
    else:
        sp = spec.sersic_source
        truth.update(
            source_amp=sp.amp,
            source_R_sersic=sp.R_sersic,
            source_n_sersic=min(max(1.5, sp.n_low), sp.n_high),
            source_e1=0.1,
            source_e2=0.05,
            source_center_x=sp.center_x + 0.05,
            source_center_y=sp.center_y - 0.03,
        )
    return truth


def _add_raw(truth: dict[str, Any]) -> None:
    for prefix in ("", "light_", "source_"):
        if f"{prefix}e1" in truth:
            u1, u2 = raw_from_ellipticity(
                jnp.asarray(truth[f"{prefix}e1"], float), jnp.asarray(truth[f"{prefix}e2"], float)
            )
            truth[f"{prefix}e1_raw"], truth[f"{prefix}e2_raw"] = float(u1), float(u2)


def complete_truth(spec: LensSpec, key: jax.Array, truth: Mapping[str, Any] | None) -> dict:
    """``truth`` completed by :func:`default_truth` (drawn with ``key``), with the raw
    ellipticities added and ``z`` as a float array.

    Raises
    ------
    ValueError
        ``truth`` names a parameter the spec does not have.
    """
    full = default_truth(spec, key)
    if truth is not None:
        unknown = set(truth) - set(full) - {"e1_raw", "e2_raw"}
        if unknown:
            raise ValueError(f"unknown truth parameters for this spec: {sorted(unknown)}")
        full.update(truth)
    _add_raw(full)
    if spec.source_model == "vae":
        full["z"] = np.asarray(full["z"], dtype=float)
    return full


def simulate_lens(
    key: jax.Array,
    spec: LensSpec | None = None,
    truth: Mapping[str, Any] | None = None,
    decoder: Decoder | None = None,
    *,
    shape: tuple[int, int] = (40, 40),
    pixel_scale: float = 0.05,
    psf_fwhm: float | None = 0.1,
    psf_size: int = 11,
    bkg_rms: float = 0.01,
    exposure_time: float | np.ndarray | None = 1000.0,
    mask: np.ndarray | None = None,
):
    """Simulate a lens image with known parameters.

    Parameters
    ----------
    key
        ``jax.random`` key (the latent draw of the default truth and the noise).
    spec
        Model content and rendering (supersampling); default ``LensSpec()``.
    truth
        Parameter values by posterior name (``theta_E``, ``gamma``, ``e1``, ``e2``, ...,
        ``z``); missing ones come from :func:`default_truth`.
    decoder
        ``z -> (64, 64)`` unit-flux image for a VAE source; default the pretrained one.
    shape, pixel_scale
        Image size (pixels) and pixel scale (arcsec); the grid is centred on the image.
    psf_fwhm, psf_size
        Gaussian PSF FWHM (arcsec) and kernel size (pixels); ``psf_fwhm=None`` for no PSF.
    bkg_rms, exposure_time
        Noise model: background rms (image units) and exposure time (s, scalar or map; None
        for background noise only), as in :meth:`vaelens.data.ImageData.variance`.
    mask
        Optional likelihood mask stored with the data.

    Returns
    -------
    data : vaelens.data.ImageData
        The noisy image with its noise model, PSF and grid.
    truth : dict
        All parameter values, including the raw ellipticities (``e1_raw``, ...), the noise-free
        ``model_image`` and, for a VAE source, the ``source`` image (``source_amp * decoder(z)``).
    """
    from vaelens.data.image_data import ImageData
    from vaelens.lensing import PixelGrid, draw_noise, gaussian_psf

    spec = LensSpec() if spec is None else spec
    key_truth, key_noise = jax.random.split(key)
    full = complete_truth(spec, key_truth, truth)
    if spec.source_model == "vae":
        decoder = resolve_decoder(decoder)

    grid = PixelGrid(tuple(shape), pixel_scale)
    psf = None if psf_fwhm is None else np.asarray(gaussian_psf(psf_fwhm, pixel_scale, psf_size))
    # a noise-free container to render with the same code path as the model
    blank = ImageData(np.zeros(grid.shape), grid=grid, psf=psf, bkg_rms=bkg_rms,
                      exposure_time=exposure_time)
    params = {k: jnp.asarray(v) for k, v in full.items()}
    comps = lens_components(params, spec, decoder)
    model = render_lens(blank, spec, comps)
    if exposure_time is None:
        noise = bkg_rms * jax.random.normal(key_noise, model.shape, model.dtype)
    else:
        noise = draw_noise(key_noise, model, bkg_rms, exposure_time)
    image = model + noise
    data = ImageData(
        np.asarray(image),
        grid=grid,
        psf=psf,
        bkg_rms=bkg_rms,
        exposure_time=exposure_time,
        mask=mask,
    )
    full["model_image"] = np.asarray(model)
    if comps.source_image is not None:
        full["source"] = np.asarray(comps.source_image)
    return data, full
