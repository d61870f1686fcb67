"""NumPyro model of a strong lens whose source galaxy is a VAE decoder.

Generative model (:func:`lens_model`)::

    theta_E, gamma, (e1, e2), center_x, center_y ~ LensPriors     # EPL (or SIE) mass
    gamma1, gamma2                                ~ LensPriors     # external shear
    z ~ Normal(0, 1)^64;  source_* ~ SourcePriors                  # VAE source and placement
    source = deterministic(source_amp * decoder(z))                 # 64x64 source, flux/pixel
    model  = PSF * downsample(lens_light + lensed source)           # vaelens.lensing.forward_model
    obs    ~ Normal(model, sqrt(variance(model)))  on unmasked pixels

The variance is the data's noise model (:meth:`vaelens.data.ImageData.variance`): a fixed noise
map, or lenstronomy's ``bkg_rms**2 + max(model, 0) / exposure_time`` (background plus Poisson
noise of the model itself), plus ``(model_error_frac * model)**2`` where the spec has a
``model_error`` term.

Parameter names follow lenstronomy (``theta_E``, ``gamma``, ``e1``, ``e2``, ``center_x``,
``center_y``, ``gamma1``, ``gamma2``, ``R_sersic``, ``n_sersic``, ``amp``) with the prefixes
``source_`` (source) and ``light_`` (lens light) where names would collide.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from vaelens.models.decoder import Decoder, resolve_decoder
from vaelens.models.priors import ellipticity_from_raw
from vaelens.models.spec import LensSpec

__all__ = [
    "LensSpec",
    "LensComponents",
    "lens_model",
    "lens_components",
    "render_lens",
    "sample_lens_params",
]


class LensComponents(NamedTuple):
    """Profiles of one lens configuration (inputs of :func:`vaelens.lensing.forward_model`)."""

    mass: tuple
    lens_light: tuple
    source: tuple
    source_image: jax.Array | None


def _sample_sites(dists: Mapping[str, dist.Distribution]) -> dict[str, jax.Array]:
    return {name: numpyro.sample(name, d) for name, d in dists.items()}


def _ellipticity(params: dict, prefix: str = "") -> None:
    e1, e2 = ellipticity_from_raw(params[f"{prefix}e1_raw"], params[f"{prefix}e2_raw"])
    params[f"{prefix}e1"] = numpyro.deterministic(f"{prefix}e1", e1)
    params[f"{prefix}e2"] = numpyro.deterministic(f"{prefix}e2", e2)


def sample_lens_params(spec: LensSpec) -> dict[str, jax.Array]:
    """Draw every parameter of ``spec`` as NumPyro sample sites (inside a model).

    Returns the dictionary of constrained values, including the deterministic ellipticities
    ``e1, e2`` (and ``light_e1``, ``source_e1``, ...) computed from their raw parameters.
    """
    lens_d = spec.lens.distributions()
    if spec.mass_profile == "sie":
        del lens_d["gamma"]
    if not spec.include_shear:
        del lens_d["gamma1"], lens_d["gamma2"]
    params = _sample_sites(lens_d)
    _ellipticity(params)
    if spec.include_lens_light:
        params.update(_sample_sites(spec.lens_light.distributions("light_")))
        _ellipticity(params, "light_")
    if spec.source_model == "vae":
        params.update(_sample_sites(spec.source.distributions()))
    else:
        params.update(_sample_sites(spec.sersic_source.distributions("source_")))
        _ellipticity(params, "source_")
    if spec.model_error is not None:
        params["model_error_frac"] = numpyro.sample(
            "model_error_frac", dist.LogNormal(jnp.log(spec.model_error), 1.0)
        )
    return params


def lens_components(params: Mapping[str, Any], spec: LensSpec, decoder: Decoder) -> LensComponents:
    """Build the mass, lens-light and source profiles from constrained parameter values.

    Parameters
    ----------
    params
        Constrained values by site name (as returned by :func:`sample_lens_params`, or a truth
        dictionary); ellipticities as ``e1, e2`` (not raw).
    spec
        The model specification.
    decoder
        ``z -> (64, 64)`` unit-flux image (only for ``source_model="vae"``).
    """
    from vaelens.lensing import EPL, SIE, ExternalShear, PixelatedSource, Sersic

    p = params
    if spec.mass_profile == "epl":
        main = EPL(p["theta_E"], p["gamma"], p["e1"], p["e2"], p["center_x"], p["center_y"])
    else:
        main = SIE(p["theta_E"], p["e1"], p["e2"], p["center_x"], p["center_y"])
    mass = (main, ExternalShear(p["gamma1"], p["gamma2"])) if spec.include_shear else (main,)

    light: tuple = ()
    if spec.include_lens_light:
        tied = spec.lens_light.tie_center
        cx = p["center_x"] if tied else p["light_center_x"]
        cy = p["center_y"] if tied else p["light_center_y"]
        light = (
            Sersic(
                p["light_amp"],
                p["light_R_sersic"],
                p["light_n_sersic"],
                p["light_e1"],
                p["light_e2"],
                cx,
                cy,
            ),
        )

    if spec.source_model == "vae":
        unit = decoder(jnp.asarray(p["z"]))
        n = unit.shape[-1]
        size = p["source_size"]
        angle = p.get("source_angle", spec.source.angle)
        # PixelatedSource value = amp * image (lenstronomy INTERPOL convention: surface
        # brightness per arcsec^2); a unit-flux image of n source pixels of side size/n carries
        # total flux source_amp when amp = source_amp / (size/n)^2.
        amp = p["source_amp"] / (size / n) ** 2
        source = (
            PixelatedSource(unit, p["source_center_x"], p["source_center_y"], size, angle, amp),
        )
        image = p["source_amp"] * unit
    else:
        source = (
            Sersic(
                p["source_amp"],
                p["source_R_sersic"],
                p["source_n_sersic"],
                p["source_e1"],
                p["source_e2"],
                p["source_center_x"],
                p["source_center_y"],
            ),
        )
        image = None
    return LensComponents(mass, light, source, image)


def render_lens(data, spec: LensSpec, components: LensComponents) -> jax.Array:
    """Noise-free model image of ``components`` on the data's grid (flux per pixel)."""
    from vaelens.lensing import forward_model

    psf = None if data.psf is None else jnp.asarray(data.psf)
    return forward_model(
        data.grid,
        mass=components.mass,
        lens_light=components.lens_light,
        source=components.source,
        psf=psf,
        supersampling=int(spec.supersampling),
        convolve_supersampled=spec.convolve_supersampled,
    )


