"""Several bands of one lens: :class:`MultiBandData` and their placement in one angular frame.

A joint fit of several bands (HST, JWST, Euclid filters) needs every band in one coordinate
frame: one mass model and one source are placed in it and each band is rendered on its own
grid. Each band is an :class:`vaelens.data.ImageData` with its own PSF, noise model, mask and
:class:`vaelens.lensing.PixelGrid` (pixel scales, sizes and orientations may differ); the
grids' ``ra_at_xy_0`` / ``dec_at_xy_0`` (arcsec) put them in the common frame.

:func:`frame_offsets` computes those origins from the bands' FITS world coordinate systems
(``CRVAL``/``CRPIX`` with a ``CD`` or ``CDELT`` matrix): every band's pixel ``(0, 0)`` is
projected gnomonically onto the tangent plane at the centre of the reference (first) band, so
the coordinate origin is that centre, as for a single band. Headers with ``RA0``/``DEC0``
(arcsec coordinates of pixel ``(0, 0)``, see :meth:`vaelens.lensing.PixelGrid.from_fits_header`)
are already in a common frame.

:class:`MultiBandData` checks that the bands overlap on the sky and share their flux units
(``BUNIT``), and records the ratio of each band's flux to the reference band's (the prior
median of the band amplitudes of :func:`vaelens.models.multiband_lens_model`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vaelens.data.image_data import ImageData

__all__ = [
    "MultiBandData",
    "as_multiband",
    "frame_offsets",
    "has_wcs",
    "load_multiband",
    "place_band",
]

_ARCSEC_PER_RAD = 180.0 / np.pi * 3600.0
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _footprint(band: ImageData) -> tuple[float, float, float, float]:
    """``(xmin, xmax, ymin, ymax)`` (arcsec) of the pixel edges of the unmasked pixels."""
    x, y = band.grid.coordinates_numpy()
    half = 0.5 * band.pixel_scale
    m = band.mask
    return (
        float(x[m].min() - half),
        float(x[m].max() + half),
        float(y[m].min() - half),
        float(y[m].max() + half),
    )


def _band_flux(band: ImageData) -> float:
    """Flux in the mask, at least ten times the noise in it (as :meth:`LensSpec.from_data`)."""
    flux = float(np.sum(band.image[band.mask]))
    noise = float(np.sqrt(np.sum(np.asarray(band.variance(np.zeros(band.shape)))[band.mask])))
    return max(flux, 10.0 * noise)


def _norm_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    text = str(unit).strip()
    return text.lower().replace(" ", "") or None


@dataclasses.dataclass(frozen=True, eq=False)
class MultiBandData:
    """Several bands of one lens in one angular frame (a JAX pytree of :class:`ImageData`).

    Parameters
    ----------
    bands
        One :class:`ImageData` per band; the first is the reference band (the colours are
        relative to it and its centre is the usual coordinate origin). Their grids must place
        them in one frame (see :func:`frame_offsets`).
    names
        Band names (letters, digits and ``_``, starting with a letter; e.g. ``F814W``), used
        in the site names ``source_amp_<name>``, ``obs_<name>``. Default ``band0, band1, ...``.
    units
        Flux unit of each band (e.g. the FITS ``BUNIT``) or None where unknown; the known ones
        must agree.

    Attributes
    ----------
    flux_ratios
        Flux in each band's mask divided by that of the reference band (``1.0`` for it).

    Raises
    ------
    ValueError
        No band, a band that is not an :class:`ImageData`, bad or repeated names, different
        units, or a band whose unmasked footprint does not overlap the reference band's.
    """

    bands: tuple[ImageData, ...]
    names: tuple[str, ...] | None = None
    units: tuple[str | None, ...] | None = None
    flux_ratios: tuple[float, ...] = dataclasses.field(init=False, default=())

    def __post_init__(self) -> None:
        bands = tuple(self.bands)
        if not bands:
            raise ValueError("MultiBandData needs at least one band")
        for i, b in enumerate(bands):
            if not isinstance(b, ImageData):
                raise ValueError(f"band {i} is a {type(b).__name__}, not an ImageData")
        n = len(bands)
        names = tuple(f"band{i}" for i in range(n)) if self.names is None else tuple(self.names)
        if len(names) != n:
            raise ValueError(f"{len(names)} band names for {n} bands")
        for name in names:
            if not _NAME.match(str(name)):
                raise ValueError(
                    f"band name {name!r}: use letters, digits and '_', starting with a letter"
                )
        if len(set(names)) != n:
            raise ValueError(f"band names must be distinct, got {', '.join(names)}")
        units = (None,) * n if self.units is None else tuple(self.units)
        if len(units) != n:
            raise ValueError(f"{len(units)} units for {n} bands")
        known = {
            _norm_unit(u): (nm, u) for nm, u in zip(names, units, strict=True) if _norm_unit(u)
        }
        if len(known) > 1:
            what = ", ".join(f"{nm}: {u}" for nm, u in known.values())
            raise ValueError(
                f"the bands have different flux units ({what}); convert them to one unit "
                "(the band amplitudes are fitted, but the noise models must be in image units)"
            )
        ref = _footprint(bands[0])
        for name, band in zip(names[1:], bands[1:], strict=True):
            fp = _footprint(band)
            dx = min(ref[1], fp[1]) - max(ref[0], fp[0])
            dy = min(ref[3], fp[3]) - max(ref[2], fp[2])
            if dx <= 0 or dy <= 0:
                raise ValueError(
                    f"band {name} (x {fp[0]:.2f}..{fp[1]:.2f}, y {fp[2]:.2f}..{fp[3]:.2f} arcsec) "
                    f"does not overlap band {names[0]} (x {ref[0]:.2f}..{ref[1]:.2f}, "
                    f"y {ref[2]:.2f}..{ref[3]:.2f}); check the headers' CRVAL/CRPIX or RA0/DEC0"
                )
        f0 = _band_flux(bands[0])
        ratios = tuple(_band_flux(b) / f0 for b in bands)
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "flux_ratios", ratios)

    def __len__(self) -> int:
        return len(self.bands)

    def __iter__(self):
        return iter(self.bands)

    def __getitem__(self, key: int | str) -> ImageData:
        if isinstance(key, str):
            return self.bands[self.names.index(key)]
        return self.bands[key]

    @property
    def reference(self) -> ImageData:
        """The first band (colours are relative to it)."""
        return self.bands[0]

    @property
    def num_pixels(self) -> int:
        """Unmasked pixels of all bands."""
        return int(sum(b.num_pixels for b in self.bands))

    def __repr__(self) -> str:
        inner = ", ".join(f"{nm}: {b!r}" for nm, b in zip(self.names, self.bands, strict=True))
        return f"MultiBandData({inner})"

    # ------------------------------------------------------------------ pytree
    def _tree_flatten(self):
        return (self.bands,), (self.names, self.units, self.flux_ratios)

    @classmethod
    def _tree_unflatten(cls, static, leaves) -> MultiBandData:
        obj = object.__new__(cls)
        object.__setattr__(obj, "bands", tuple(leaves[0]))
        for name, value in zip(("names", "units", "flux_ratios"), static, strict=True):
            object.__setattr__(obj, name, value)
        return obj


jax.tree_util.register_pytree_node(
    MultiBandData, MultiBandData._tree_flatten, MultiBandData._tree_unflatten
)


def as_multiband(data: Any, names: Sequence[str] | None = None) -> ImageData | MultiBandData:
    """``data`` as what the lens models take: an :class:`ImageData` stays as it is, a list or
    tuple of them becomes a :class:`MultiBandData` (a list of one band: that band alone, the
    single-band model)."""
    if isinstance(data, ImageData | MultiBandData):
        return data
    if isinstance(data, list | tuple):
        if len(data) == 1 and names is None:
            return as_multiband(data[0])
        return MultiBandData(tuple(data), None if names is None else tuple(names))
    raise ValueError(
        f"data must be an ImageData, a MultiBandData or a list of ImageData, got "
        f"{type(data).__name__}"
    )


def has_wcs(header: Mapping) -> bool:
    """True if the header has a celestial WCS: ``CRVAL1/2``, ``CRPIX1/2`` and a CD or CDELT
    matrix."""
    keys = ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")
    return all(k in header for k in keys) and ("CD1_1" in header or "CDELT1" in header)


def _pixel_to_world(header: Mapping, col: float, row: float) -> tuple[float, float]:
    """RA, Dec (degrees) of a 0-based pixel ``(col, row)`` (TAN projection, astropy)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    hdr = fits.Header()
    for k, v in dict(header).items():
        if k in ("COMMENT", "HISTORY", ""):
            continue
        hdr[k] = v
    hdr.setdefault("CTYPE1", "RA---TAN")
    hdr.setdefault("CTYPE2", "DEC--TAN")
    hdr["NAXIS"] = 2
    w = WCS(hdr, naxis=2)
    ra, dec = w.all_pix2world([[col, row]], 0)[0]
    return float(ra), float(dec)


