"""NumPyro model of a lens observed in several bands: one mass, one source shape, band colours.

Generative model (:func:`multiband_lens_model`), for bands ``b = 0 .. n-1`` of a
:class:`vaelens.data.MultiBandData` (band 0 the reference)::

    mass, shear, z, source placement, lens-light shape ~ as in vaelens.models.lens_model
    source_amp                       ~ LogNormal(log(amp), amp_scale)            # band 0
    source_amp_<b>                   ~ LogNormal(log(amp * r_b), amp_scale)      # b >= 1
    light_amp, light_amp_<b>         ~ the same for the lens light
    source_colour_<b> = -2.5 log10(source_amp_<b> / source_amp)                 # magnitudes
    model_b = PSF_b * downsample_b(lens_light_b + lensed source_b)  on band b's own grid
    obs_<b> ~ Normal(model_b, sqrt(variance_b(model_b)))  on band b's unmasked pixels

``r_b`` is the ratio of the flux in band ``b``'s mask to the reference band's
(:attr:`MultiBandData.flux_ratios`), so every amplitude prior is centred on its own band's data
as :meth:`vaelens.models.LensSpec.from_data` centres the reference band's. The bands share every
parameter but the amplitudes: the source has the same shape (the same latent code ``z``, centre,
size and angle) in every band, i.e. no colour gradient, and the lens light one Sersic shape.
The colours are in magnitudes of the band's flux units relative to the reference band's (add the
difference of the zero points for a calibrated colour).

With one band the model is :func:`vaelens.models.lens_model` with the observed site renamed
``obs_<name>``; :func:`vaelens.infer.fit_lens` uses ``lens_model`` itself for a single
:class:`vaelens.data.ImageData`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from vaelens.data.multiband import MultiBandData
from vaelens.models.decoder import Decoder, resolve_decoder
from vaelens.models.lens import (
    _render,
    lens_components,
    lens_model,
    render_lens,
    sample_lens_params,
)
from vaelens.models.spec import LensSpec

__all__ = [
    "BandSetup",
    "band_parameter_names",
    "band_params",
    "model_for",
    "multiband_lens_model",
    "simulate_multiband",
]

_LN10_OVER_2_5 = np.log(10.0) / 2.5


def _source_amp_prior(spec: LensSpec) -> tuple[float, float]:
    p = spec.source if spec.source_model == "vae" else spec.sersic_source
    return float(p.amp), float(p.amp_scale)


def band_parameter_names(spec: LensSpec, names: Sequence[str]) -> tuple[str, ...]:
    """The band sites of :func:`multiband_lens_model` beyond ``spec.parameter_names()``: the
    amplitudes ``source_amp_<b>`` (``light_amp_<b>``) and colours ``source_colour_<b>``
    (``light_colour_<b>``) of every band but the reference (``names[0]``)."""
    out = []
    for b in names[1:]:
        out.append(f"source_amp_{b}")
        if spec.include_lens_light:
            out.append(f"light_amp_{b}")
    for b in names[1:]:
        out.append(f"source_colour_{b}")
        if spec.include_lens_light:
            out.append(f"light_colour_{b}")
    return tuple(out)


def band_params(params: Mapping[str, Any], name: str, reference: str) -> dict[str, Any]:
    """``params`` with the amplitudes of band ``name`` in place of the reference band's
    (``source_amp_<name>`` as ``source_amp``, ``light_amp_<name>`` as ``light_amp``)."""
    p = dict(params)
    if name != reference:
        for key in ("source_amp", "light_amp"):
            if f"{key}_{name}" in p:
                p[key] = p[f"{key}_{name}"]
    return p


def _sample_band_amplitudes(data: MultiBandData, spec: LensSpec, params: dict) -> None:
    """The amplitude and colour sites of the non-reference bands (added to ``params``)."""
    amp, amp_scale = _source_amp_prior(spec)
    for name, ratio in zip(data.names[1:], data.flux_ratios[1:], strict=True):
        a = numpyro.sample(f"source_amp_{name}", dist.LogNormal(np.log(amp * ratio), amp_scale))
        params[f"source_amp_{name}"] = a
        numpyro.deterministic(
            f"source_colour_{name}", -2.5 * jnp.log10(a / params["source_amp"])
        )
        if spec.include_lens_light:
            ll = spec.lens_light
            la = numpyro.sample(
                f"light_amp_{name}", dist.LogNormal(np.log(ll.amp * ratio), ll.amp_scale)
            )
            params[f"light_amp_{name}"] = la
            numpyro.deterministic(
                f"light_colour_{name}", -2.5 * jnp.log10(la / params["light_amp"])
            )


@functools.partial(jax.jit, static_argnames=("spec", "decoder"))
def _render_bands(data: MultiBandData, spec: LensSpec, decoder: Decoder | None, params):
    """``(reference source image or None, model images, noise sigmas)`` of every band,
    compiled (as :func:`vaelens.models.lens._render`; the data are an argument)."""
    models, sigmas, source_image = [], [], None
    ref = data.names[0]
    for i, (name, band) in enumerate(zip(data.names, data.bands, strict=True)):
        comps = lens_components(band_params(params, name, ref), spec, decoder)
        if i == 0:
            source_image = comps.source_image
        model = render_lens(band, spec, comps)
        models.append(model)
        sigmas.append(jnp.sqrt(band.variance(model)))
    return source_image, tuple(models), tuple(sigmas)


def multiband_lens_model(
    data: MultiBandData, spec: LensSpec | None = None, decoder: Decoder | None = None
) -> None:
    """NumPyro model of a lens observed in several bands (see the module notes).

    Parameters
    ----------
    data : vaelens.data.MultiBandData
        The bands, in one angular frame; band 0 is the reference of the colours.
    spec
        Model content, rendering and priors (default ``LensSpec()``); its amplitude priors are
        those of the reference band.
    decoder
        ``z -> (64, 64)`` unit-flux image; default the pretrained VAE.

    Notes
    -----
    Sample sites: those of :func:`vaelens.models.lens_model`, plus ``source_amp_<b>`` (and
    ``light_amp_<b>``) for every band ``b`` but the reference. Deterministic sites: those of
    ``lens_model`` (``source`` is the reference band's source), ``source_colour_<b>`` (and
    ``light_colour_<b>``), ``model_image_<b>`` if ``spec.save_model_image``. Observed sites:
    ``obs_<b>`` (band ``b``'s image, its masked pixels excluded).
    """
    if not isinstance(data, MultiBandData):
        raise ValueError(
            f"multiband_lens_model takes a MultiBandData, got {type(data).__name__}; use "
            "vaelens.data.as_multiband for a list of ImageData"
        )
    spec = LensSpec() if spec is None else spec
    decoder = resolve_decoder(decoder) if spec.source_model == "vae" else decoder
    params = sample_lens_params(spec)
    _sample_band_amplitudes(data, spec, params)
    source_image, models, sigmas = _render_bands(data, spec, decoder, params)
    if source_image is not None:
        numpyro.deterministic("source", source_image)
    for name, band, model, sigma in zip(data.names, data.bands, models, sigmas, strict=True):
        if spec.save_model_image:
            numpyro.deterministic(f"model_image_{name}", model)
        numpyro.sample(
            f"obs_{name}",
            dist.Normal(model, sigma).mask(jnp.asarray(band.mask)),
            obs=jnp.asarray(band.image),
        )


def model_for(data: Any):
    """The NumPyro lens model of ``data``: :func:`multiband_lens_model` for a
    :class:`vaelens.data.MultiBandData`, :func:`vaelens.models.lens_model` otherwise."""
    return multiband_lens_model if isinstance(data, MultiBandData) else lens_model


# --------------------------------------------------------------------------- mocks
@dataclasses.dataclass(frozen=True)
class BandSetup:
    """One band of :func:`simulate_multiband`.

    Parameters
    ----------
    name
        Band name (e.g. ``"F814W"``).
    shape, pixel_scale
        Image size (pixels) and pixel scale (arcsec).
    offset
        ``(dx, dy)`` arcsec of the image centre in the common frame (0, 0: centred on the
        origin, where the lens sits by default).
    psf_fwhm, psf_size
        Gaussian PSF FWHM (arcsec) and kernel size (pixels).
    bkg_rms, exposure_time
        Noise model (as in :func:`vaelens.models.simulate_lens`).
    source_ratio, light_ratio
        Source and lens-light amplitude relative to the reference band's (the first band's
        must be 1).
    """

    name: str
    shape: tuple[int, int] = (40, 40)
    pixel_scale: float = 0.05
    offset: tuple[float, float] = (0.0, 0.0)
    psf_fwhm: float | None = 0.1
    psf_size: int = 11
    bkg_rms: float = 0.01
    exposure_time: float | None = 1000.0
    source_ratio: float = 1.0
    light_ratio: float = 1.0

    def grid(self):
        """The band's :class:`vaelens.lensing.PixelGrid` in the common frame."""
        from vaelens.lensing import PixelGrid

        ny, nx = self.shape
        s = float(self.pixel_scale)
        x0 = self.offset[0] - s * (nx - 1) / 2.0
        y0 = self.offset[1] - s * (ny - 1) / 2.0
        return PixelGrid(tuple(self.shape), s, x0, y0)


