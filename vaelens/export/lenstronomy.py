"""lenstronomy keyword lists of a fit, so that lenstronomy re-renders it.

The profiles of vaelens have lenstronomy's parameters (:mod:`vaelens.lensing`), so most values
pass through unchanged:

- mass: ``EPL`` (or ``SIE``) with ``theta_E, gamma, e1, e2, center_x, center_y`` and ``SHEAR``
  with ``gamma1, gamma2`` about ``(0, 0)``;
- lens light: ``SERSIC_ELLIPSE``; vaelens's Sersic has the accurate ``b_n`` (its ``R_sersic`` is
  the half-light radius), so ``amp`` and ``R_sersic`` are converted to lenstronomy's
  approximate ``b_n`` by :func:`vaelens.lensing.light.sersic.to_lenstronomy_sersic` (the same
  profile);
- a VAE source: ``INTERPOL`` with ``image`` the decoded source in surface brightness (flux per
  arcsec^2, i.e. the ``source`` image in flux per source pixel divided by ``scale**2``),
  ``scale = source_size / 64`` (arcsec per source pixel), ``phi_G = source_angle`` and
  ``amp = 1``; a Sersic source: ``SERSIC_ELLIPSE`` as for the lens light;
- data: ``image_data``, the grid's ``ra_at_xy_0``, ``dec_at_xy_0`` and
  ``transform_pix2angle``, ``background_rms`` and ``exposure_time`` (or the ``noise_map``; a
  background-only noise model becomes a uniform noise map);
- PSF: ``PIXEL`` with the data's kernel (given on the supersampled grid, with
  ``point_source_supersampling_factor``, for ``convolve_supersampled`` specs);
- numerics: ``supersampling_factor`` and ``supersampling_convolution`` of the spec.

lenstronomy's ``INTERPOL`` interpolates bilinearly where vaelens uses Keys cubic convolution;
``source_upsampling`` resamples the source (by vaelens's own interpolation) onto a finer grid so
that the two renderings agree more closely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LenstronomyExport", "export_lenstronomy", "lenstronomy_profiles"]


@dataclasses.dataclass(frozen=True, eq=False)
class LenstronomyExport:
    """lenstronomy's description of one fitted lens (all fields are plain keyword lists).

    Attributes
    ----------
    lens_model_list, kwargs_lens
        Mass profiles (``["EPL", "SHEAR"]`` or ``["SIE", ...]``) and their keywords.
    lens_light_model_list, kwargs_lens_light
        ``["SERSIC_ELLIPSE"]`` (or empty) and its keywords.
    source_light_model_list, kwargs_source
        ``["INTERPOL"]`` (VAE source) or ``["SERSIC_ELLIPSE"]`` and the keywords.
    kwargs_data, kwargs_psf, kwargs_numerics
        Keywords of lenstronomy's ``ImageData``, ``PSF`` and ``ImageModel`` numerics.
    likelihood_mask
        Boolean ``(ny, nx)`` mask, True where a pixel enters the likelihood (lenstronomy's
        ``image_likelihood_mask_list`` entry).
    label
        The point estimate exported (``"MAP"``, ``"posterior mean"``, ...).
    """

    lens_model_list: list[str]
    kwargs_lens: list[dict[str, Any]]
    lens_light_model_list: list[str]
    kwargs_lens_light: list[dict[str, Any]]
    source_light_model_list: list[str]
    kwargs_source: list[dict[str, Any]]
    kwargs_data: dict[str, Any]
    kwargs_psf: dict[str, Any]
    kwargs_numerics: dict[str, Any]
    likelihood_mask: np.ndarray
    label: str = "MAP"

    @property
    def kwargs_model(self) -> dict[str, list[str]]:
        """lenstronomy's ``kwargs_model`` (the three model lists)."""
        return {
            "lens_model_list": list(self.lens_model_list),
            "lens_light_model_list": list(self.lens_light_model_list),
            "source_light_model_list": list(self.source_light_model_list),
        }

    @property
    def kwargs_params(self) -> dict[str, list[dict[str, Any]]]:
        """The point estimate as lenstronomy's ``kwargs_result`` (lens, source, lens light)."""
        return {
            "kwargs_lens": self.kwargs_lens,
            "kwargs_source": self.kwargs_source,
            "kwargs_lens_light": self.kwargs_lens_light,
        }

    def image_model(self):
        """lenstronomy's ``ImageModel`` of the exported model (needs lenstronomy)."""
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.ImSim.image_model import ImageModel
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel

        return ImageModel(
            ImageData(**self.kwargs_data),
            PSF(**self.kwargs_psf),
            lens_model_class=LensModel(self.lens_model_list),
            source_model_class=LightModel(self.source_light_model_list),
            lens_light_model_class=LightModel(self.lens_light_model_list),
            kwargs_numerics=self.kwargs_numerics,
        )

    def model_image(self) -> np.ndarray:
        """The image lenstronomy renders (flux per pixel, like the data)."""
        return np.asarray(
            self.image_model().image(
                kwargs_lens=self.kwargs_lens,
                kwargs_source=self.kwargs_source,
                kwargs_lens_light=self.kwargs_lens_light,
            ),
            dtype=np.float64,
        )