def _tangent_offset(ra, dec, ra0, dec0) -> tuple[float, float]:
    """Gnomonic standard coordinates (arcsec; x toward east, like RA) of ``(ra, dec)`` about
    ``(ra0, dec0)`` (degrees)."""
    a, d, a0, d0 = np.radians([ra, dec, ra0, dec0])
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return float(xi * _ARCSEC_PER_RAD), float(eta * _ARCSEC_PER_RAD)


def frame_offsets(
    headers: Sequence[Mapping], shapes: Sequence[tuple[int, int]]
) -> list[tuple[float, float]]:
    """Coordinates (arcsec) of pixel ``(0, 0)`` of every band in the frame of the first.

    The frame's origin is the centre of the first band's image and its axes are those of
    :class:`vaelens.lensing.PixelGrid` (x toward east, like RA; y toward north), the tangent
    plane at that centre.

    Parameters
    ----------
    headers
        FITS headers (or mappings) with a celestial WCS (:func:`has_wcs`).
    shapes
        ``(ny, nx)`` of every band.

    Raises
    ------
    ValueError
        A header without a WCS.
    """
    if len(headers) != len(shapes):
        raise ValueError(f"{len(headers)} headers for {len(shapes)} shapes")
    for i, h in enumerate(headers):
        if not has_wcs(h):
            raise ValueError(f"header {i} has no WCS (CRVAL1/2, CRPIX1/2 and a CD or CDELT matrix)")
    ny, nx = shapes[0]
    ra0, dec0 = _pixel_to_world(headers[0], (nx - 1) / 2.0, (ny - 1) / 2.0)
    return [_tangent_offset(*_pixel_to_world(h, 0.0, 0.0), ra0, dec0) for h in headers]


