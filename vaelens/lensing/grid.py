"""Regular pixel grids: pixel-centre coordinates, supersampling and block averaging.

The pixel-to-angle convention is lenstronomy's ``PixelGrid``: for column index ``i`` and row
index ``j`` of an image of shape ``(ny, nx)``,

.. math::
    x = x_0 + T_{00}\\, i + T_{01}\\, j, \\qquad y = y_0 + T_{10}\\, i + T_{11}\\, j,

with ``(x_0, y_0) = (ra_at_xy_0, dec_at_xy_0)`` the angular position (arcsec) of the centre of
pixel ``(0, 0)`` and ``T`` the 2x2 ``transform_pix2angle`` matrix (arcsec per pixel).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._validation import check_finite, check_positive

__all__ = ["PixelGrid"]

_ARCSEC_PER_DEG = 3600.0


@dataclasses.dataclass(frozen=True)
class PixelGrid:
    """A regular grid of pixels on the sky (static: hashable, not a pytree).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` = (rows, columns) of the image.
    pixel_scale : float
        Pixel size in arcsec; used for the default transform ``diag(pixel_scale, pixel_scale)``.
        When ``transform_pix2angle`` is given, ``pixel_scale`` is recomputed as
        ``sqrt(|det T|)``.
    ra_at_xy_0, dec_at_xy_0 : float, optional
        Coordinates (arcsec) of the centre of pixel ``(row 0, column 0)``. By default the grid
        is centred so that the image centre is at ``(0, 0)``.
    transform_pix2angle : array_like, optional
        2x2 matrix ``T`` mapping (column, row) pixel offsets to (x, y) arcsec offsets.

    Notes
    -----
    Instances are immutable and hashable so they can be passed as static arguments to
    :func:`jax.jit`.
    """

    shape: tuple[int, int]
    pixel_scale: float
    ra_at_xy_0: float | None = None
    dec_at_xy_0: float | None = None
    transform_pix2angle: Any = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in np.atleast_1d(self.shape))
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (ny, nx) with positive entries, got {self.shape!r}")
        if self.transform_pix2angle is None:
            check_positive("pixel_scale", self.pixel_scale)
            s = float(self.pixel_scale)
            t = ((s, 0.0), (0.0, s))
        else:
            tm = np.asarray(self.transform_pix2angle, dtype=float)
            if tm.shape != (2, 2):
                raise ValueError(f"transform_pix2angle must be 2x2, got shape {tm.shape}")
            check_finite("transform_pix2angle", tm)
            det = abs(float(np.linalg.det(tm)))
            if det <= 0.0:
                raise ValueError("transform_pix2angle must be non-singular")
            t = tuple(tuple(float(v) for v in row) for row in tm)
            s = float(np.sqrt(det))
        ny, nx = shape
        tm = np.asarray(t)
        if self.ra_at_xy_0 is None or self.dec_at_xy_0 is None:
            centre = tm @ np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
            x0 = -centre[0] if self.ra_at_xy_0 is None else float(self.ra_at_xy_0)
            y0 = -centre[1] if self.dec_at_xy_0 is None else float(self.dec_at_xy_0)
        else:
            x0, y0 = float(self.ra_at_xy_0), float(self.dec_at_xy_0)
        check_finite("ra_at_xy_0", x0)
        check_finite("dec_at_xy_0", y0)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "pixel_scale", s)
        object.__setattr__(self, "ra_at_xy_0", float(x0))
        object.__setattr__(self, "dec_at_xy_0", float(y0))
        object.__setattr__(self, "transform_pix2angle", t)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_fits_header(cls, header: Any, shape: tuple[int, int] | None = None) -> PixelGrid:
        """Build a grid from a FITS header.

        The pixel-to-angle matrix is read, in order of preference, from the ``CD`` matrix
        (``CD1_1``, ``CD1_2``, ``CD2_1``, ``CD2_2``, degrees per pixel; ``CD1_1 < 0`` means that
        x, like RA, grows to the left), from ``CDELT1/2`` (with an optional ``PC`` matrix), or
        from ``PIXSCALE`` (arcsec per pixel, ``T = diag(PIXSCALE, PIXSCALE)``). ``RA0`` and
        ``DEC0``, if present, are the coordinates in arcsec of the centre of pixel (0, 0);
        otherwise the grid is centred on the image.

        Parameters
        ----------
        header : mapping
            An :class:`astropy.io.fits.Header` or any mapping with the keys above.
        shape : tuple of int, optional
            ``(ny, nx)``; defaults to ``(NAXIS2, NAXIS1)``.
        """
        if shape is None:
            if "NAXIS1" not in header or "NAXIS2" not in header:
                raise ValueError("header has no NAXIS1/NAXIS2; pass shape=(ny, nx)")
            shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        if "CD1_1" in header:
            t = np.array(
                [
                    [header.get("CD1_1", 0.0), header.get("CD1_2", 0.0)],
                    [header.get("CD2_1", 0.0), header.get("CD2_2", 0.0)],
                ],
                dtype=float,
            )
            t = t * _ARCSEC_PER_DEG
        elif "CDELT1" in header and "CDELT2" in header:
            pc = np.array(
                [
                    [header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
                    [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)],
                ],
                dtype=float,
            )
            cdelt = np.array([header["CDELT1"], header["CDELT2"]], dtype=float)
            t = cdelt[:, None] * pc * _ARCSEC_PER_DEG
        elif "PIXSCALE" in header:
            p = float(header["PIXSCALE"])
            check_positive("PIXSCALE", p)
            return cls(
                shape=shape,
                pixel_scale=p,
                ra_at_xy_0=header.get("RA0", None),
                dec_at_xy_0=header.get("DEC0", None),
            )
        else:
            raise ValueError("header has neither a CD matrix, CDELT1/2 nor PIXSCALE")
        ra0 = header.get("RA0", None)
        dec0 = header.get("DEC0", None)
        return cls(
            shape=shape,
            pixel_scale=float(np.sqrt(abs(np.linalg.det(t)))),
            ra_at_xy_0=None if ra0 is None else float(ra0),
            dec_at_xy_0=None if dec0 is None else float(dec0),
            transform_pix2angle=t,
        )

    # ------------------------------------------------------------------ properties
    @property
    def ny(self) -> int:
        """Number of rows."""
        return self.shape[0]

    @property
    def nx(self) -> int:
        """Number of columns."""
        return self.shape[1]

    @property
    def transform(self) -> np.ndarray:
        """The 2x2 pixel-to-angle matrix ``T`` (arcsec per pixel) as a NumPy array."""
        return np.asarray(self.transform_pix2angle, dtype=float)

    @property
    def pixel_area(self) -> float:
        """Solid angle of one pixel, ``|det T|`` in arcsec^2."""
        return float(abs(np.linalg.det(self.transform)))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(left, right, bottom, top)`` of the pixel edges, for ``imshow(origin='lower')``.

        Exact for diagonal transforms; for rotated grids it is the extent along the axes of
        the corner pixels.
        """
        t = self.transform
        x0, y0 = self.ra_at_xy_0, self.dec_at_xy_0
        left = x0 - 0.5 * t[0, 0]
        right = x0 + (self.nx - 0.5) * t[0, 0]
        bottom = y0 - 0.5 * t[1, 1]
        top = y0 + (self.ny - 0.5) * t[1, 1]
        return (left, right, bottom, top)

    # ------------------------------------------------------------------ coordinates
    def _pixel_to_angle(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.transform
        x = self.ra_at_xy_0 + t[0, 0] * col + t[0, 1] * row
        y = self.dec_at_xy_0 + t[1, 0] * col + t[1, 1] * row
        return x, y

    def coordinates_numpy(self, factor: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """NumPy version of :meth:`supersampled_coordinates` (float64)."""
        factor = _check_factor(factor)
        ny, nx = self.shape
        sub = (np.arange(factor) + 0.5) / factor - 0.5
        cols = (np.arange(nx)[:, None] + sub[None, :]).reshape(-1)
        rows = (np.arange(ny)[:, None] + sub[None, :]).reshape(-1)
        col, row = np.meshgrid(cols, rows)
        return self._pixel_to_angle(col, row)

    def coordinates(self, dtype: Any = None) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Pixel-centre coordinates.

        Returns
        -------
        x, y : jax.Array
            Each of shape ``(ny, nx)``, in arcsec.
        """
        return self.supersampled_coordinates(1, dtype=dtype)

    def supersampled_coordinates(
        self, factor: int, dtype: Any = None
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Centres of the ``factor x factor`` sub-pixels of every pixel.

        Sub-pixel ``(a, b)`` of pixel ``(row, col)`` sits at row ``row*factor + a`` and column
        ``col*factor + b`` of the returned arrays, so :meth:`downsample` (block average) maps a
        supersampled image back onto the grid.

        Returns
        -------
        x, y : jax.Array
            Each of shape ``(ny*factor, nx*factor)``, in arcsec.
        """
        x, y = self.coordinates_numpy(factor)
        return jnp.asarray(x, dtype=dtype), jnp.asarray(y, dtype=dtype)

    def downsample(self, image: jnp.ndarray, factor: int) -> jnp.ndarray:
        """Block-average a ``(ny*factor, nx*factor)`` image onto the ``(ny, nx)`` grid."""
        factor = _check_factor(factor)
        ny, nx = self.shape
        if tuple(image.shape[-2:]) != (ny * factor, nx * factor):
            raise ValueError(
                f"image of shape {tuple(image.shape)} does not match grid {self.shape} "
                f"supersampled by {factor}"
            )
        return block_average(image, factor)


def block_average(image: jnp.ndarray, factor: int) -> jnp.ndarray:
    """Mean over non-overlapping ``factor x factor`` blocks of the last two axes."""
    if factor == 1:
        return image
    # A sum of strided slices instead of a reshape + reduce: XLA:CPU (jax 0.10) can compile a
    # reduction fused with an expensive producer (gathers, series) into a very slow kernel.
    out = 0.0
    for a in range(factor):
        for b in range(factor):
            out = out + image[..., a::factor, b::factor]
    return out / (factor * factor)


def _check_factor(factor: Any) -> int:
    if isinstance(factor, bool) or int(factor) != factor or int(factor) < 1:
        raise ValueError(f"supersampling factor must be a positive integer, got {factor!r}")
    return int(factor)
