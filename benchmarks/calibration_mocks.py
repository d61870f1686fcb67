"""Mock lenses whose sources are real galaxies, rendered by lenstronomy (for bench_calibration).

The sources are real HST/JWST galaxies that the shipped VAE never saw in training: the held-out
test split of ``../shared/data/cosmos_btk`` (``split_seed`` 0, see the model card) and the
single-galaxy stamps of ``../shared/data/extra_hst`` listed in :data:`EXTRA_SOURCES` (kept out of
training for this purpose). A control set uses VAE draws as sources instead.

Each mock: an EPL + external-shear lens drawn from :data:`POPULATION`, a source galaxy with a
random rotation, flip, half-light radius and position, the real F390W PSF of
``../shared/data/lenses/lens_system1_F390W`` (0.04 arcsec/px), background + Poisson noise at a
random peak S/N. lenstronomy renders it (``INTERPOL`` source, supersampling 5, where vaelens
fits with its own code at supersampling 2), so the fit never sees its own renderer.

Everything is deterministic for a seed (:func:`make_mock`).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: The lens population (uniform ranges unless stated).
POPULATION: dict[str, Any] = {
    "theta_E": (0.8, 1.8),
    "gamma": (1.8, 2.3),
    "e_max": 0.3,  # |e| uniform in [0, e_max], position angle uniform
    "shear_max": 0.08,  # |gamma_ext| uniform in [0, shear_max], angle uniform
    "center_sigma": 0.03,  # lens centre ~ N(0, center_sigma) per axis, arcsec
    "source_offset_max": 0.25,  # |beta| uniform in [0, max] (x theta_E / 1.3), arcsec
    "source_r50": (0.10, 0.35),  # source half-light radius, arcsec
    "peak_snr": (14.0, 31.0),  # peak pixel S/N of the lensed image
}

#: Image settings of every mock.
NUM_PIX = 120
PIXEL_SCALE = 0.04
BKG_RMS = 0.01  # e-/s
EXPOSURE_TIME = 1500.0  # s
SUPERSAMPLING = 5
#: Peak S/N per pixel to which a noisy source stamp is smoothed before lensing (its own noise
#: would otherwise be lensed into the mock as structure above the mock's noise).
SOURCE_MIN_SNR = 30.0

#: Real single-galaxy stamps of extra_hst held out of training for the calibration benchmark:
#: (name, file under extra_hst, HDU or None for .npy, pixel scale in arcsec).
EXTRA_SOURCES: tuple[tuple[str, str, int | None, float], ...] = (
    ("galsim_100533", "galsim/test_images.fits", 0, 0.03),
    ("galsim_147246", "galsim/147246.0_150.416558_1.998697_masknoise.fits", 0, 0.03),
    ("slsim_97475", "slsim/test_galaxy_images_23.5.fits", 1, 0.03),
    ("slsim_169753", "slsim/test_galaxy_images_23.5.fits", 2, 0.03),
    ("slsim_npy", "slsim/real_galaxy_image.npy", None, 0.03),
    ("cosmosweb_6701_F150W", "slsim/COSMOSWeb_galaxy_6701_image.fits", 2, 0.03),
    ("cosmosweb_885_F150W", "slsim/COSMOSWeb_galaxy_885_image.fits", 2, 0.03),
    ("a2744_spiral_F105W", "petrofit/abell_2744_spiral_galaxy_f105w.fits.gz", 0, 0.06),
    ("a2744_dwarf_F105W", "petrofit/abell_2744_dwarf_galaxy_f105w.fits.gz", 0, 0.06),
)


@dataclasses.dataclass(frozen=True)
class SourceStamp:
    """A prepared source galaxy: unit-flux image, its pixel scale and half-light radius."""

    name: str
    image: np.ndarray  # (n, n), unit total flux, background 0 outside the galaxy
    pixel_scale: float  # arcsec per pixel of the original stamp
    r50_pix: float  # circular half-light radius about the centre, pixels
    smoothing_sigma: float  # Gaussian smoothing applied (pixels; 0 = none)
    kind: str = "real"  # "real" or "vae"


def shared_available(shared: Path = SHARED) -> bool:
    """Whether the real data needed for the real-source mocks are present."""
    return (shared / "cosmos_btk").is_dir() and (shared / "lenses").is_dir()


def load_psf(shared: Path = SHARED) -> np.ndarray:
    """The real HST F390W PSF (41x41 at 0.04 arcsec/px), normalised."""
    from astropy.io import fits

    psf = np.asarray(fits.getdata(shared / "lenses" / "lens_system1_F390W" / "psf.fits"), float)
    return psf / psf.sum()


def _background(image: np.ndarray) -> tuple[float, float]:
    """Sigma-clipped median and rms of the source-free pixels."""
    from astropy.stats import sigma_clipped_stats
    from scipy import ndimage

    _, med, std = sigma_clipped_stats(image, sigma=3.0, maxiters=10)
    source = ndimage.binary_dilation(image - med > 2.0 * std, iterations=3)
    if (~source).sum() > 50:
        _, med, std = sigma_clipped_stats(image[~source], sigma=3.0, maxiters=10)
    return float(med), float(std)


def half_light_radius(image: np.ndarray) -> float:
    """Circular half-light radius of a non-negative image about its flux centroid, pixels."""
    img = np.clip(image, 0.0, None)
    y, x = np.indices(img.shape, dtype=float)
    total = img.sum()
    cy, cx = (img * y).sum() / total, (img * x).sum() / total
    r = np.hypot(y - cy, x - cx).ravel()
    order = np.argsort(r)
    cum = np.cumsum(img.ravel()[order])
    return float(r[order][np.searchsorted(cum, 0.5 * total)])


def prepare_source(
    image: np.ndarray,
    name: str,
    pixel_scale: float,
    min_snr: float = SOURCE_MIN_SNR,
    *,
    allow_edge: bool = False,
) -> SourceStamp:
    """Background-subtract, isolate, denoise to ``min_snr`` and crop one galaxy stamp.

    The galaxy is the connected region (pixels > 4 sigma after a 1-px smoothing) nearest the
    stamp centre among the brightest (it must not reach the stamp edge unless ``allow_edge``,
    as in the tight stamps of a RealGalaxyCatalog); everything outside its dilated footprint is
    set to zero (neighbours and background noise); a stamp whose peak S/N is below ``min_snr``
    is smoothed by the narrowest Gaussian that brings it there.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=float)
    img = np.where(np.isfinite(img), img, 0.0)
    med, rms = _background(img)
    img = img - med
    smooth = ndimage.gaussian_filter(img, 1.0)
    labels, n = ndimage.label(smooth > 4.0 * rms / (2 * np.sqrt(np.pi)))
    if n == 0:
        raise ValueError(f"{name}: no galaxy above the noise")
    fluxes = ndimage.sum(np.clip(img, 0, None), labels, index=np.arange(1, n + 1))
    coms = ndimage.center_of_mass(np.clip(img, 0, None), labels, index=np.arange(1, n + 1))
    centre = (np.array(img.shape) - 1) / 2.0
    dist = np.array([np.hypot(*(np.array(c) - centre)) for c in coms])
    bright = fluxes >= 0.2 * fluxes.max()
    main = int(np.argmin(np.where(bright, dist, np.inf))) + 1
    footprint = ndimage.binary_dilation(labels == main, iterations=4)
    edge = footprint[[0, -1], :].any() or footprint[:, [0, -1]].any()
    if edge and not allow_edge:
        raise ValueError(f"{name}: the galaxy (or a background gradient) reaches the stamp edge")

    sigma = 0.0
    peak_snr = img[footprint].max() / rms
    for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
        if peak_snr >= min_snr:
            break
        sigma = s
        smoothed = ndimage.gaussian_filter(img, s)
        peak_snr = smoothed[footprint].max() / (rms / (2 * np.sqrt(np.pi) * s))
    if sigma > 0:
        img = ndimage.gaussian_filter(img, sigma)
    img = np.where(footprint, np.clip(img, 0.0, None), 0.0)

    ys, xs = np.nonzero(footprint)
    total = img.sum()
    cy, cx = (
        (img.sum(axis=1) @ np.arange(img.shape[0])) / total,
        (img.sum(axis=0) @ np.arange(img.shape[1])) / total,
    )
    half = int(np.ceil(max(np.abs(ys - cy).max(), np.abs(xs - cx).max()))) + 3
    cyi, cxi = int(round(cy)), int(round(cx))
    padded = np.pad(img, half)
    crop = padded[cyi : cyi + 2 * half + 1, cxi : cxi + 2 * half + 1]
    crop = crop / crop.sum()
    return SourceStamp(name, crop, float(pixel_scale), half_light_radius(crop), sigma)