def place_band(band: ImageData, origin: tuple[float, float]) -> ImageData:
    """``band`` with its grid moved so that pixel ``(0, 0)`` sits at ``origin`` (arcsec); the
    pixel-to-angle matrix is kept."""
    from vaelens.lensing import PixelGrid

    g = band.grid
    grid = PixelGrid(
        g.shape, g.pixel_scale, float(origin[0]), float(origin[1]),
        transform_pix2angle=g.transform_pix2angle,
    )
    return dataclasses.replace(band, grid=grid)


def _header_name(header: Mapping) -> str | None:
    """A band name from the ``FILTER`` (or ``FILTER1``/``FILTER2``) key, if it is one."""
    for key in ("FILTER", "FILTER1", "FILTER2"):
        value = str(header.get(key, "")).strip()
        if _NAME.match(value) and not value.upper().startswith("CLEAR"):
            return value
    return None


def load_multiband(
    images: Sequence[str | os.PathLike],
    psfs: Sequence[str | os.PathLike],
    *,
    names: Sequence[str] | None = None,
    hdu: int | str = 0,
    mask_radius: float | None = None,
) -> MultiBandData:
    """Read the bands of ``vaelens fit IMG1 IMG2 ... --psf PSF1 PSF2 ...``.

    Every band is read as by :func:`vaelens.data.inputs.load_image_data` (its noise model from
    its header: ``BKG_RMS``, ``EXPTIME``, an ``EXPMAP`` extension). If every header has a
    celestial WCS the bands are placed in the frame of the first (:func:`frame_offsets`);
    otherwise their grids stay as the headers give them (``RA0``/``DEC0``, else centred on
    the image). ``mask_radius`` (arcsec) keeps the pixels within that distance of the
    common origin. Band names: ``names``, else the headers' ``FILTER`` keys when they are
    distinct, else ``band0, band1, ...``; units from ``BUNIT``.

    Raises
    ------
    vaelens.data.inputs.InputError
        Different numbers of images, PSFs and names, a WCS in some headers only, bands that do
        not overlap or have different units, and every error of ``load_image_data``.
    """
    from vaelens.data.inputs import InputError, load_image_data, read_fits_image, require_file

    images, psfs = list(images), list(psfs)
    if len(psfs) != len(images):
        raise InputError(
            f"{len(images)} image(s) but {len(psfs)} PSF(s): give one --psf per image, in the "
            "same order"
        )
    if names is not None and len(names) != len(images):
        raise InputError(f"{len(images)} image(s) but {len(names)} --band-names")
    headers, bands = [], []
    for image, psf in zip(images, psfs, strict=True):
        _, header = read_fits_image(require_file(image, "image"), "image", hdu)
        headers.append(header)
        bands.append(load_image_data(image, psf, hdu=hdu))
    wcs = [has_wcs(h) for h in headers]
    if all(wcs):
        origins = frame_offsets(headers, [b.shape for b in bands])
        bands = [place_band(b, o) for b, o in zip(bands, origins, strict=True)]
    elif any(wcs):
        which = ", ".join(str(Path(p).name) for p, w in zip(images, wcs, strict=True) if not w)
        raise InputError(
            f"some images have a WCS (CRVAL/CRPIX/CD) and some not ({which}): give every band "
            "a WCS, or RA0/DEC0 offsets in every header"
        )
    if mask_radius is not None:
        for i, b in enumerate(bands):
            x, y = b.grid.coordinates_numpy()
            inside = np.hypot(x, y) <= mask_radius
            if not (b.mask & inside).any():
                raise InputError(
                    f"--mask-radius {mask_radius} arcsec leaves no pixel of {Path(images[i]).name}"
                )
            bands[i] = dataclasses.replace(b, mask=b.mask & inside)
    if names is None:
        found = [_header_name(h) for h in headers]
        if all(found) and len(set(found)) == len(found):
            names = found
    units = [h.get("BUNIT") for h in headers]
    try:
        return MultiBandData(tuple(bands), None if names is None else tuple(names), tuple(units))
    except ValueError as err:
        raise InputError(str(err)) from None