def simulate_multiband(
    key: jax.Array,
    bands: Sequence[BandSetup],
    spec: LensSpec | None = None,
    truth: Mapping[str, Any] | None = None,
    decoder: Decoder | None = None,
) -> tuple[MultiBandData, dict[str, Any]]:
    """Simulate a lens in several bands (one mass and source shape, per-band amplitudes).

    Parameters
    ----------
    key
        ``jax.random`` key (the truth's latent draw and every band's noise).
    bands
        The bands; the first is the reference (its ratios must be 1).
    spec, truth, decoder
        As in :func:`vaelens.models.simulate_lens` (``truth`` holds the reference band's
        amplitudes).

    Returns
    -------
    data : vaelens.data.MultiBandData
    truth : dict
        The parameters (with ``source_amp_<b>``, ``light_amp_<b>`` and the colours
        ``source_colour_<b>``, ``light_colour_<b>`` of the other bands), ``source`` and the
        noise-free ``model_image_<b>`` of every band.
    """
    from vaelens.data.image_data import ImageData
    from vaelens.lensing import draw_noise, gaussian_psf
    from vaelens.models.simulate import complete_truth

    bands = list(bands)
    if not bands:
        raise ValueError("give at least one band")
    if bands[0].source_ratio != 1.0 or bands[0].light_ratio != 1.0:
        raise ValueError("the reference (first) band's source_ratio and light_ratio must be 1")
    spec = LensSpec() if spec is None else spec
    key_truth, key_noise = jax.random.split(key)
    full = complete_truth(spec, key_truth, truth)
    decoder = resolve_decoder(decoder) if spec.source_model == "vae" else decoder
    ref = bands[0].name
    for b in bands[1:]:
        full[f"source_amp_{b.name}"] = float(full["source_amp"]) * b.source_ratio
        full[f"source_colour_{b.name}"] = -2.5 * float(np.log10(b.source_ratio))
        if spec.include_lens_light:
            full[f"light_amp_{b.name}"] = float(full["light_amp"]) * b.light_ratio
            full[f"light_colour_{b.name}"] = -2.5 * float(np.log10(b.light_ratio))
    params = {k: jnp.asarray(v) for k, v in full.items()}
    out = []
    for i, b in enumerate(bands):
        grid = b.grid()
        psf = (
            None if b.psf_fwhm is None
            else np.asarray(gaussian_psf(b.psf_fwhm, b.pixel_scale, b.psf_size))
        )
        blank = ImageData(np.zeros(grid.shape), grid=grid, psf=psf, bkg_rms=b.bkg_rms,
                          exposure_time=b.exposure_time)
        source_image, model, _ = _render(blank, spec, decoder, band_params(params, b.name, ref))
        k = jax.random.fold_in(key_noise, i)
        if b.exposure_time is None:
            noise = b.bkg_rms * jax.random.normal(k, model.shape, model.dtype)
        else:
            noise = draw_noise(k, model, b.bkg_rms, b.exposure_time)
        out.append(ImageData(np.asarray(model + noise), grid=grid, psf=psf, bkg_rms=b.bkg_rms,
                             exposure_time=b.exposure_time))
        full[f"model_image_{b.name}"] = np.asarray(model)
        if i == 0 and source_image is not None:
            full["source"] = np.asarray(source_image)
    return MultiBandData(tuple(out), tuple(b.name for b in bands)), full
