"""Single-galaxy training stamps cut out of a survey image (detection and deblending by photutils).

:func:`make_cutouts` turns a field with several galaxies into stamps of one galaxy each, and
:func:`write_real_galaxy_catalog` writes them as a GalSim ``RealGalaxyCatalog`` (the format
:func:`vaelens.data.load_real_galaxy_catalog` reads), so that a survey's own images can train
the source prior. The steps:

1. **Noise and background.** From a noise map (per-pixel rms) or a weight map (inverse
   variance) when one is given; otherwise from the source-free pixels of the field: the
   sigma-clipped median and standard deviation of the pixels left after masking every source
   detected at ``mask_nsigma`` (dilated by a disk of ``mask_dilation`` pixels), iterated twice.
   The (scalar) background, the sigma-clipped median of the source-free pixels, is subtracted.
2. **Detection.** The field is smoothed with a circular Gaussian of the PSF's FWHM (the matched
   filter of a point source) and every group of at least ``min_area`` connected pixels above
   ``nsigma`` times the rms *of the smoothed noise* (``rms * sqrt(sum kernel^2)``) is a source
   (:func:`photutils.segmentation.detect_sources`).
3. **Deblending.** Blended sources are split by multi-thresholding and watershed
   (:func:`photutils.segmentation.deblend_sources`; ``deblend_contrast`` is the minimum flux
   fraction of a branch, SExtractor's ``DEBLEND_MINCONT``).
4. **Measurement** (:class:`photutils.segmentation.SourceCatalog` on the unsmoothed field):
   centroid, segment flux and its error, Kron flux, area.
5. **Selection.** A source is kept if its segment S/N (``segment_flux / segment_flux_err``) is
   at least ``min_snr``, its stamp lies inside the field and holds only finite pixels, its
   segment fits inside the stamp with ``margin`` pixels to spare, and its neighbours cover at
   most ``max_neighbour_fraction`` of the stamp. Every rejection is recorded with its reason.
6. **Cutting out.** A ``stamp_size`` square box centred on the pixel nearest to the centroid
   (pixel ``stamp_size // 2`` of the stamp on both axes). The pixels of every other source in
   the box, dilated by ``neighbour_dilation`` pixels (but never onto the galaxy's own segment),
   are **replaced by Gaussian noise** of the local rms, as in GalSim's COSMOS
   ``RealGalaxyCatalog`` (Mandelbaum et al. 2012); the draw of each stamp is seeded by
   ``(seed, label)``, so a stamp does not depend on the others. Masking is not offered: the
   catalogue format has no mask, and the noise-replaced pixels keep the stamp's noise white.

The PSF is checked (2-d, odd size, finite, positive sum, no larger than the stamp), normalised
to unit sum and written for every stamp. An even-sized PSF is refused unless ``recentre_psf``
cuts the largest odd box centred on its brightest pixel; a PSF larger than the stamp is refused
unless ``psf_size`` crops it about its centre.

Every input the user can fix raises :class:`CutoutError` (a ``ValueError``) with a one-line
message; photutils is an optional dependency (``pip install 'vaelens[cutouts]'``).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CutoutError",
    "Cutouts",
    "check_psf",
    "estimate_noise",
    "field_pixel_scale",
    "make_cutouts",
    "write_real_galaxy_catalog",
]

log = logging.getLogger(__name__)

#: Side of the stamps (pixels of the field) unless told otherwise: the training stamps' size.
DEFAULT_STAMP_SIZE = 64
#: Fewest source-free pixels (and fraction of the valid pixels) a noise estimate accepts.
MIN_FREE_PIXELS = 100
MIN_FREE_FRACTION = 0.05
#: Pixel scales (arcsec) outside this range are taken for a placeholder WCS, not a measurement.
PLAUSIBLE_PIXEL_SCALE = (1e-3, 60.0)
#: Relative tolerance of the field / PSF pixel-scale check and of a square pixel.
PIXEL_SCALE_RTOL = 0.01

INSTALL_HINT = "pip install 'vaelens[cutouts]' (or: pip install photutils)"


class CutoutError(ValueError):
    """A field, PSF, noise map or option from which no stamps can be cut; one-line message."""


def _photutils_segmentation():
    try:
        import photutils.segmentation as seg
    except ImportError as err:
        raise ModuleNotFoundError(
            f"cutting out galaxies needs photutils, which is not installed: {INSTALL_HINT}"
        ) from err
    return seg


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Cutouts:
    """Single-galaxy stamps cut out of a field, with what is needed to write a catalogue.

    Attributes
    ----------
    stamps : numpy.ndarray
        ``(n, stamp_size, stamp_size)`` float64, background subtracted, neighbours replaced by
        noise; the galaxy's centroid lies within half a pixel of pixel
        ``(stamp_size // 2, stamp_size // 2)``.
    noise_variance : numpy.ndarray
        ``(n,)`` pixel noise variance of each stamp (field units squared): the squared rms, or
        the mean of the noise map's variance over the stamp.
    psf : numpy.ndarray
        The checked PSF, odd-sized, unit sum.
    pixel_scale : float
        Arcsec per pixel.
    sources : astropy.table.Table
        Every detected (deblended) source: ``label`` (segmentation label), ``x``, ``y``
        (0-based pixel centroid in the field), ``flux`` (Kron flux), ``segment_flux``,
        ``segment_flux_err``, ``snr``, ``area`` (pixels), ``neighbour_fraction`` (of the stamp
        replaced by noise), ``ra``, ``dec`` (deg, NaN without a celestial WCS), ``selected`` and
        ``reason`` (why a source was rejected; empty if selected). The selected rows, in order,
        are the stamps.
    segmentation : numpy.ndarray
        ``(ny, nx)`` int32 deblended segmentation map (0: no source).
    background : float
        Background subtracted from the field.
    noise_rms : float
        Median pixel noise rms of the field.
    noise_source : str
        ``"source-free pixels"``, ``"noise map"`` or ``"weight map"``.
    noise_correlation : float
        Scatter of the PSF-smoothed noise over that of white noise (1 for uncorrelated pixels;
        larger for drizzled images); detection thresholds and flux errors include it.
    band : str
        Filter name from the header (``FILTER``), or empty.
    zeropoint : float or None
        AB zero point of the field's units (for ``MAG``), if known.
    seed : int
        Seed of the noise replacing the neighbours.
    """

    stamps: np.ndarray
    noise_variance: np.ndarray
    psf: np.ndarray
    pixel_scale: float
    sources: Any
    segmentation: np.ndarray
    background: float
    noise_rms: float
    noise_source: str
    noise_correlation: float
    band: str
    zeropoint: float | None
    seed: int

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def selected(self):
        """The rows of :attr:`sources` that became stamps (same order)."""
        return self.sources[self.sources["selected"]]

    def rejection_counts(self) -> dict[str, int]:
        """How many detected sources each rejection reason removed."""
        reasons = [
            str(r)
            for r, s in zip(self.sources["reason"], self.sources["selected"], strict=True)
            if not s
        ]
        return _count_reasons(reasons)


def _count_reasons(reasons: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in reasons:
        key = r.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- header helpers
def field_pixel_scale(header: Any) -> float | None:
    """Pixel scale (arcsec) of an image header: ``PIXSCALE``, else its celestial WCS.

    The WCS scale is that of the full linear transformation (``CD``, or ``PC`` times
    ``CDELT``), from :func:`astropy.wcs.utils.proj_plane_pixel_scales`.

    Returns
    -------
    float or None
        None when the header has neither.

    Raises
    ------
    CutoutError
        Non-square pixels, or a scale outside 0.001-60 arcsec (a placeholder WCS).
    """
    if header is None:
        return None
    if "PIXSCALE" in header:
        scale = float(header["PIXSCALE"])
        where = "PIXSCALE"
    else:
        from astropy.wcs import WCS, FITSFixedWarning
        from astropy.wcs.utils import proj_plane_pixel_scales

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                wcs = WCS(header)
            except Exception:  # noqa: BLE001 - any malformed WCS means "no pixel scale"
                return None
        if not wcs.has_celestial:
            return None
        cel = wcs.celestial
        units = {str(u) for u in cel.wcs.cunit}
        if units - {"deg", ""}:
            return None
        scales = proj_plane_pixel_scales(cel) * 3600.0
        if not np.isclose(scales[0], scales[1], rtol=PIXEL_SCALE_RTOL):
            raise CutoutError(
                f"the header's WCS has non-square pixels ({scales[0]:.5g} x {scales[1]:.5g} "
                "arcsec); resample the field to square pixels"
            )
        scale = float(np.sqrt(scales[0] * scales[1]))
        where = "WCS"
    lo, hi = PLAUSIBLE_PIXEL_SCALE
    if not lo <= scale <= hi:
        raise CutoutError(
            f"the header's {where} gives {scale:.5g} arcsec per pixel, not a plausible pixel "
            "scale (a placeholder WCS?); give the pixel scale (--pixel-scale)"
        )
    return scale


def _header_zeropoint(header: Any) -> float | None:
    """AB zero point from ``PHOTFLAM`` and ``PHOTPLAM`` (HST), else ``MAGZERO`` / ``ZP``."""
    if header is None:
        return None
    if "PHOTFLAM" in header and "PHOTPLAM" in header:
        flam, plam = float(header["PHOTFLAM"]), float(header["PHOTPLAM"])
        if flam > 0 and plam > 0:
            return float(-2.5 * np.log10(flam) - 5.0 * np.log10(plam) - 2.408)
    for key in ("MAGZERO", "MAGZPT", "ZP"):
        if key in header:
            return float(header[key])
    return None


def _celestial_wcs(header: Any):
    if header is None:
        return None
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except Exception:  # noqa: BLE001
            return None
    return wcs.celestial if wcs.has_celestial else None


# --------------------------------------------------------------------------- PSF
def check_psf(
    psf: Any,
    stamp_size: int,
    *,
    psf_size: int | None = None,
    recentre: bool = False,
) -> np.ndarray:
    """Check a PSF image and return it odd-sized and normalised to unit sum.

    Parameters
    ----------
    psf : array_like
        2-d PSF image at the field's pixel scale.
    stamp_size : int
        Side of the stamps; the PSF may not be larger.
    psf_size : int, optional
        Crop the PSF to ``psf_size x psf_size`` (odd) about its central pixel first; the flux
        outside is logged.
    recentre : bool
        For an even-sized PSF: cut the largest odd box centred on its brightest pixel instead of
        refusing it.

    Returns
    -------
    numpy.ndarray
        Float64 PSF, odd on both axes, unit sum.

    Raises
    ------
    CutoutError
        Not 2-d, non-finite pixels, a non-positive sum, an even size (without ``recentre``), or
        larger than the stamp (without a ``psf_size`` that fits).
    """
    p = np.array(psf, dtype=np.float64)
    if p.ndim != 2 or min(p.shape) < 1:
        raise CutoutError(f"the PSF must be a 2-d image, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise CutoutError("the PSF has non-finite pixels")
    if not p.sum() > 0:
        raise CutoutError(f"the PSF has a non-positive sum ({p.sum():.3g})")
    if p.shape[0] % 2 == 0 or p.shape[1] % 2 == 0:
        if not recentre:
            raise CutoutError(
                f"the PSF has an even size {p.shape}, so its centre is ambiguous; give an "
                "odd-sized PSF, or recentre it (--recentre-psf: the largest odd box centred on "
                "its brightest pixel)"
            )
        py, px = np.unravel_index(int(np.argmax(p)), p.shape)
        hy = min(py, p.shape[0] - 1 - py)
        hx = min(px, p.shape[1] - 1 - px)
        old = p.shape
        p = p[py - hy : py + hy + 1, px - hx : px + hx + 1]
        log.info("even PSF %s recentred on its peak: %s", old, p.shape)
    if psf_size is not None:
        if psf_size < 1 or psf_size % 2 == 0:
            raise CutoutError(f"psf_size must be a positive odd integer, got {psf_size}")
        if psf_size < max(p.shape):
            cy, cx = p.shape[0] // 2, p.shape[1] // 2
            hy, hx = min(psf_size // 2, cy), min(psf_size // 2, cx)
            total = p.sum()
            p = p[cy - hy : cy + hy + 1, cx - hx : cx + hx + 1]
            log.info(
                "PSF cropped to %s: %.2f%% of its flux left out",
                p.shape,
                100 * (1 - p.sum() / total),
            )
            if not p.sum() > 0:
                raise CutoutError(f"the PSF cropped to {psf_size} px has a non-positive sum")
    if p.shape[0] > stamp_size or p.shape[1] > stamp_size:
        raise CutoutError(
            f"the PSF {p.shape} is larger than the stamp ({stamp_size} x {stamp_size} px): crop "
            f"it about its centre (--psf-size, odd, at most {stamp_size - (stamp_size + 1) % 2}) "
            "or cut larger stamps (--stamp-size)"
        )
    peak = np.array(np.unravel_index(int(np.argmax(p)), p.shape))
    if np.any(np.abs(peak - np.array(p.shape) // 2) > 2):
        warnings.warn(
            f"the PSF's brightest pixel {tuple(int(v) for v in peak)} is more than 2 px from its "
            f"central pixel {tuple(int(v) // 2 for v in p.shape)}: is it centred?",
            UserWarning,
            stacklevel=2,
        )
    return p / p.sum()


def _fwhm_pixels(psf: np.ndarray) -> float:
    """FWHM (pixels) of a PSF from the area of its pixels above half the peak."""
    area = float(np.count_nonzero(psf >= 0.5 * psf.max()))
    return max(2.0 * np.sqrt(area / np.pi), 1.0)


def _gaussian_kernel(fwhm: float) -> np.ndarray:
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    half = max(int(np.ceil(3.0 * sigma)), 1)
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-0.5 * (u / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def _smooth(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(image, kernel, mode="same")


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y) <= r * r + 1e-9


# --------------------------------------------------------------------------- noise
def estimate_noise(
    field: np.ndarray,
    valid: np.ndarray,
    kernel: np.ndarray,
    *,
    mask_nsigma: float = 2.0,
    min_area: int = 5,
    mask_dilation: int = 5,
    rms_map: np.ndarray | None = None,
) -> tuple[float, float, np.ndarray]:
    """Background and noise rms of a field from its source-free pixels.

    Sources are detected in the smoothed field at ``mask_nsigma`` times the smoothed noise
    (starting from the sigma-clipped median of all pixels and the smaller of their clipped
    standard deviation and the robust scatter of neighbouring-pixel differences), dilated by a
    disk of
    ``mask_dilation`` pixels and masked; the sigma-clipped (3 sigma) median and standard
    deviation of the remaining pixels are the background and the rms. Two iterations. With a
    per-pixel ``rms_map`` (a noise map) only the background is measured and the returned rms is
    the map's median.

    Returns
    -------
    (background, rms, source_free)
        Floats in field units and the boolean map of the pixels used.

    Raises
    ------
    CutoutError
        The pixels have no scatter (a constant field), or fewer than 100 (or 5% of the valid
        pixels) are source-free.
    """
    from astropy.stats import sigma_clipped_stats

    seg = _photutils_segmentation()
    _, bkg, rms = sigma_clipped_stats(field[valid], sigma=3.0, maxiters=10)
    # first guess of the rms from neighbouring-pixel differences: blind to smooth light, so a
    # source filling the field does not pass for noise
    pair = valid[:, 1:] & valid[:, :-1]
    if pair.sum() > MIN_FREE_PIXELS:
        diff = (field[:, 1:] - field[:, :-1])[pair]
        rms = min(rms, float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0)))
    if rms_map is not None:
        rms = float(np.median(rms_map[valid]))
    if not rms > 0:
        raise CutoutError(
            "the field's pixels have no scatter (sigma-clipped rms 0), so its noise cannot be "
            "measured from source-free pixels; give a noise map (--noise-map) or a weight map "
            "(--weight)"
        )
    knorm = float(np.sqrt(np.sum(kernel**2)))
    free = valid
    for _ in range(2):
        smoothed = _smooth(np.where(valid, field - bkg, 0.0), kernel)
        level = rms if rms_map is None else np.where(np.isfinite(rms_map), rms_map, 0.0)
        segm = seg.detect_sources(smoothed, mask_nsigma * level * knorm, min_area, mask=~valid)
        if segm is None:
            sources = np.zeros(field.shape, bool)
        else:
            sources = segm.make_source_mask(footprint=_disk(mask_dilation))
        free = valid & ~sources
        need = max(MIN_FREE_PIXELS, int(MIN_FREE_FRACTION * valid.sum()))
        if free.sum() < need:
            raise CutoutError(
                f"only {int(free.sum())} of the field's {int(valid.sum())} pixels are free of "
                f"sources (at least {need} needed to measure the noise); give a noise map "
                "(--noise-map) or a weight map (--weight)"
            )
        _, bkg, rms_free = sigma_clipped_stats(field[free], sigma=3.0, maxiters=10)
        if rms_map is None:
            rms = rms_free
        if not rms > 0:
            raise CutoutError(
                "the field's source-free pixels have no scatter (rms 0); give a noise map "
                "(--noise-map) or a weight map (--weight)"
            )
    return float(bkg), float(rms), free


def _noise_correlation(image, rms_map, free, kernel) -> float:
    """How much more the smoothed noise scatters than white noise would (>= 1).

    The rms of the PSF-smoothed source-free pixels (in units of the local rms) over the
    white-noise value ``sqrt(sum kernel^2)``. Drizzled images have pixel-to-pixel correlated
    noise (a factor ~1.5-2); the detection threshold and the segment flux errors are scaled by
    it (an approximation: the error of a sum over a segment is scaled like that of the
    PSF-weighted sum).
    """
    from astropy.stats import sigma_clipped_stats

    knorm = float(np.sqrt(np.sum(kernel**2)))
    ratio = np.where(free, image / np.where(free, rms_map, 1.0), 0.0)
    smoothed = _smooth(ratio, kernel)
    # pixels whose kernel footprint lies wholly in source-free pixels
    inside = _smooth(free.astype(np.float64), np.ones_like(kernel)) > kernel.size - 0.5
    if inside.sum() < MIN_FREE_PIXELS:
        inside = free
    _, _, std = sigma_clipped_stats(smoothed[inside], sigma=3.0, maxiters=10)
    return float(max(std / knorm, 1.0)) if np.isfinite(std) else 1.0


def _noise_from_maps(field, valid, noise_map, weight) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-pixel rms (and the valid-pixel map updated) from a noise map or a weight map."""
    if noise_map is not None and weight is not None:
        raise CutoutError("give a noise map or a weight map, not both")
    arr = np.array(noise_map if noise_map is not None else weight, dtype=np.float64)
    what = "noise map" if noise_map is not None else "weight map"
    if arr.shape != field.shape:
        raise CutoutError(f"the {what} {arr.shape} and the field {field.shape} differ in shape")
    good = np.isfinite(arr) & (arr > 0)
    if not (good & valid).any():
        raise CutoutError(f"the {what} has no finite positive pixel where the field is finite")
    with np.errstate(divide="ignore", invalid="ignore"):
        rms = arr if noise_map is not None else 1.0 / np.sqrt(arr)
    rms = np.where(good, rms, np.inf)
    return rms, valid & good, what


# --------------------------------------------------------------------------- main function
def make_cutouts(
    field: Any,
    psf: Any,
    *,
    noise_map: Any = None,
    weight: Any = None,
    header: Any = None,
    psf_header: Any = None,
    pixel_scale: float | None = None,
    stamp_size: int = DEFAULT_STAMP_SIZE,
    nsigma: float = 3.0,
    min_area: int = 10,
    min_snr: float = 20.0,
    deblend: bool = True,
    deblend_contrast: float = 0.02,
    margin: int = 2,
    max_neighbour_fraction: float = 0.5,
    neighbour_dilation: int = 2,
    psf_size: int | None = None,
    recentre_psf: bool = False,
    subtract_background: bool = True,
    zeropoint: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> Cutouts:
    """Detect, deblend, select and cut out the galaxies of a field (see the module docstring).

    Parameters
    ----------
    field : array_like
        ``(ny, nx)`` image; non-finite pixels are treated as outside the survey footprint.
    psf : array_like
        PSF image at the field's pixel scale (see :func:`check_psf`).
    noise_map : array_like, optional
        Per-pixel noise rms, the field's shape.
    weight : array_like, optional
        Inverse-variance map, the field's shape (alternative to ``noise_map``). Without either,
        the noise is measured from the field's source-free pixels (:func:`estimate_noise`).
    header, psf_header : astropy.io.fits.Header, optional
        Headers of the field and the PSF: pixel scale (:func:`field_pixel_scale`), celestial
        WCS (``ra``, ``dec``), ``FILTER``, the AB zero point (``PHOTFLAM``/``PHOTPLAM``,
        ``MAGZERO``); a PSF header's pixel scale must match the field's.
    pixel_scale : float, optional
        Arcsec per pixel; overrides the header.
    stamp_size : int
        Side of the square stamps, pixels (default 64).
    nsigma : float
        Detection threshold in units of the rms of the PSF-smoothed noise.
    min_area : int
        Fewest connected pixels of a source (and of a deblended component).
    min_snr : float
        Smallest segment S/N of a kept galaxy.
    deblend : bool
        Split blended sources (photutils ``deblend_sources``).
    deblend_contrast : float
        Minimum flux fraction of a deblended component (0.02; SExtractor's default 0.005
        shreds the disks and star-forming knots of HST galaxies into pieces).
    margin : int
        Pixels kept between a galaxy's segment and the stamp's edge.
    max_neighbour_fraction : float
        Largest fraction of a stamp that neighbours (replaced by noise) may cover.
    neighbour_dilation : int
        Dilation (pixels) of the neighbours' segments before they are replaced by noise, to
        cover their faint outskirts.
    psf_size : int, optional
        Crop the PSF to this odd size about its centre.
    recentre_psf : bool
        Accept an even-sized PSF by cutting the largest odd box centred on its peak.
    subtract_background : bool
        Subtract the scalar background (median of the source-free pixels).
    zeropoint : float, optional
        AB zero point for the ``MAG`` column (default: from the header, else no magnitudes).
    seed : int
        Seed of the Gaussian noise that replaces the neighbours.
    progress : bool, optional
        tqdm progress bar over the sources (None: only for more than 50 sources on a terminal).

    Returns
    -------
    Cutouts

    Raises
    ------
    CutoutError
        Bad field, PSF, noise map or option; no pixel scale; no noise estimate; no source found
        or none usable (the message counts the rejection reasons).
    ModuleNotFoundError
        photutils is not installed.
    """
    seg = _photutils_segmentation()
    data = np.array(field, dtype=np.float64)
    if data.ndim != 2:
        raise CutoutError(f"the field must be a 2-d image, got shape {data.shape}")
    stamp_size = int(stamp_size)
    if stamp_size < 8:
        raise CutoutError(f"stamp_size must be at least 8 pixels, got {stamp_size}")
    if stamp_size > min(data.shape):
        raise CutoutError(f"stamp_size {stamp_size} is larger than the field {data.shape}")
    for name, value in (("nsigma", nsigma), ("min_snr", min_snr)):
        if not (np.isfinite(value) and value > 0):
            raise CutoutError(f"{name} must be a positive number, got {value}")
    if int(min_area) < 1:
        raise CutoutError(f"min_area must be a positive integer, got {min_area}")
    if not 0 < deblend_contrast < 1:
        raise CutoutError(f"deblend_contrast must lie in (0, 1), got {deblend_contrast}")
    if not 0 <= max_neighbour_fraction <= 1:
        raise CutoutError(
            f"max_neighbour_fraction must lie in [0, 1], got {max_neighbour_fraction}"
        )
    valid = np.isfinite(data)
    if not valid.any():
        raise CutoutError("the field has no finite pixel")

    # pixel scale
    scale = pixel_scale if pixel_scale is not None else field_pixel_scale(header)
    if scale is None:
        raise CutoutError(
            "the field has no pixel scale (no PIXSCALE or celestial WCS in its header); give it "
            "(--pixel-scale)"
        )
    if not (np.isfinite(scale) and scale > 0):
        raise CutoutError(f"the pixel scale must be a positive number, got {scale}")
    psf_scale = field_pixel_scale(psf_header) if psf_header is not None else None
    if psf_scale is not None and abs(psf_scale / scale - 1.0) > PIXEL_SCALE_RTOL:
        raise CutoutError(
            f'pixel-scale mismatch: field {scale:.5g}"/px but PSF {psf_scale:.5g}"/px; resample '
            "the PSF to the field's pixel scale"
        )
    kernel_psf = check_psf(psf, stamp_size, psf_size=psf_size, recentre=recentre_psf)
    kernel = _gaussian_kernel(_fwhm_pixels(kernel_psf))

    # noise and background
    if noise_map is not None or weight is not None:
        rms_map, valid, noise_source = _noise_from_maps(data, valid, noise_map, weight)
        bkg, _, free = estimate_noise(data, valid, kernel, min_area=int(min_area), rms_map=rms_map)
    else:
        bkg, rms, free = estimate_noise(data, valid, kernel, min_area=int(min_area))
        rms_map = np.full(data.shape, rms)
        noise_source = "source-free pixels"
    if not subtract_background:
        bkg = 0.0
    image = np.where(valid, data - bkg, 0.0)
    noise_rms = float(np.median(rms_map[valid]))
    correlation = _noise_correlation(image, rms_map, free, kernel)

    # detection and deblending
    knorm = float(np.sqrt(np.sum(kernel**2)))
    smoothed = _smooth(image, kernel)
    threshold = nsigma * np.where(np.isfinite(rms_map), rms_map, 0.0) * knorm * correlation
    segm = seg.detect_sources(smoothed, threshold, int(min_area), mask=~valid)
    if segm is None:
        raise CutoutError(
            f"no source found above {nsigma:g} sigma with at least {int(min_area)} pixels: the "
            "field looks empty (lower --nsigma or --min-area to look deeper)"
        )
    if deblend:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # photutils' "source not deblended" chatter
            segm = seg.deblend_sources(
                smoothed, segm, int(min_area), contrast=deblend_contrast, progress_bar=False
            )
    labels = np.asarray(segm.data, dtype=np.int32)
    error = np.where(np.isfinite(rms_map), rms_map, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = seg.SourceCatalog(image, segm, error=error, mask=~valid, progress_bar=False)
        xy = np.atleast_2d(np.asarray(cat.centroid, dtype=np.float64))
        seg_flux = np.atleast_1d(np.asarray(cat.segment_flux, dtype=np.float64))
        seg_err = np.atleast_1d(np.asarray(_prop(cat, "segment_flux_err", "segment_fluxerr")))
        kron = np.atleast_1d(np.asarray(cat.kron_flux, dtype=np.float64))
        area = np.atleast_1d(np.asarray(getattr(cat.area, "value", cat.area), dtype=np.float64))
        src_labels = np.atleast_1d(np.asarray(cat.labels, dtype=np.int64))
        bboxes = cat.bbox if np.ndim(cat.bbox) else [cat.bbox]
    seg_err = seg_err * correlation  # the pixels' noise correlation (drizzled images)
    snr = np.where(seg_err > 0, seg_flux / np.where(seg_err > 0, seg_err, 1.0), 0.0)

    # selection and cutting out
    ny, nx = data.shape
    half = stamp_size // 2
    stamps, variances, reasons, neighbour_frac = [], [], [], []
    iterator = range(len(src_labels))
    show = progress if progress is not None else (None if len(src_labels) > 50 else False)
    if show is not False:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="cutouts", unit="source", disable=None if show else True)
    footprint = _disk(neighbour_dilation) if neighbour_dilation > 0 else None
    for i in iterator:
        label = int(src_labels[i])
        x, y = xy[i]
        frac = np.nan
        reason = ""
        if not (np.isfinite(x) and np.isfinite(y)):
            reason = "no centroid"
        elif snr[i] < min_snr:
            reason = f"S/N below {min_snr:g} ({snr[i]:.1f})"
        else:
            ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            x0, y0 = ix - half, iy - half
            x1, y1 = x0 + stamp_size, y0 + stamp_size
            bb = bboxes[i]
            if x0 < 0 or y0 < 0 or x1 > nx or y1 > ny:
                reason = "stamp crosses the field edge"
            elif bb.ixmin == 0 or bb.iymin == 0 or bb.ixmax == nx or bb.iymax == ny:
                reason = "touches the field edge"
            elif not valid[y0:y1, x0:x1].all():
                reason = "stamp holds pixels outside the footprint"
            elif (
                bb.ixmin < x0 + margin
                or bb.iymin < y0 + margin
                or bb.ixmax > x1 - margin
                or bb.iymax > y1 - margin
            ):
                reason = f"larger than the stamp ({bb.ixmax - bb.ixmin} x {bb.iymax - bb.iymin} px)"
            else:
                box = labels[y0:y1, x0:x1]
                own = box == label
                others = (box != 0) & ~own
                if footprint is not None and others.any():
                    from scipy.ndimage import binary_dilation

                    others = binary_dilation(others, structure=footprint)
                replace = others & ~own
                frac = float(replace.mean())
                if frac > max_neighbour_fraction:
                    reason = f"neighbours cover too much of the stamp ({100 * frac:.0f}%)"
                else:
                    stamp = image[y0:y1, x0:x1].copy()
                    rms_box = rms_map[y0:y1, x0:x1]
                    rng = np.random.default_rng([int(seed), label])
                    stamp[replace] = rng.normal(0.0, 1.0, int(replace.sum())) * rms_box[replace]
                    stamps.append(stamp)
                    variances.append(float(np.mean(rms_box**2)))
        reasons.append(reason)
        neighbour_frac.append(frac)

    selected = np.array([r == "" for r in reasons], dtype=bool)
    if not selected.any():
        counts = ", ".join(f"{n} {r}" for r, n in _count_reasons(reasons).items())
        raise CutoutError(
            f"{len(reasons)} source(s) detected but none usable as a single-galaxy stamp of "
            f"{stamp_size} px ({counts}); see --min-snr, --stamp-size, --margin"
        )

    from astropy.table import Table

    ra = np.full(len(src_labels), np.nan)
    dec = np.full(len(src_labels), np.nan)
    wcs = _celestial_wcs(header)
    if wcs is not None:
        try:
            sky = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
            ra, dec = np.asarray(sky[0], float), np.asarray(sky[1], float)
        except Exception:  # noqa: BLE001 - a broken WCS leaves RA/DEC unknown
            pass
    sources = Table(
        {
            "label": src_labels,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "flux": kron,
            "segment_flux": seg_flux,
            "segment_flux_err": seg_err.astype(np.float64),
            "snr": snr,
            "area": area,
            "neighbour_fraction": np.asarray(neighbour_frac, dtype=np.float64),
            "ra": ra,
            "dec": dec,
            "selected": selected,
            "reason": np.asarray(reasons, dtype=str),
        }
    )
    band = str(header.get("FILTER", "")).strip() if header is not None else ""
    zp = zeropoint if zeropoint is not None else _header_zeropoint(header)
    log.info(
        "%d of %d detected sources cut out (noise rms %.4g from %s, correlation factor %.2f, "
        "background %.4g)",
        int(selected.sum()),
        len(reasons),
        noise_rms,
        noise_source,
        correlation,
        bkg,
    )
    return Cutouts(
        stamps=np.stack(stamps),
        noise_variance=np.asarray(variances),
        psf=kernel_psf,
        pixel_scale=float(scale),
        sources=sources,
        segmentation=labels,
        background=float(bkg),
        noise_rms=noise_rms,
        noise_source=noise_source,
        noise_correlation=correlation,
        band=band,
        zeropoint=zp,
        seed=int(seed),
    )


def _prop(cat: Any, *names: str) -> Any:
    """A SourceCatalog property under its current or its former photutils name."""
    for name in names:
        if hasattr(type(cat), name):
            return getattr(cat, name)
    raise AttributeError(f"SourceCatalog has none of {names}")


# --------------------------------------------------------------------------- writing
#: File names written by :func:`write_real_galaxy_catalog`, after its ``prefix``.
CATALOG_SUFFIX = "_catalog.fits"
IMAGES_SUFFIX = "_images.fits"
PSF_SUFFIX = "_PSF_images.fits"


def write_catalog_files(
    cutouts: Cutouts,
    folder: str | os.PathLike,
    *,
    prefix: str = "real_galaxy",
    ident_offset: int = 0,
) -> Path:
    """Write the catalogue files into an existing folder (not atomically); see
    :func:`write_real_galaxy_catalog`. Returns the catalogue's path."""
    from astropy.io import fits

    folder = Path(folder)
    if "/" in prefix or not prefix:
        raise CutoutError(f"prefix must be a plain file-name prefix, got {prefix!r}")
    cat_name, img_name, psf_name = (prefix + s for s in (CATALOG_SUFFIX, IMAGES_SUFFIX, PSF_SUFFIX))
    rows = cutouts.selected
    n = len(cutouts)
    idents = np.asarray(rows["label"], dtype=np.int64) + int(ident_offset)

    gal_hdus, psf_hdus = [], []
    for k in range(n):
        hdr = fits.Header()
        hdr["IDENT"] = int(idents[k])
        hdr["PIXSCALE"] = (cutouts.pixel_scale, "arcsec per pixel")
        hdr["NOISEVAR"] = (float(cutouts.noise_variance[k]), "pixel noise variance")
        hdr["FIELD_X"] = (float(rows["x"][k]), "0-based centroid x in the field")
        hdr["FIELD_Y"] = (float(rows["y"][k]), "0-based centroid y in the field")
        cls = fits.PrimaryHDU if k == 0 else fits.ImageHDU
        gal_hdus.append(cls(np.asarray(cutouts.stamps[k], np.float32), header=hdr))
        phdr = fits.Header()
        phdr["PIXSCALE"] = (cutouts.pixel_scale, "arcsec per pixel")
        psf_hdus.append(cls(np.asarray(cutouts.psf, np.float64), header=phdr))
    fits.HDUList(gal_hdus).writeto(folder / img_name)
    fits.HDUList(psf_hdus).writeto(folder / psf_name)

    flux = np.asarray(rows["flux"], dtype=np.float64)
    if cutouts.zeropoint is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            mag = np.where(flux > 0, -2.5 * np.log10(flux) + cutouts.zeropoint, np.nan)
    else:
        mag = np.full(n, np.nan)
    stamp_flux = cutouts.stamps.reshape(n, -1).sum(axis=1)
    fname_len = max(len(img_name), len(psf_name), 1)
    cols = [
        fits.Column(name="IDENT", format="K", array=idents),
        fits.Column(name="RA", format="D", array=np.asarray(rows["ra"], float)),
        fits.Column(name="DEC", format="D", array=np.asarray(rows["dec"], float)),
        fits.Column(name="MAG", format="D", array=mag),
        fits.Column(
            name="BAND", format=f"{max(len(cutouts.band), 1)}A", array=np.array([cutouts.band] * n)
        ),
        fits.Column(name="WEIGHT", format="D", array=np.ones(n)),
        fits.Column(name="GAL_FILENAME", format=f"{fname_len}A", array=np.array([img_name] * n)),
        fits.Column(name="PSF_FILENAME", format=f"{fname_len}A", array=np.array([psf_name] * n)),
        fits.Column(name="GAL_HDU", format="J", array=np.arange(n)),
        fits.Column(name="PSF_HDU", format="J", array=np.arange(n)),
        fits.Column(name="PIXEL_SCALE", format="D", array=np.full(n, cutouts.pixel_scale)),
        fits.Column(name="NOISE_MEAN", format="D", array=np.zeros(n)),
        fits.Column(name="NOISE_VARIANCE", format="D", array=cutouts.noise_variance),
        fits.Column(name="NOISE_FILENAME", format="1A", array=np.array([""] * n)),
        fits.Column(name="stamp_flux", format="D", array=stamp_flux),
        fits.Column(name="FLUX", format="D", array=flux),
        fits.Column(name="SNR", format="D", array=np.asarray(rows["snr"], float)),
        fits.Column(name="AREA", format="D", array=np.asarray(rows["area"], float)),
        fits.Column(name="FIELD_X", format="D", array=np.asarray(rows["x"], float)),
        fits.Column(name="FIELD_Y", format="D", array=np.asarray(rows["y"], float)),
        fits.Column(
            name="NEIGHBOUR_FRAC", format="D", array=np.asarray(rows["neighbour_fraction"], float)
        ),
    ]
    table = fits.BinTableHDU.from_columns(cols)
    table.header["BKG"] = (cutouts.background, "background subtracted from the field")
    table.header["NOISESRC"] = (cutouts.noise_source, "where the noise came from")
    table.header["SEED"] = (cutouts.seed, "seed of the noise replacing neighbours")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(folder / cat_name)
    return folder / cat_name


def write_real_galaxy_catalog(
    cutouts: Cutouts,
    out: str | os.PathLike,
    *,
    prefix: str = "real_galaxy",
    ident_offset: int = 0,
    force: bool = False,
) -> Path:
    """Write cutouts as a GalSim ``RealGalaxyCatalog`` into a new folder, atomically.

    Files (``prefix`` ``real_galaxy`` by default): ``real_galaxy_catalog.fits`` (table in HDU 1:
    ``IDENT``, ``RA``, ``DEC``, ``MAG``, ``BAND``, ``WEIGHT``, ``GAL_FILENAME``,
    ``PSF_FILENAME``, ``GAL_HDU``, ``PSF_HDU``, ``PIXEL_SCALE``, ``NOISE_MEAN``,
    ``NOISE_VARIANCE``, ``NOISE_FILENAME``, ``stamp_flux`` as in GalSim's COSMOS catalogues,
    plus ``FLUX`` (Kron), ``SNR``, ``AREA``, ``FIELD_X``, ``FIELD_Y``, ``NEIGHBOUR_FRAC``),
    ``real_galaxy_images.fits`` (one float32 stamp per HDU, HDU 0 first) and
    ``real_galaxy_PSF_images.fits`` (the PSF for every stamp). ``IDENT`` is the segmentation
    label plus ``ident_offset``. The folder is written under a temporary name and renamed when
    complete (:func:`vaelens.io_results.atomic_output_dir`).

    Returns
    -------
    pathlib.Path
        The catalogue file, for :func:`vaelens.data.load_real_galaxy_catalog`.
    """
    from vaelens.io_results import atomic_output_dir

    with atomic_output_dir(out, force=force) as tmp:
        name = write_catalog_files(cutouts, tmp, prefix=prefix, ident_offset=ident_offset).name
    return Path(out).expanduser().absolute() / name