def _f(value) -> float:
    return float(np.asarray(value, dtype=np.float64))


def _sersic_kwargs(p: Mapping[str, Any], prefix: str, center: tuple[str, str]) -> dict[str, float]:
    from vaelens.lensing.light.sersic import to_lenstronomy_sersic

    amp, r_sersic = to_lenstronomy_sersic(
        _f(p[f"{prefix}amp"]), _f(p[f"{prefix}R_sersic"]), _f(p[f"{prefix}n_sersic"])
    )
    return {
        "amp": _f(amp),
        "R_sersic": _f(r_sersic),
        "n_sersic": _f(p[f"{prefix}n_sersic"]),
        "e1": _f(p[f"{prefix}e1"]),
        "e2": _f(p[f"{prefix}e2"]),
        "center_x": _f(p[center[0]]),
        "center_y": _f(p[center[1]]),
    }


def _upsampled_source(p: Mapping[str, Any], factor: int) -> tuple[np.ndarray, float]:
    """The source in surface brightness on a grid ``factor`` times finer, and its pixel size."""
    import jax.numpy as jnp

    from vaelens.lensing import PixelatedSource

    source = np.asarray(p["source"], dtype=np.float64)
    ny, nx = source.shape
    size = _f(p["source_size"])
    d = size / nx
    if factor == 1:
        return source / d**2, d
    unit = PixelatedSource(jnp.asarray(source / d**2), 0.0, 0.0, size, 0.0, 1.0)
    fine = d / factor
    u = (np.arange(nx * factor) - 0.5 * (nx * factor - 1)) * fine
    v = (np.arange(ny * factor) - 0.5 * (ny * factor - 1)) * fine
    uu, vv = np.meshgrid(u, v)
    return np.asarray(unit.surface_brightness(jnp.asarray(uu), jnp.asarray(vv)), np.float64), fine


def lenstronomy_profiles(
    params: Mapping[str, Any], spec, *, source_upsampling: int = 1
) -> dict[str, list]:
    """lenstronomy model lists and keyword lists of one parameter set.

    Parameters
    ----------
    params
        Physical parameters by posterior name; for a VAE source also ``source`` (the decoded
        ``(ny, nx)`` image in flux per source pixel).
    spec : vaelens.models.LensSpec
        The model.
    source_upsampling
        Resample a pixelated source onto a grid this many times finer (Keys cubic convolution,
        as vaelens renders it) before lenstronomy's bilinear ``INTERPOL`` (1: the source pixels
        themselves).

    Returns
    -------
    dict
        ``lens_model_list``, ``kwargs_lens``, ``lens_light_model_list``, ``kwargs_lens_light``,
        ``source_light_model_list``, ``kwargs_source``.
    """
    p = params
    if int(source_upsampling) != source_upsampling or int(source_upsampling) < 1:
        raise ValueError(f"source_upsampling must be a positive integer, got {source_upsampling}")
    lens = {"theta_E": _f(p["theta_E"])}
    if spec.mass_profile == "epl":
        lens["gamma"] = _f(p["gamma"])
    lens.update(
        e1=_f(p["e1"]), e2=_f(p["e2"]), center_x=_f(p["center_x"]), center_y=_f(p["center_y"])
    )
    lens_list = ["EPL" if spec.mass_profile == "epl" else "SIE"]
    kwargs_lens = [lens]
    if spec.include_shear:
        lens_list.append("SHEAR")
        kwargs_lens.append(
            {"gamma1": _f(p["gamma1"]), "gamma2": _f(p["gamma2"]), "ra_0": 0.0, "dec_0": 0.0}
        )
    light_list, kwargs_light = [], []
    if spec.include_lens_light:
        tied = spec.lens_light.tie_center
        center = ("center_x", "center_y") if tied else ("light_center_x", "light_center_y")
        light_list.append("SERSIC_ELLIPSE")
        kwargs_light.append(_sersic_kwargs(p, "light_", center))
    if spec.source_model == "vae":
        if "source" not in p:
            raise ValueError("a VAE source needs the decoded 'source' image in the parameters")
        image, scale = _upsampled_source(p, int(source_upsampling))
        source_list = ["INTERPOL"]
        kwargs_source = [
            {
                "image": image,
                "amp": 1.0,
                "center_x": _f(p["source_center_x"]),
                "center_y": _f(p["source_center_y"]),
                "phi_G": _f(p.get("source_angle", spec.source.angle)),
                "scale": float(scale),
            }
        ]
    else:
        source_list = ["SERSIC_ELLIPSE"]
        kwargs_source = [_sersic_kwargs(p, "source_", ("source_center_x", "source_center_y"))]
    return {
        "lens_model_list": lens_list,
        "kwargs_lens": kwargs_lens,
        "lens_light_model_list": light_list,
        "kwargs_lens_light": kwargs_light,
        "source_light_model_list": source_list,
        "kwargs_source": kwargs_source,
    }