def load_real_sources(shared: Path = SHARED) -> list[SourceStamp]:
    """The held-out real galaxies: the cosmos_btk test split and :data:`EXTRA_SOURCES`."""
    from astropy.io import fits

    from vaelens.data.catalog import load_real_galaxy_catalog
    from vaelens.data.split import split_by_id

    sources = []
    cat_path = shared / "cosmos_btk" / "real_galaxy_catalog_26_extension_example.fits"
    with load_real_galaxy_catalog(cat_path) as cat:
        idents = np.array([cat[i].ident for i in range(len(cat))])
        test = set(np.asarray(split_by_id(idents, seed=0)[2]).tolist())
        for i in range(len(cat)):
            stamp = cat[i]
            if stamp.ident in test:
                sources.append(
                    prepare_source(
                        stamp.image, f"cosmos_{stamp.ident}", stamp.pixel_scale, allow_edge=True
                    )
                )
    for name, rel, hdu, scale in EXTRA_SOURCES:
        path = shared / "extra_hst" / rel
        if not path.exists():
            continue
        data = np.load(path) if hdu is None else fits.getdata(path, hdu)
        try:
            sources.append(prepare_source(np.asarray(data, float), name, scale))
        except ValueError as err:
            warnings.warn(f"source left out: {err}", stacklevel=2)
    return sources


