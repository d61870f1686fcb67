"""Observed lens image: pixels, noise model, PSF, mask and pixel grid.

:class:`ImageData` is the single object a lens model needs from the data side. It holds

* the image (any flux units, e.g. electrons/s), with non-finite pixels replaced by zero and
  excluded from the likelihood through the mask;
* a noise model, either a fixed noise map (standard deviation per pixel) or the lenstronomy
  model-dependent variance ``bkg_rms**2 + max(model, 0) / exposure_time`` with a scalar exposure
  time or an exposure map (Birrer & Amara 2018, lenstronomy ``ImageLikelihood``);
* the PSF kernel (normalised to unit sum), or None for no convolution;
* the likelihood mask (True / nonzero = pixel used, the lenstronomy ``likelihood_mask`` convention);
* the :class:`vaelens.lensing.PixelGrid` mapping pixels to arcsec.

``ImageData`` is a registered JAX pytree: the pixel arrays and noise parameters (``image``,
``psf``, ``noise_map``, ``mask``, ``exposure_time``, ``bkg_rms``) are its leaves and the grid its
static part, so the data enter compiled programs (``jax.jit``, the optimisers and samplers of
:mod:`vaelens.infer`) as arguments and one compiled program serves any image of the same shapes.
Rebuilding an instance from leaves (inside a transformation) skips the validation of the
constructor.

``vaelens.data`` must stay importable without :mod:`vaelens.lensing`, so the grid class is imported
where it is needed, not at module import time.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from vaelens.lensing import PixelGrid

__all__ = ["ImageData"]

ArrayOrPath = np.ndarray | str | os.PathLike | None


def _read_array(source: ArrayOrPath, name: str, hdu: int | str = 0) -> np.ndarray | None:
    """A float64 array from an array-like or the ``hdu`` of a FITS file."""
    if source is None:
        return None
    if isinstance(source, str | os.PathLike):
        from astropy.io import fits

        with fits.open(source) as hdul:
            data = hdul[hdu].data
            if data is None:
                raise ValueError(f"{name}: HDU {hdu!r} of {os.fspath(source)} holds no image")
            return np.array(data, dtype=np.float64)
    return np.array(source, dtype=np.float64)


def _check_shape(arr: np.ndarray | None, shape: tuple[int, ...], name: str) -> None:
    if arr is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape} but the image has shape {shape}")


_LEAVES = ("image", "psf", "noise_map", "mask", "exposure_time", "bkg_rms")
_STATIC = ("grid", "pixel_scale")


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    """An observed image with its noise model, PSF, mask and pixel grid.

    Parameters
    ----------
    image
        ``(ny, nx)`` pixel values (flux per pixel, e.g. electrons/s). Non-finite pixels are set
        to zero and masked, with a warning.
    grid
        :class:`vaelens.lensing.PixelGrid` of the image (pixel centres in arcsec). Default: a grid
        centred on the image with ``pixel_scale``.
    psf
        PSF kernel (any 2-d shape, odd sizes preferred); normalised to unit sum (with a warning
        if it was not). None: no PSF convolution.
    noise_map
        Standard deviation of every pixel (same units as ``image``), positive. Overrides the
        ``bkg_rms`` / ``exposure_time`` model.
    bkg_rms
        Background noise standard deviation (image units), positive.
    exposure_time
        Exposure time in seconds, a positive scalar or an ``(ny, nx)`` exposure map; adds the
        Poisson variance ``max(model, 0) / exposure_time`` of an image in counts/s. None: no
        Poisson term (pure background noise).
    mask
        Boolean ``(ny, nx)`` array, True (nonzero) where the pixel enters the likelihood.
        Default: all finite pixels.
    pixel_scale
        Arcsec per pixel, only used to build the default ``grid``.

    Raises
    ------
    ValueError
        Shape mismatches, a non-positive noise map, ``bkg_rms`` or exposure time, no noise model,
        an empty mask, or a PSF with a non-positive or non-finite sum.

    Examples
    --------
    >>> data = ImageData(np.zeros((40, 40)), bkg_rms=0.01, exposure_time=1000.0, pixel_scale=0.05)
    >>> data.shape, int(data.mask.sum())
    ((40, 40), 1600)
    """

    image: np.ndarray
    grid: PixelGrid | None = None
    psf: np.ndarray | None = None
    noise_map: np.ndarray | None = None
    bkg_rms: float | None = None
    exposure_time: float | np.ndarray | None = None
    mask: np.ndarray | None = None
    pixel_scale: float | None = None

    def __post_init__(self) -> None:
        image = np.array(self.image, dtype=np.float64)
        if image.ndim != 2:
            raise ValueError(f"image must be 2-d, got shape {image.shape}")
        shape = image.shape
        set_ = object.__setattr__

        mask = np.ones(shape, bool) if self.mask is None else np.asarray(self.mask)
        _check_shape(mask, shape, "mask")
        mask = np.array(mask != 0, dtype=bool)

        bad = ~np.isfinite(image)
        if bad.any():
            warnings.warn(
                f"{int(bad.sum())} non-finite image pixels (NaN/inf) are masked",
                UserWarning,
                stacklevel=3,
            )
            mask &= ~bad
            image = np.where(bad, 0.0, image)

        noise_map = None
        if self.noise_map is not None:
            noise_map = np.array(self.noise_map, dtype=np.float64)
            _check_shape(noise_map, shape, "noise_map")
            bad_noise = ~np.isfinite(noise_map)
            if bad_noise.any():
                warnings.warn(
                    f"{int(bad_noise.sum())} non-finite noise-map pixels are masked",
                    UserWarning,
                    stacklevel=3,
                )
                mask &= ~bad_noise
                noise_map = np.where(bad_noise, 1.0, noise_map)
            if np.any(noise_map[mask] <= 0):
                raise ValueError("noise_map must be positive on every unmasked pixel")
        else:
            if self.bkg_rms is None:
                raise ValueError("no noise model: give noise_map, or bkg_rms (and exposure_time)")
            if not np.isfinite(self.bkg_rms) or float(self.bkg_rms) <= 0:
                raise ValueError(f"bkg_rms must be positive and finite, got {self.bkg_rms}")
        set_(self, "bkg_rms", None if self.bkg_rms is None else float(self.bkg_rms))

        exposure = self.exposure_time
        if exposure is not None:
            exposure = np.array(exposure, dtype=np.float64)
            if exposure.ndim == 0:
                if not np.isfinite(exposure) or exposure <= 0:
                    raise ValueError(f"exposure_time must be positive, got {float(exposure)}")
                exposure = float(exposure)
            else:
                _check_shape(exposure, shape, "exposure map")
                if np.any(~np.isfinite(exposure[mask])) or np.any(exposure[mask] <= 0):
                    raise ValueError("exposure map must be positive on every unmasked pixel")
                exposure = np.where(mask & np.isfinite(exposure) & (exposure > 0), exposure, 1.0)

        psf = None
        if self.psf is not None:
            psf = np.array(self.psf, dtype=np.float64)
            if psf.ndim != 2:
                raise ValueError(f"psf must be 2-d, got shape {psf.shape}")
            total = psf.sum()
            if not np.all(np.isfinite(psf)) or not total > 0:
                raise ValueError("psf must be finite with a positive sum")
            if abs(total - 1.0) > 1e-3:
                warnings.warn(
                    f"PSF sums to {total:.6g}, not 1; it is normalised", UserWarning, stacklevel=3
                )
            psf = psf / total

        if not mask.any():
            raise ValueError("the mask excludes every pixel")

        grid = self.grid
        if grid is None:
            if self.pixel_scale is None:
                raise ValueError("give a PixelGrid (grid=) or a pixel_scale")
            from vaelens.lensing import PixelGrid

            grid = PixelGrid(shape, float(self.pixel_scale))
        if tuple(grid.shape) != shape:
            raise ValueError(f"grid has shape {tuple(grid.shape)} but the image has shape {shape}")

        set_(self, "image", image)
        set_(self, "mask", mask)
        set_(self, "noise_map", noise_map)
        set_(self, "exposure_time", exposure)
        set_(self, "psf", psf)
        set_(self, "grid", grid)
        set_(self, "pixel_scale", float(grid.pixel_scale))

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the image."""
        return self.image.shape

    @property
    def num_pixels(self) -> int:
        """Number of pixels in the likelihood (unmasked)."""
        return int(self.mask.sum())

    def variance(self, model: Any) -> Any:
        """Per-pixel noise variance for a model image (traceable with jax).

        Parameters
        ----------
        model
            ``(ny, nx)`` model image in the image's units (ignored with a fixed noise map).

        Returns
        -------
        array
            ``noise_map**2``, or ``bkg_rms**2 + max(model, 0) / exposure_time`` (lenstronomy's
            ``Data.C_D_model``); units of ``image**2``.
        """
        import jax.numpy as jnp

        if self.noise_map is not None:
            return jnp.asarray(self.noise_map**2)
        var = self.bkg_rms**2 * jnp.ones_like(model)
        if self.exposure_time is None:
            return var
        return var + jnp.maximum(model, 0.0) / jnp.asarray(self.exposure_time)

    def __repr__(self) -> str:
        noise = (
            "noise_map"
            if self.noise_map is not None
            else f"bkg_rms={self.bkg_rms:.4g}, exposure_time="
            + ("map" if isinstance(self.exposure_time, np.ndarray) else f"{self.exposure_time}")
        )
        psf = "None" if self.psf is None else f"{self.psf.shape}"
        return (
            f"ImageData(shape={self.shape}, pixel_scale={self.pixel_scale:.4g}, {noise}, "
            f"psf={psf}, unmasked={self.num_pixels})"
        )

    # ------------------------------------------------------------------ pytree
    def _tree_flatten(self):
        return (
            tuple(getattr(self, k) for k in _LEAVES),
            tuple(getattr(self, k) for k in _STATIC),
        )

    @classmethod
    def _tree_unflatten(cls, static, leaves) -> ImageData:
        obj = object.__new__(cls)
        for name, value in zip(_LEAVES, leaves, strict=True):
            object.__setattr__(obj, name, value)
        for name, value in zip(_STATIC, static, strict=True):
            object.__setattr__(obj, name, value)
        return obj

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_fits(
        cls,
        image: str | os.PathLike,
        psf: ArrayOrPath = None,
        noise_map: ArrayOrPath = None,
        mask: ArrayOrPath = None,
        pixel_scale: float | None = None,
        bkg_rms: float | None = None,
        exposure_time: float | np.ndarray | None = None,
        hdu: int | str = 0,
    ) -> ImageData:
        """Read an image (and optionally PSF, noise map, mask) from FITS files.

        Parameters
        ----------
        image
            Path of the image FITS file; pixels are read from ``hdu``.
        psf, noise_map, mask
            Arrays or paths of FITS files (primary HDU).
        pixel_scale
            Arcsec per pixel; overrides the header. Otherwise the header's ``PIXSCALE`` or its CD
            matrix defines the grid (see :meth:`vaelens.lensing.PixelGrid.from_fits_header`);
            ``RA0``/``DEC0`` give the arcsec coordinates of pixel (0, 0).
        bkg_rms, exposure_time
            Noise model; default from the header keys ``BKG_RMS`` and ``EXPTIME``, and an
            ``EXPMAP`` image extension (exposure map, s) if present. Ignored when ``noise_map``
            is given.
        hdu
            HDU index or name of the image.

        Returns
        -------
        ImageData

        Raises
        ------
        ValueError
            If the pixel scale or the noise model cannot be determined, or the inputs are
            inconsistent (see :class:`ImageData`).
        """
        from astropy.io import fits

        from vaelens.lensing import PixelGrid

        with fits.open(image) as hdul:
            header = hdul[hdu].header
            if hdul[hdu].data is None:
                raise ValueError(f"HDU {hdu!r} of {os.fspath(image)} holds no image")
            pixels = np.array(hdul[hdu].data, dtype=np.float64)
            expmap = None
            if noise_map is None and exposure_time is None and "EXPMAP" in hdul:
                expmap = np.array(hdul["EXPMAP"].data, dtype=np.float64)
        if pixels.ndim != 2:
            raise ValueError(f"image must be 2-d, got shape {pixels.shape}")
        shape = pixels.shape

        if pixel_scale is not None:
            ra0, dec0 = header.get("RA0"), header.get("DEC0")
            if ra0 is not None and dec0 is not None:
                grid = PixelGrid(shape, float(pixel_scale), float(ra0), float(dec0))
            else:
                grid = PixelGrid(shape, float(pixel_scale))
        else:
            try:
                grid = PixelGrid.from_fits_header(header, shape=shape)
            except ValueError as err:
                raise ValueError(f"{err}; pass pixel_scale= to ImageData.from_fits") from err

        noise = _read_array(noise_map, "noise_map")
        if noise is None:
            if bkg_rms is None:
                bkg_rms = header.get("BKG_RMS")
            if exposure_time is None:
                exposure_time = expmap if expmap is not None else header.get("EXPTIME")
            if bkg_rms is None:
                raise ValueError(
                    "no noise model: pass noise_map=, or bkg_rms= (and exposure_time=), or "
                    "provide BKG_RMS/EXPTIME in the header"
                )
        mask_arr = _read_array(mask, "mask")
        return cls(
            image=pixels,
            grid=grid,
            psf=_read_array(psf, "psf"),
            noise_map=noise,
            bkg_rms=None if noise is not None else float(bkg_rms),
            exposure_time=None if noise is not None else exposure_time,
            mask=None if mask_arr is None else mask_arr != 0,
        )


jax.tree_util.register_pytree_node(ImageData, ImageData._tree_flatten, ImageData._tree_unflatten)
