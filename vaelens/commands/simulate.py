"""``vaelens simulate``: a mock HST-like lens as FITS files with its true parameters.

Writes into ``--out``:

- ``image.fits``: the noisy image (e-/s) with header keys ``PIXSCALE`` (arcsec/px), ``BKG_RMS``
  (e-/s), ``EXPTIME`` (s), ``RA0``/``DEC0`` (arcsec coordinates of pixel (0, 0));
- ``psf.fits``: the Gaussian PSF kernel (unit sum, ``PIXSCALE`` in the header);
- ``truth.json``: every true parameter under the posterior's site names (the latent code ``z``
  as a list), the model specification and the seed;
- ``model.fits``: the noise-free image, and ``source.fits``: the 64x64 source (flux/pixel).

The image is rendered by the same code as the fit (:func:`vaelens.models.lens.lens_components`
and :func:`vaelens.models.lens.render_lens`), with an EPL + external shear lens, an optional
Sersic lens light and a VAE, Sersic or real-galaxy source.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.commands._common import cli_error, make_decoder, require_file

log = logging.getLogger("vaelens")


def draw_truth(rng: np.random.Generator, source: str, lens_light: bool) -> dict[str, Any]:
    """Random true parameters of a typical galaxy-scale lens (arcsec, e-/s).

    Parameters
    ----------
    rng
        numpy random generator (the seed makes the mock reproducible).
    source
        ``"vae"`` (latent ``z ~ N(0, 1)^64`` and placement), ``"sersic"`` or ``"catalog"``
        (placement only; the image comes from a catalogue stamp).
    lens_light
        Include Sersic lens-light parameters.
    """
    e = rng.uniform(-0.15, 0.15, 2)
    truth: dict[str, Any] = {
        "theta_E": rng.uniform(1.0, 1.4),
        "gamma": rng.uniform(1.9, 2.15),
        "e1": e[0],
        "e2": e[1],
        "center_x": rng.normal(0.0, 0.02),
        "center_y": rng.normal(0.0, 0.02),
        "gamma1": rng.uniform(-0.04, 0.04),
        "gamma2": rng.uniform(-0.04, 0.04),
    }
    if lens_light:
        truth.update(
            light_amp=rng.uniform(8.0, 15.0),
            light_R_sersic=rng.uniform(0.6, 1.0),
            light_n_sersic=rng.uniform(3.0, 4.5),
            light_e1=e[0] + rng.normal(0, 0.02),
            light_e2=e[1] + rng.normal(0, 0.02),
        )
    if source in ("vae", "catalog"):
        truth.update(
            source_center_x=rng.uniform(-0.12, 0.12),
            source_center_y=rng.uniform(-0.12, 0.12),
            source_size=rng.uniform(1.2, 1.8),
            source_amp=rng.uniform(6.0, 10.0),
        )
        if source == "vae":
            truth["z"] = rng.normal(size=64)
    else:
        truth.update(
            source_amp=rng.uniform(20.0, 40.0),
            source_R_sersic=rng.uniform(0.1, 0.25),
            source_n_sersic=rng.uniform(1.0, 2.5),
            source_e1=rng.uniform(-0.2, 0.2),
            source_e2=rng.uniform(-0.2, 0.2),
            source_center_x=rng.uniform(-0.1, 0.1),
            source_center_y=rng.uniform(-0.1, 0.1),
        )
    return {k: (float(v) if np.ndim(v) == 0 else np.asarray(v, float)) for k, v in truth.items()}


def catalog_source(path: Path, index: int | None, rng: np.random.Generator):
    """A unit-flux 64x64 real-galaxy stamp (0.03"/px) from a GalSim RealGalaxyCatalog.

    Returns the stamp and a dict describing it (catalogue, row, ident) for ``truth.json``.
    """
    from vaelens.data import load_real_galaxy_catalog
    from vaelens.data.preprocess import prepare_stamp

    catalog = load_real_galaxy_catalog(path)
    try:
        n = len(catalog)
        if index is None:
            # prefer bright galaxies (their stamps are well above the noise)
            mags = np.array([catalog[i].mag for i in range(n)], float)
            ok = np.isfinite(mags)
            bright = np.flatnonzero(ok & (mags <= np.percentile(mags[ok], 20))) if ok.any() else []
            index = int(rng.choice(bright if len(bright) else np.arange(n)))
        if not 0 <= index < n:
            raise cli_error(f"--galaxy-index {index} out of range: the catalogue has {n} galaxies")
        stamp = catalog[index]
        prepared = prepare_stamp(
            np.asarray(stamp.image, float),
            float(stamp.noise_variance),
            64,
            rng=rng,
            pixel_scale=float(stamp.pixel_scale),
            target_pixel_scale=0.03,
        )
    finally:
        catalog.close()
    image = np.clip(np.asarray(prepared.image, float), 0.0, None)
    image = image / image.sum()
    return image, {"catalog": str(path), "galaxy_index": index, "ident": int(stamp.ident)}


def simulate_mock(
    *,
    seed: int = 0,
    source: str = "vae",
    size: int = 100,
    pixel_scale: float = 0.05,
    bkg_rms: float = 0.01,
    exposure_time: float = 2000.0,
    psf_fwhm: float = 0.1,
    lens_light: bool = True,
    catalog: Path | None = None,
    galaxy_index: int | None = None,
    decoder=None,
) -> dict[str, Any]:
    """Simulate a mock lens with random true parameters drawn from ``seed``.

    Parameters are those of ``vaelens simulate`` (see ``vaelens simulate --help``); ``decoder``
    overrides the VAE decoder (default: pretrained, else random weights). Randomness: numpy
    ``default_rng(seed)`` for the parameters and ``jax.random.key(seed)`` for the noise. The
    image is rendered by :func:`vaelens.models.simulate_lens`, the code path of the fit.

    Returns
    -------
    dict
        ``data`` (:class:`vaelens.data.ImageData`), ``truth`` (parameters by posterior name),
        ``model`` (noise-free image), ``source`` (64x64 source or None), ``spec``, ``meta``.
    """
    import jax

    from vaelens.models import LensSpec, simulate_lens

    rng = np.random.default_rng(seed)
    truth = draw_truth(rng, source, lens_light)
    extra: dict[str, Any] = {}
    decoder_kind = "none"
    if source == "vae":
        if decoder is None:
            decoder, decoder_kind = make_decoder("vae")
        else:
            decoder_kind = "given"
    elif source == "catalog":
        if catalog is None:
            raise cli_error("--source catalog needs --catalog PATH")
        stamp, extra = catalog_source(catalog, galaxy_index, rng)
        stamp_j = jax.numpy.asarray(stamp)
        decoder = lambda z: stamp_j  # noqa: E731 - a constant "decoder": the real galaxy
        truth["z"] = np.zeros(64)
        decoder_kind = "catalog stamp"
    spec = LensSpec(
        source_model="sersic" if source == "sersic" else "vae",
        include_lens_light=lens_light,
        supersampling=2,
    )
    psf_size = max(int(2 * np.ceil(2.0 * psf_fwhm / pixel_scale) + 1), 5)
    data, full = simulate_lens(
        jax.random.key(seed),
        spec,
        truth,
        decoder,
        shape=(size, size),
        pixel_scale=pixel_scale,
        psf_fwhm=psf_fwhm,
        psf_size=psf_size,
        bkg_rms=bkg_rms,
        exposure_time=exposure_time,
    )
    model = np.asarray(full.pop("model_image"), np.float64)
    src = full.pop("source", None)
    for key in (
        "e1_raw",
        "e2_raw",
        "light_e1_raw",
        "light_e2_raw",
        "source_e1_raw",
        "source_e2_raw",
    ):
        full.pop(key, None)
    if source == "catalog":
        full.pop("z", None)
    return dict(
        data=data,
        truth=full,
        model=model,
        source=None if src is None else np.asarray(src, np.float64),
        spec=spec,
        meta=dict(
            seed=seed,
            source=source,
            decoder=decoder_kind,
            size=size,
            pixel_scale=pixel_scale,
            bkg_rms=bkg_rms,
            exposure_time=exposure_time,
            psf_fwhm=psf_fwhm,
            lens_light=lens_light,
            **extra,
        ),
    )


def write_mock(folder: Path, mock: dict[str, Any]) -> None:
    """Write the files of :func:`simulate_mock` into ``folder`` (which must exist)."""
    from astropy.io import fits

    from vaelens.io_results import to_jsonable

    meta, data = mock["meta"], mock["data"]
    x, y = data.grid.coordinates_numpy()
    hdr = fits.Header()
    hdr["PIXSCALE"] = (meta["pixel_scale"], "arcsec per pixel")
    hdr["BKG_RMS"] = (meta["bkg_rms"], "background rms, e-/s")
    hdr["EXPTIME"] = (meta["exposure_time"], "exposure time [s]")
    hdr["BUNIT"] = "ELECTRONS/S"
    hdr["RA0"] = (float(x[0, 0]), "arcsec x of pixel (0,0)")
    hdr["DEC0"] = (float(y[0, 0]), "arcsec y of pixel (0,0)")
    hdr["ORIGIN"] = "vaelens simulate"
    hdr["SEED"] = meta["seed"]
    fits.PrimaryHDU(data.image.astype(np.float32), header=hdr).writeto(folder / "image.fits")
    phdr = fits.Header()
    phdr["PIXSCALE"] = (meta["pixel_scale"], "arcsec per pixel")
    phdr["FWHM"] = (meta["psf_fwhm"], "arcsec")
    fits.PrimaryHDU(data.psf.astype(np.float32), header=phdr).writeto(folder / "psf.fits")
    fits.PrimaryHDU(mock["model"].astype(np.float32), header=hdr).writeto(folder / "model.fits")
    if mock["source"] is not None:
        shdr = fits.Header()
        shdr["PIXSCALE"] = (
            mock["truth"]["source_size"] / mock["source"].shape[-1],
            "arcsec per source pixel",
        )
        fits.PrimaryHDU(mock["source"].astype(np.float32), header=shdr).writeto(
            folder / "source.fits"
        )
    spec = mock["spec"]
    truth = {"parameters": mock["truth"], "spec": _spec_dict(spec), **meta}
    (folder / "truth.json").write_text(json.dumps(to_jsonable(truth), indent=2) + "\n")


def _spec_dict(spec) -> dict[str, Any]:
    return {
        "mass_profile": spec.mass_profile,
        "include_shear": spec.include_shear,
        "source_model": spec.source_model,
        "include_lens_light": spec.include_lens_light,
        "supersampling": spec.supersampling,
    }


def load_truth(path: str | Path | None) -> dict[str, Any] | None:
    """The ``parameters`` of a ``truth.json`` written by ``vaelens simulate`` (None if no path)."""
    if path is None:
        return None
    from vaelens.io_results import read_json

    p = require_file(path, "truth file")
    data = read_json(p)
    params = data.get("parameters", data)
    if not isinstance(params, dict):
        raise cli_error(f"{p} has no 'parameters' mapping")
    return params


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens simulate``."""
    from vaelens.io_results import atomic_output_dir, check_output_dir

    check_output_dir(args.out, force=args.force)
    catalog = require_file(args.catalog, "galaxy catalogue") if args.catalog else None
    if args.source == "catalog" and catalog is None:
        raise cli_error("--source catalog needs --catalog PATH")
    if args.size < 20:
        raise cli_error(f"--size {args.size} is too small (at least 20 pixels)")
    mock = simulate_mock(
        seed=args.seed,
        source=args.source,
        size=args.size,
        pixel_scale=args.pixel_scale,
        bkg_rms=args.bkg_rms,
        exposure_time=args.exposure_time,
        psf_fwhm=args.psf_fwhm,
        lens_light=args.lens_light,
        catalog=catalog,
        galaxy_index=args.galaxy_index,
    )
    with atomic_output_dir(args.out, force=args.force) as tmp:
        write_mock(tmp, mock)
    t = mock["truth"]
    peak_snr = float(np.max(mock["model"]) / args.bkg_rms)
    print(
        f"wrote {Path(args.out)}/image.fits, psf.fits, truth.json  "
        f'(theta_E={t["theta_E"]:.3f}", gamma={t["gamma"]:.3f}, source={args.source}, '
        f"decoder={mock['meta']['decoder']}, peak S/N={peak_snr:.0f})"
    )
    return 0