def vae_sources(n: int, seed: int, decoder=None) -> list[SourceStamp]:
    """``n`` control sources decoded from latent prior draws (64x64, 0.03 arcsec/px)."""
    import jax

    from vaelens.models.decoder import resolve_decoder

    decoder = resolve_decoder(decoder)
    zs = jax.random.normal(jax.random.PRNGKey(seed), (n, 64))
    out = []
    for i in range(n):
        img = np.clip(np.asarray(decoder(zs[i]), float), 0.0, None)
        img = img / img.sum()
        out.append(SourceStamp(f"vae_{seed}_{i}", img, 0.03, half_light_radius(img), 0.0, "vae"))
    return out


def draw_truth(rng: np.random.Generator) -> dict[str, float]:
    """Lens and source-placement parameters from :data:`POPULATION`."""
    pop = POPULATION
    theta_E = rng.uniform(*pop["theta_E"])
    e, phi = rng.uniform(0, pop["e_max"]), rng.uniform(0, np.pi)
    g, phig = rng.uniform(0, pop["shear_max"]), rng.uniform(0, np.pi)
    cx, cy = rng.normal(0, pop["center_sigma"], 2)
    r = rng.uniform(0, pop["source_offset_max"]) * theta_E / 1.3
    phis = rng.uniform(0, 2 * np.pi)
    return {
        "theta_E": float(theta_E),
        "gamma": float(rng.uniform(*pop["gamma"])),
        "e1": float(e * np.cos(2 * phi)),
        "e2": float(e * np.sin(2 * phi)),
        "center_x": float(cx),
        "center_y": float(cy),
        "gamma1": float(g * np.cos(2 * phig)),
        "gamma2": float(g * np.sin(2 * phig)),
        "source_center_x": float(cx + r * np.cos(phis)),
        "source_center_y": float(cy + r * np.sin(phis)),
        "source_r50": float(rng.uniform(*pop["source_r50"])),
        "source_angle": float(rng.uniform(0, 2 * np.pi)),
        "source_flip": bool(rng.uniform() < 0.5),
        "peak_snr": float(rng.uniform(*pop["peak_snr"])),
    }


def _grid():
    from vaelens.lensing import PixelGrid

    return PixelGrid((NUM_PIX, NUM_PIX), PIXEL_SCALE)


def _image_model(psf: np.ndarray):
    from lenstronomy.Data.imaging_data import ImageData as LtImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    grid = _grid()
    data = LtImageData(
        image_data=np.zeros((NUM_PIX, NUM_PIX)),
        ra_at_xy_0=float(grid.ra_at_xy_0),
        dec_at_xy_0=float(grid.dec_at_xy_0),
        transform_pix2angle=np.asarray(grid.transform, float),
        background_rms=BKG_RMS,
        exposure_time=EXPOSURE_TIME,
    )
    return ImageModel(
        data,
        PSF(psf_type="PIXEL", kernel_point_source=psf),
        lens_model_class=LensModel(["EPL", "SHEAR"]),
        source_model_class=LightModel(["INTERPOL"]),
        kwargs_numerics={"supersampling_factor": SUPERSAMPLING},
    )