def lenstronomy_data(data, spec) -> tuple[dict, dict, dict]:
    """``kwargs_data``, ``kwargs_psf`` and ``kwargs_numerics`` of an ImageData and a spec."""
    grid = data.grid
    kwargs_data: dict[str, Any] = {
        "image_data": np.asarray(data.image, dtype=np.float64),
        "ra_at_xy_0": float(grid.ra_at_xy_0),
        "dec_at_xy_0": float(grid.dec_at_xy_0),
        "transform_pix2angle": np.asarray(grid.transform, dtype=np.float64),
    }
    if data.noise_map is not None:
        kwargs_data["noise_map"] = np.asarray(data.noise_map, dtype=np.float64)
    elif data.exposure_time is None:  # background only: lenstronomy needs it as a noise map
        kwargs_data["noise_map"] = np.full(data.shape, float(data.bkg_rms))
        kwargs_data["background_rms"] = float(data.bkg_rms)
    else:
        kwargs_data["background_rms"] = float(data.bkg_rms)
        exposure = data.exposure_time
        kwargs_data["exposure_time"] = (
            float(exposure) if np.ndim(exposure) == 0 else np.asarray(exposure, dtype=np.float64)
        )
    factor = int(spec.supersampling)
    supersampled = bool(spec.convolve_supersampled) and factor > 1
    if data.psf is None:
        kwargs_psf: dict[str, Any] = {"psf_type": "NONE"}
    else:
        kwargs_psf = {"psf_type": "PIXEL", "kernel_point_source": np.asarray(data.psf, float)}
        if supersampled:
            kwargs_psf["point_source_supersampling_factor"] = factor
    kwargs_numerics = {
        "supersampling_factor": factor,
        "supersampling_convolution": supersampled,
    }
    return kwargs_data, kwargs_psf, kwargs_numerics


def export_lenstronomy(
    fit, data=None, spec=None, *, source_upsampling: int = 1
) -> LenstronomyExport:
    """lenstronomy's keyword lists of a fit.

    Parameters
    ----------
    fit
        A :class:`vaelens.infer.LensFit` (its MAP, or the posterior mean for SVI and the
        samplers), a :class:`vaelens.export.FitPoint`, or a parameter dictionary (e.g. the
        truth of :func:`vaelens.models.simulate_lens`; then ``data`` and ``spec`` are needed).
    data, spec
        The data and model of a parameter dictionary (ignored for a fit).
    source_upsampling
        See :func:`lenstronomy_profiles`.

    Returns
    -------
    LenstronomyExport

    Raises
    ------
    ValueError
        A parameter dictionary without ``data`` and ``spec``, missing parameters, or a VAE
        source without its ``source`` image.

    Examples
    --------
    >>> out = export_lenstronomy(fit)                                      # doctest: +SKIP
    >>> image = out.model_image()  # lenstronomy's rendering of the fit   # doctest: +SKIP
    """
    from vaelens.export.point import FitPoint, fit_point

    if isinstance(fit, FitPoint):
        point = fit
    elif isinstance(fit, Mapping):
        if data is None or spec is None:
            raise ValueError("a parameter dictionary needs its data and spec")
        point = FitPoint(dict(fit), data, spec, "given parameters")
    else:
        point = fit_point(fit)
    profiles = lenstronomy_profiles(point.params, point.spec, source_upsampling=source_upsampling)
    kwargs_data, kwargs_psf, kwargs_numerics = lenstronomy_data(point.data, point.spec)
    return LenstronomyExport(
        **profiles,
        kwargs_data=kwargs_data,
        kwargs_psf=kwargs_psf,
        kwargs_numerics=kwargs_numerics,
        likelihood_mask=np.asarray(point.data.mask, dtype=bool),
        label=point.label,
    )