@functools.partial(jax.jit, static_argnames=("spec", "decoder"))
def _render(data, spec: LensSpec, decoder: Decoder | None, params):
    """``(source image or None, model image, noise sigma)`` of ``params``, compiled.

    ``data`` (a pytree, :class:`vaelens.data.ImageData`) and ``params`` are arguments;
    ``spec`` (frozen, hashed by value) and ``decoder`` (hashed by identity) are static, so
    JAX compiles one program per spec, decoder and data shapes. Inside a traced program
    (``jit``, ``grad``, ``vmap``) the call is inlined like any other function. Where NumPyro
    runs the model eagerly (the prototype trace and initial-value check of an autoguide,
    ``SVI.init``, ``Predictive`` without ``jit``) it replaces the execution of hundreds of
    single primitives, each compiled on first use (about 20 s for the lens model on a 2-core
    CPU), by one compiled program.
    """
    comps = lens_components(params, spec, decoder)
    model = render_lens(data, spec, comps)
    variance = data.variance(model)
    if spec.model_error is not None:
        variance = variance + (params["model_error_frac"] * model) ** 2
    return comps.source_image, model, jnp.sqrt(variance)


def lens_model(data, spec: LensSpec | None = None, decoder: Decoder | None = None) -> None:
    """NumPyro model of a lens image with a VAE (or Sersic) source.

    Parameters
    ----------
    data : vaelens.data.ImageData
        Pixels, noise model, PSF, mask and grid. ``data.image`` is observed at the site ``obs``;
        use ``numpyro.handlers.condition``/``Predictive`` to simulate instead.
    spec
        Model content, rendering and priors (:class:`LensSpec`; default ``LensSpec()``).
    decoder
        ``z -> (64, 64)`` unit-flux image; default: the pretrained VAE
        (:func:`vaelens.models.default_decoder`).

    Notes
    -----
    Sample sites: see :meth:`LensSpec.parameter_names` (plus ``e1_raw``, ``e2_raw`` and ``z``).
    Deterministic sites: ``e1``, ``e2`` (and prefixed ones), ``source`` (the ``(64, 64)``
    source, ``source_amp * decoder(z)``, flux per source pixel) for a VAE source, and
    ``model_image`` if ``spec.save_model_image``. Observed site: ``obs`` (``(ny, nx)``, masked
    pixels excluded).
    """
    spec = LensSpec() if spec is None else spec
    decoder = resolve_decoder(decoder) if spec.source_model == "vae" else decoder
    params = sample_lens_params(spec)
    source_image, model, sigma = _render(data, spec, decoder, params)
    if source_image is not None:
        numpyro.deterministic("source", source_image)
    if spec.save_model_image:
        numpyro.deterministic("model_image", model)
    numpyro.sample(
        "obs",
        dist.Normal(model, sigma).mask(jnp.asarray(data.mask)),
        obs=jnp.asarray(data.image),
    )