def source_kwargs(source: SourceStamp, truth: dict[str, Any], amp: float = 1.0) -> dict:
    """lenstronomy ``INTERPOL`` keywords of ``source`` placed as in ``truth``."""
    image = source.image[:, ::-1] if truth["source_flip"] else source.image
    scale = truth["source_r50"] / source.r50_pix  # arcsec per source-stamp pixel
    return {
        "image": amp * image / scale**2,  # surface brightness, flux per arcsec^2
        "center_x": truth["source_center_x"],
        "center_y": truth["source_center_y"],
        "phi_G": truth["source_angle"],
        "scale": scale,
    }


def lens_kwargs(truth: dict[str, Any]) -> list[dict]:
    """lenstronomy ``EPL`` + ``SHEAR`` keywords of ``truth``."""
    epl = {k: truth[k] for k in ("theta_E", "gamma", "e1", "e2", "center_x", "center_y")}
    return [epl, {"gamma1": truth["gamma1"], "gamma2": truth["gamma2"], "ra_0": 0, "dec_0": 0}]


def _amplitude(peak: float, snr: float) -> float:
    """Flux scale so that a unit-amplitude image of peak ``peak`` reaches pixel S/N ``snr``."""
    s2, t = snr**2, EXPOSURE_TIME
    target = 0.5 * (s2 / t + np.sqrt(s2**2 / t**2 + 4 * s2 * BKG_RMS**2))
    return float(target / peak)


def make_mock(seed: int, sources: list[SourceStamp], psf: np.ndarray) -> dict[str, Any]:
    """One mock: ``image``, ``model`` (noise-free), ``psf``, ``truth``, ``source`` (its stamp).

    The source is ``sources[seed % len(sources)]`` (a VAE stamp is given the full width of the
    fit's source-size prior instead of a half-light radius) and the lens and placement come from
    ``numpy.random.default_rng(seed)``, so a seed always gives the same mock.
    """
    if not sources:
        raise ValueError("no source galaxies given")
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    rng = np.random.default_rng([int(seed), 20261203])
    source = sources[int(seed) % len(sources)]
    truth = draw_truth(rng)
    if source.kind == "vae":
        # a decoded stamp at the fit's own prior of its full width (1.92" x LogNormal(0, 0.2))
        size = 1.92 * float(np.exp(0.2 * rng.normal()))
        truth["source_r50"] = size / source.image.shape[-1] * source.r50_pix
    model_class = _image_model(psf)
    unit = model_class.image(
        kwargs_lens=lens_kwargs(truth), kwargs_source=[source_kwargs(source, truth)]
    )
    amp = _amplitude(float(unit.max()), truth["peak_snr"])
    model = amp * unit
    counts = rng.poisson(np.clip(model, 0, None) * EXPOSURE_TIME) / EXPOSURE_TIME
    image = counts + BKG_RMS * rng.normal(size=model.shape)
    truth.update(
        source_amp=amp,
        source_name=source.name,
        source_kind=source.kind,
        source_scale=truth["source_r50"] / source.r50_pix,
        source_smoothing_sigma=source.smoothing_sigma,
        seed=int(seed),
    )
    return {"image": image, "model": model, "psf": psf, "truth": truth, "source": source}


def write_mock(folder: Path, mock: dict[str, Any]) -> None:
    """``image.fits``, ``psf.fits``, ``source.fits`` and ``truth.json`` in ``folder``."""
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    x, y = _grid().coordinates_numpy()
    hdr = fits.Header()
    hdr["PIXSCALE"] = (PIXEL_SCALE, "arcsec per pixel")
    hdr["BKG_RMS"] = (BKG_RMS, "background rms, e-/s")
    hdr["EXPTIME"] = (EXPOSURE_TIME, "exposure time [s]")
    hdr["BUNIT"] = "ELECTRONS/S"
    hdr["RA0"] = (float(x[0, 0]), "arcsec x of pixel (0,0)")
    hdr["DEC0"] = (float(y[0, 0]), "arcsec y of pixel (0,0)")
    hdr["ORIGIN"] = "benchmarks/calibration_mocks.py (lenstronomy)"
    fits.PrimaryHDU(mock["image"].astype(np.float32), header=hdr).writeto(
        folder / "image.fits", overwrite=True
    )
    fits.PrimaryHDU(mock["psf"].astype(np.float32)).writeto(folder / "psf.fits", overwrite=True)
    fits.PrimaryHDU(mock["source"].image.astype(np.float32)).writeto(
        folder / "source.fits", overwrite=True
    )
    (folder / "truth.json").write_text(json.dumps({"parameters": mock["truth"]}, indent=1) + "\n")
