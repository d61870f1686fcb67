"""COOLEST export of a fit: a template written with the ``coolest`` package's own classes.

:func:`export_coolest` writes, into a new folder,

- ``NAME.json``: the COOLEST template (mode ``"MAP"``: a point estimate with the posterior
  statistics of every parameter), written by ``coolest.template.json.JSONSerializer``;
- ``observation.fits``, ``noise_map.fits``, ``psf.fits``, ``mask.fits``: the image, its noise
  (the standard deviation of every pixel at the exported model, so that the Gaussian likelihood
  is fixed), the PSF kernel and the likelihood mask (1 = used);
- ``source.fits``: the decoded source on a regular grid (``PixelatedRegularGrid``) with its
  field of view;
- ``chain.csv`` (SVI, NUTS, HMC): the posterior draws of every analytic parameter, one column
  per COOLEST parameter ID plus ``probability_weights``, named by the template's
  ``meta["chain_file_name"]`` as ``coolest.api`` expects.

Lensing entities, in this order: the lens galaxy (``PEMD`` or ``SIE`` mass and ``Sersic``
light), the external shear (a ``MassField``, if the model has one) and the source galaxy
(``PixelatedRegularGrid``). The posterior statistics of a position angle are those of its
draws unwrapped about the point estimate (they may reach past +-90 degrees); ``chain.csv``
holds the draws folded into (-90, 90].

Conventions (:mod:`vaelens.export.conventions`): COOLEST's ``x`` axis points west (``x_C = -x``)
and its origin is the centre of the image; axis ratios, position angles (degrees east of north)
and the shear strength and angle replace ``e1, e2`` and ``gamma1, gamma2``. The FITS images are
written in COOLEST's orientation (``x_C`` growing with the column, ``y_C`` with the row), so an
image whose ``x`` grows with the column is mirrored. The Sersic ``I_eff`` and ``theta_eff`` are
those of lenstronomy's approximate ``b_n``, which COOLEST uses
(:func:`vaelens.lensing.light.sersic.to_lenstronomy_sersic`). The source pixels are surface
brightness times the data pixel area (flux per data pixel, image units), how ``coolest.api``
evaluates a pixelated light profile next to analytic ones.

Requires ``coolest`` (``pip install vaelens[export]``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.export.conventions import (
    center_to_coolest,
    ellipticity_to_coolest,
    fold_angle,
    shear_to_coolest,
)

__all__ = ["coolest_parameters", "export_coolest"]

#: Keys of the lens, shear and source entities in :func:`coolest_parameters` (the shear, when
#: the model has one, is entity 1 of the template and the source the last).
LENS, SHEAR, SOURCE = 0, 1, 2


def _require_coolest():
    try:
        import coolest  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the COOLEST export needs the 'coolest' package: pip install 'vaelens[export]'"
        ) from None


def _frame(grid) -> tuple[tuple[float, float], bool, bool]:
    """COOLEST origin (the image centre) in vaelens coordinates and the flips of the axes."""
    t = grid.transform
    if abs(t[0, 1]) > 1e-12 * grid.pixel_scale or abs(t[1, 0]) > 1e-12 * grid.pixel_scale:
        raise ValueError(
            "COOLEST needs a pixel grid aligned with the coordinate axes; this grid is rotated "
            "(off-diagonal transform_pix2angle)"
        )
    if not math.isclose(abs(t[0, 0]), abs(t[1, 1]), rel_tol=1e-9):
        raise ValueError("COOLEST needs square pixels; this grid's pixels are rectangular")
    ny, nx = grid.shape
    origin = (
        grid.ra_at_xy_0 + t[0, 0] * 0.5 * (nx - 1),
        grid.dec_at_xy_0 + t[1, 1] * 0.5 * (ny - 1),
    )
    return origin, bool(t[0, 0] > 0), bool(t[1, 1] < 0)


def _oriented(image: np.ndarray, flip_x: bool, flip_y: bool) -> np.ndarray:
    out = np.asarray(image, dtype=np.float64)
    if flip_x:
        out = out[..., :, ::-1]
    if flip_y:
        out = out[..., ::-1, :]
    return np.ascontiguousarray(out)


def _shear_offset(p, spec, origin) -> tuple[Any, Any]:
    """Constant deflection by which COOLEST's shear (about its origin) differs from vaelens's."""
    if not spec.include_shear:
        return 0.0, 0.0
    g1, g2 = np.asarray(p["gamma1"], float), np.asarray(p["gamma2"], float)
    ox, oy = origin
    return g1 * ox + g2 * oy, g2 * ox - g1 * oy


def coolest_parameters(p: dict[str, Any], spec, origin=(0.0, 0.0)) -> dict[tuple, Any]:
    """COOLEST values of the analytic parameters: ``{(entity, profile, name): value}``.

    Parameters
    ----------
    p
        Physical parameters by posterior name (scalars, or arrays of draws).
    spec : vaelens.models.LensSpec
        The model.
    origin
        The COOLEST origin in vaelens coordinates.

    Returns
    -------
    dict
        Keys ``(LENS, "mass", name)``, ``(LENS, "light", name)``, ``(SHEAR, "mass", name)``
        and ``(SOURCE, "center", "center_x" | "center_y")`` (the source centre, which sets
        the field of view of the pixelated source).
    """
    from vaelens.lensing.light.sersic import to_lenstronomy_sersic

    out: dict[tuple, Any] = {}
    cx, cy = center_to_coolest(p["center_x"], p["center_y"], origin)
    q, phi = ellipticity_to_coolest(p["e1"], p["e2"])
    if spec.mass_profile == "epl":
        out[LENS, "mass", "gamma"] = np.asarray(p["gamma"], float)
    out[LENS, "mass", "theta_E"] = np.asarray(p["theta_E"], float)
    out[LENS, "mass", "q"], out[LENS, "mass", "phi"] = q, phi
    out[LENS, "mass", "center_x"], out[LENS, "mass", "center_y"] = cx, cy
    if spec.include_lens_light:
        amp, r_eff = to_lenstronomy_sersic(
            np.asarray(p["light_amp"], float),
            np.asarray(p["light_R_sersic"], float),
            np.asarray(p["light_n_sersic"], float),
        )
        ql, phil = ellipticity_to_coolest(p["light_e1"], p["light_e2"])
        if spec.lens_light.tie_center:
            lx, ly = cx, cy
        else:
            lx, ly = center_to_coolest(p["light_center_x"], p["light_center_y"], origin)
        out[LENS, "light", "I_eff"] = np.asarray(amp, float)
        out[LENS, "light", "theta_eff"] = np.asarray(r_eff, float)
        out[LENS, "light", "n"] = np.asarray(p["light_n_sersic"], float)
        out[LENS, "light", "q"], out[LENS, "light", "phi"] = ql, phil
        out[LENS, "light", "center_x"], out[LENS, "light", "center_y"] = lx, ly
    if spec.include_shear:
        g, phig = shear_to_coolest(p["gamma1"], p["gamma2"])
        out[SHEAR, "mass", "gamma_ext"], out[SHEAR, "mass", "phi_ext"] = g, phig
    dx, dy = _shear_offset(p, spec, origin)
    sx, sy = center_to_coolest(
        np.asarray(p["source_center_x"], float) + dx,
        np.asarray(p["source_center_y"], float) + dy,
        origin,
    )
    out[SOURCE, "center", "center_x"], out[SOURCE, "center", "center_y"] = sx, sy
    return out


def _source_grid(p, spec, origin, pixel_area):
    """COOLEST pixel values, field of view and size of the source grid."""
    import jax.numpy as jnp

    from vaelens.lensing import PixelatedSource

    source = np.asarray(p["source"], dtype=np.float64)
    ny, nx = source.shape
    size = float(p["source_size"])
    d = size / nx
    angle = float(p.get("source_angle", spec.source.angle))
    values = coolest_parameters(p, spec, origin)
    sx = float(values[SOURCE, "center", "center_x"])
    sy = float(values[SOURCE, "center", "center_y"])
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    if abs(math.sin(angle)) < 1e-12:  # axis-aligned: the source pixels themselves
        mx, my = nx, ny
    else:  # a rotated source: resampled on the axis-aligned square around it
        mx = my = int(math.ceil(max(nx, ny) * (c + s) - 1e-9))
    u = sx + (np.arange(mx) - 0.5 * (mx - 1)) * d
    v = sy + (np.arange(my) - 0.5 * (my - 1)) * d
    xc, yc = np.meshgrid(u, v)
    dx, dy = _shear_offset(p, spec, origin)
    # COOLEST source-plane position -> vaelens source-plane position
    x = origin[0] - xc - float(dx)
    y = yc + origin[1] - float(dy)
    profile = PixelatedSource(
        jnp.asarray(source / d**2),
        float(p["source_center_x"]),
        float(p["source_center_y"]),
        size,
        angle,
        1.0,
    )
    sb = np.asarray(profile.surface_brightness(jnp.asarray(x), jnp.asarray(y)), np.float64)
    fov_x = (float(sx - 0.5 * mx * d), float(sx + 0.5 * mx * d))
    fov_y = (float(sy - 0.5 * my * d), float(sy + 0.5 * my * d))
    return sb * pixel_area, fov_x, fov_y


def _write_fits(folder: Path, name: str, array: np.ndarray, **header) -> str:
    from astropy.io import fits

    hdr = fits.Header()
    for key, value in header.items():
        hdr[key] = value
    fits.PrimaryHDU(np.asarray(array, dtype=np.float64), header=hdr).writeto(folder / name)
    return name


def _draws(idata, spec) -> dict[str, np.ndarray] | None:
    if idata is None:
        return None
    post = idata.posterior
    names = [n for n in spec.parameter_names() if n in post.data_vars]
    if len(names) < len(spec.parameter_names()):
        return None
    return {n: np.asarray(post[n].values, dtype=np.float64).reshape(-1) for n in names}


def _grid(folder, path, fov_x, fov_y, shape):
    from coolest.template.classes.grid import PixelatedRegularGrid

    return PixelatedRegularGrid(
        path,
        field_of_view_x=tuple(fov_x),
        field_of_view_y=tuple(fov_y),
        num_pix_x=int(shape[1]),
        num_pix_y=int(shape[0]),
        check_fits_file=True,
        fits_file_dir=str(folder),
    )


def _entities(point, folder, origin, pixel_area):
    from coolest.template.classes.galaxy import Galaxy
    from coolest.template.classes.lensing_entity_list import LensingEntityList
    from coolest.template.classes.mass_field import MassField
    from coolest.template.classes.mass_light_model import LightModel, MassModel
    from coolest.template.classes.parameter import PixelatedRegularGridParameter

    spec, p = point.spec, point.params
    lens = Galaxy(
        "lens galaxy",
        None,
        light_model=LightModel("Sersic") if spec.include_lens_light else LightModel(),
        mass_model=MassModel("PEMD" if spec.mass_profile == "epl" else "SIE"),
    )
    source = Galaxy("source galaxy", None, light_model=LightModel("PixelatedRegularGrid"))
    pixels, fov_x, fov_y = _source_grid(p, spec, origin, pixel_area)
    path = _write_fits(folder, "source.fits", pixels, BUNIT="image units per data pixel")
    source.light_model[0].parameters["pixels"] = PixelatedRegularGridParameter(
        "Pixel values of the decoded source (surface brightness x data pixel area)",
        fits_path=path,
        field_of_view_x=fov_x,
        field_of_view_y=fov_y,
        num_pix_x=int(pixels.shape[1]),
        num_pix_y=int(pixels.shape[0]),
        check_fits_file=True,
        fits_file_dir=str(folder),
    )
    if not spec.include_shear:
        return LensingEntityList(lens, source)
    shear = MassField("external shear", None, mass_model=MassModel("ExternalShear"))
    return LensingEntityList(lens, shear, source)


def _profile_parameters(entities):
    """``{(entity, "mass" | "light", name): Parameter}`` of the analytic profiles."""
    from coolest.template.classes.parameter import Parameter

    out = {}
    for i, entity in enumerate(entities):
        for kind in ("mass", "light"):
            for profile in getattr(entity, f"{kind}_model", None) or []:
                for name, param in profile.parameters.items():
                    if isinstance(param, Parameter):
                        out[i, kind, name] = param
    return out


def _fill(entities, point, origin, draws) -> dict[str, np.ndarray]:
    """Set point estimates and posterior statistics; return the chain columns by ID."""
    from coolest.template.classes.probabilities import PosteriorStatistics

    values = coolest_parameters(point.params, point.spec, origin)
    samples = coolest_parameters(draws, point.spec, origin) if draws is not None else None
    columns = {}
    for key, param in _profile_parameters(entities).items():
        param.set_point_estimate(float(values[key]))
        if samples is not None:
            x = np.asarray(samples[key], dtype=np.float64)
            columns[param.id] = x
            if key[2] in ("phi", "phi_ext"):  # an axis: the draws unwrapped about the point
                x = float(values[key]) + fold_angle(x - float(values[key]))
            p16, p50, p84 = (float(v) for v in np.percentile(x, [16, 50, 84]))
            param.set_posterior(PosteriorStatistics(float(np.mean(x)), p50, p16, p84))
    return columns


def _noise_sigma(point) -> np.ndarray:
    """Noise standard deviation of every pixel at the exported model."""
    data = point.data
    if data.noise_map is not None:
        return np.asarray(data.noise_map, dtype=np.float64)
    import jax
    import jax.numpy as jnp

    from vaelens.models import lens_components, render_lens

    spec = point.spec
    p = {k: jnp.asarray(v) for k, v in point.params.items()}
    decoder = None
    if spec.source_model == "vae":  # the exported source image, whatever the latent code
        unit = p["source"] / p["source_amp"]
        p["z"] = jnp.zeros(1)

        def decoder(z):
            return unit

    @jax.jit
    def render(p):
        return render_lens(data, spec, lens_components(p, spec, decoder))

    model = np.asarray(render(p), dtype=np.float64)
    return np.sqrt(np.asarray(data.variance(model), dtype=np.float64))


def export_coolest(
    fit,
    out_dir: str | os.PathLike,
    name: str = "vaelens",
    *,
    chain: bool | None = None,
    force: bool = False,
) -> Path:
    """Write a COOLEST template of a fit (see the module notes for the files).

    Parameters
    ----------
    fit
        A :class:`vaelens.infer.LensFit` or a :class:`vaelens.export.FitPoint` of a fit with a
        VAE (pixelated) source.
    out_dir
        Folder to create (written under a temporary name and renamed when complete).
    name
        Name of the template (``NAME.json``).
    chain
        Write ``chain.csv`` of the posterior draws; default: for SVI, NUTS and HMC (a MAP fit's
        draws are Laplace draws, summarised in the posterior statistics only).
    force
        Replace an existing ``out_dir``.

    Returns
    -------
    pathlib.Path
        The template ``out_dir/NAME.json``; read it back with
        ``coolest.api.util.get_coolest_object(path)``.

    Raises
    ------
    ValueError
        A Sersic-source fit, a rotated or rectangular pixel grid, a non-square image, or a
        bad ``name``.
    vaelens.io_results.OutputExistsError
        ``out_dir`` exists and ``force`` is False.
    ImportError
        ``coolest`` is not installed.
    """
    from vaelens.export.point import FitPoint, fit_point
    from vaelens.io_results import atomic_output_dir, check_output_dir, to_jsonable

    _require_coolest()
    point = fit if isinstance(fit, FitPoint) else fit_point(fit)
    spec, data = point.spec, point.data
    if spec.source_model != "vae":
        raise ValueError(
            "the COOLEST export writes the decoded source as a pixelated grid and needs a fit "
            "with a VAE source; this fit has a Sersic source"
        )
    if not name or "/" in name or os.sep in name or name.endswith(".json"):
        raise ValueError(f"name must be a plain file name without .json, got {name!r}")
    ny, nx = data.shape
    if nx != ny:
        raise ValueError(f"the coolest package reads square images only; this one is {ny}x{nx}")
    origin, flip_x, flip_y = _frame(data.grid)
    check_output_dir(out_dir, force=force)
    write_chain = point.method != "map" if chain is None else bool(chain)

    from coolest.template.classes.coordinates import CoordinatesOrigin
    from coolest.template.classes.likelihood import ImagingDataLikelihood
    from coolest.template.classes.likelihood_list import DataLikelihoodList
    from coolest.template.classes.noise import NoiseMap
    from coolest.template.classes.observation import Observation
    from coolest.template.classes.psf import PixelatedPSF
    from coolest.template.json import JSONSerializer
    from coolest.template.standard import COOLEST

    from vaelens import __version__

    scale = float(data.grid.pixel_scale)
    fov_x = (-0.5 * nx * scale, 0.5 * nx * scale)
    fov_y = (-0.5 * ny * scale, 0.5 * ny * scale)
    exposure = data.exposure_time
    exposure = float(exposure) if exposure is not None and np.ndim(exposure) == 0 else None
    out = Path(out_dir)
    with atomic_output_dir(out, force=force) as tmp:
        obs_path = _write_fits(tmp, "observation.fits", _oriented(data.image, flip_x, flip_y))
        noise_path = _write_fits(
            tmp, "noise_map.fits", _oriented(_noise_sigma(point), flip_x, flip_y)
        )
        mask_path = _write_fits(tmp, "mask.fits", _oriented(data.mask, flip_x, flip_y))
        observation = Observation(
            pixels=_grid(tmp, obs_path, fov_x, fov_y, data.shape),
            exposure_time=exposure,
            noise=NoiseMap(noise_map=_grid(tmp, noise_path, fov_x, fov_y, data.shape)),
        )
        psf = None
        if data.psf is not None:
            kernel = _oriented(data.psf, flip_x, flip_y)
            factor = int(spec.supersampling) if spec.convolve_supersampled else 1
            ps = scale / factor
            ky, kx = kernel.shape
            psf = PixelatedPSF(
                pixels=_grid(
                    tmp,
                    _write_fits(tmp, "psf.fits", kernel),
                    (-0.5 * kx * ps, 0.5 * kx * ps),
                    (-0.5 * ky * ps, 0.5 * ky * ps),
                    kernel.shape,
                ),
                description="PSF kernel of the fit (normalised to unit sum)",
            )
        from coolest.template.classes.instrument import Instrument

        instrument = Instrument(pixel_size=scale, psf=psf)
        likelihoods = DataLikelihoodList(
            ImagingDataLikelihood(mask=_grid(tmp, mask_path, fov_x, fov_y, data.shape))
        )
        entities = _entities(point, tmp, origin, data.grid.pixel_area)
        columns = _fill(entities, point, origin, _draws(point.idata, spec))
        meta: dict[str, Any] = {
            "modeling_code": "vaelens",
            "vaelens": {
                "version": __version__,
                "method": point.method,
                "point_estimate": point.label,
                "spec": spec.to_dict(),
                "origin_in_vaelens_coordinates": list(origin),
                "noise": "noise_map.fits is the noise sigma of every pixel at the exported "
                "model" if data.noise_map is None else "the data's noise map",
                "source_units": "surface brightness x data pixel area (image units per data "
                "pixel)",
            },
        }
        if write_chain and columns:
            import csv

            ids = list(columns)
            n = len(next(iter(columns.values())))
            with open(tmp / "chain.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow([*ids, "probability_weights"])
                for i in range(n):
                    writer.writerow([repr(float(columns[k][i])) for k in ids] + ["1.0"])
            meta["chain_file_name"] = "chain.csv"
        template = COOLEST(
            "MAP",
            CoordinatesOrigin(),
            entities,
            observation,
            instrument,
            likelihoods=likelihoods,
            metadata=to_jsonable(meta),
        )
        JSONSerializer(str((tmp / name).absolute()), obj=template).dump_simple()
    return out.absolute() / f"{name}.json"
