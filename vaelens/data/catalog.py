"""Lazy reader for GalSim ``RealGalaxyCatalog`` FITS files (astropy only).

Format (GalSim ``RealGalaxyCatalog``; Mandelbaum et al. 2012, MNRAS 420, 1518; the COSMOS 23.5 /
25.2 training samples): the catalogue FITS file holds a table in HDU 1 with one row per galaxy and
at least the columns ``IDENT``, ``GAL_FILENAME``, ``GAL_HDU``, ``PIXEL_SCALE`` and
``NOISE_VARIANCE``, usually also ``PSF_FILENAME``, ``PSF_HDU``, ``MAG``, ``BAND``, ``WEIGHT``,
``NOISE_MEAN``, ``NOISE_FILENAME`` and ``stamp_flux``. Galaxy and PSF images live in separate FITS
files (names relative to the catalogue's folder, or ``image_dir``), one image per HDU, ``GAL_HDU``
and ``PSF_HDU`` being 0-based HDU indices (HDU 0 included).

The catalogue reads the table once and opens image files only when a stamp is requested (memory
mapped, with a small LRU cache of open files), so a catalogue of ~87 000 galaxies spread over many
image files never needs to fit in memory.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["CatalogError", "GalaxyStamp", "RealGalaxyCatalog", "load_real_galaxy_catalog"]

logger = logging.getLogger(__name__)

_REQUIRED = ("IDENT", "GAL_FILENAME", "GAL_HDU", "PIXEL_SCALE", "NOISE_VARIANCE")
_PSF_COLUMNS = ("PSF_FILENAME", "PSF_HDU")


class CatalogError(ValueError):
    """A galaxy catalogue or one of its image files is missing, incomplete or malformed."""


@dataclass(frozen=True, eq=False)
class GalaxyStamp:
    """One real galaxy postage stamp with its noise and PSF.

    Attributes
    ----------
    image : numpy.ndarray
        ``(ny, nx)`` float64 (native byte order, read-only) image in the catalogue's flux units
        (counts/s per pixel for COSMOS), neighbours already replaced by noise.
    noise_variance : float
        Variance of the (approximately white) pixel noise, same units squared.
    pixel_scale : float
        Pixel size, arcsec.
    psf : numpy.ndarray or None
        PSF image as stored (float64, read-only; COSMOS PSFs sum to ~0.98 and need not be square),
        ``None`` when the catalogue has no PSF columns or ``load_psf=False``.
    ident : int
        Galaxy identifier (``IDENT`` column).
    mag : float
        Magnitude (``MAG`` column), NaN when absent.
    index : int
        Row index in the catalogue.
    """

    image: np.ndarray
    noise_variance: float
    pixel_scale: float
    psf: np.ndarray | None
    ident: int
    mag: float
    index: int


def _column(table: fits.FITS_rec, names: dict[str, str], name: str) -> np.ndarray:
    return np.asarray(table[names[name.upper()]])


def _readonly_float64(data: np.ndarray) -> np.ndarray:
    out = np.array(data, dtype=np.float64)  # native byte order copy (FITS data are big-endian)
    out.setflags(write=False)
    return out


class RealGalaxyCatalog(Sequence):
    """Lazy, indexable view of a GalSim ``RealGalaxyCatalog``.

    Use :func:`load_real_galaxy_catalog` to construct. Supports ``len()``, integer indexing
    (negative too), slicing / index arrays (lists of stamps), iteration, and the context-manager
    protocol (``close()`` closes the cached image files).

    Parameters
    ----------
    path : str or Path
        Catalogue FITS file.
    image_dir : str or Path, optional
        Folder of the image files; defaults to the catalogue's folder.
    load_psf : bool
        Whether stamps carry their PSF image.
    max_open_files : int
        Number of image files kept open (least recently used are closed).
    check_files : bool
        Check at construction that every referenced image file exists.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        image_dir: str | os.PathLike | None = None,
        *,
        load_psf: bool = True,
        max_open_files: int = 8,
        check_files: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CatalogError(f"catalogue file not found: {self.path}")
        self.image_dir = Path(image_dir) if image_dir is not None else self.path.parent
        if max_open_files < 1:
            raise ValueError("max_open_files must be >= 1")
        self._max_open = max_open_files
        self._open: OrderedDict[Path, fits.HDUList] = OrderedDict()
        try:
            with fits.open(self.path, memmap=False) as hdul:
                if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                    raise CatalogError(f"{self.path}: expected a binary table in HDU 1")
                table = hdul[1].data
                names = {c.upper(): c for c in hdul[1].columns.names}
                missing = [c for c in _REQUIRED if c not in names]
                if missing:
                    raise CatalogError(
                        f"{self.path}: missing required column(s) {', '.join(missing)}"
                    )
                self.ident = _column(table, names, "IDENT").astype(np.int64)
                self.gal_filename = np.char.strip(_column(table, names, "GAL_FILENAME").astype(str))
                self.gal_hdu = _column(table, names, "GAL_HDU").astype(np.int64)
                self.pixel_scale = _column(table, names, "PIXEL_SCALE").astype(np.float64)
                self.noise_variance = _column(table, names, "NOISE_VARIANCE").astype(np.float64)
                has_mag = "MAG" in names
                n = len(self.ident)
                self.mag = (
                    _column(table, names, "MAG").astype(np.float64)
                    if has_mag
                    else np.full(n, np.nan)
                )
                self.has_psf = all(c in names for c in _PSF_COLUMNS)
                if self.has_psf:
                    self.psf_filename = np.char.strip(
                        _column(table, names, "PSF_FILENAME").astype(str)
                    )
                    self.psf_hdu = _column(table, names, "PSF_HDU").astype(np.int64)
                self.columns = tuple(hdul[1].columns.names)
        except OSError as err:
            raise CatalogError(f"cannot read catalogue {self.path}: {err}") from err
        self.load_psf = load_psf and self.has_psf
        if check_files:
            files = set(self.gal_filename.tolist())
            if self.load_psf:
                files |= set(self.psf_filename.tolist())
            for name in sorted(files):
                if not (self.image_dir / name).is_file():
                    raise CatalogError(
                        f"image file {self.image_dir / name} referenced by {self.path} not found"
                    )
        logger.debug("opened %s: %d galaxies", self.path, len(self))

    # -- file handling -------------------------------------------------------------------
    def _hdulist(self, name: str) -> fits.HDUList:
        path = self.image_dir / name
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        if not path.is_file():
            raise CatalogError(f"image file {path} referenced by {self.path} not found")
        try:
            hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
        except OSError as err:
            raise CatalogError(f"cannot open image file {path}: {err}") from err
        self._open[path] = hdul
        while len(self._open) > self._max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return hdul

    def _read_image(self, name: str, hdu: int, what: str, row: int) -> np.ndarray:
        hdul = self._hdulist(name)
        path = self.image_dir / name
        if hdu < 0:
            raise CatalogError(f"row {row}: negative {what} HDU index {hdu} for file {path}")
        try:
            data = hdul[hdu].data
        except IndexError:
            raise CatalogError(
                f"row {row}: {what} HDU index {hdu} out of range for file {path}"
            ) from None
        if data is None or np.ndim(data) != 2:
            raise CatalogError(f"row {row}: HDU {hdu} of {path} holds no 2-d {what} image")
        return _readonly_float64(data)

    def close(self) -> None:
        """Close all cached image files."""
        while self._open:
            _, hdul = self._open.popitem()
            hdul.close()

    def __enter__(self) -> RealGalaxyCatalog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sequence protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ident)

    def _stamp(self, i: int) -> GalaxyStamp:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"galaxy index {i} out of range for a catalogue of {n}")
        i = i % n
        image = self._read_image(str(self.gal_filename[i]), int(self.gal_hdu[i]), "galaxy", i)
        psf = None
        if self.load_psf:
            psf = self._read_image(str(self.psf_filename[i]), int(self.psf_hdu[i]), "PSF", i)
        return GalaxyStamp(
            image=image,
            noise_variance=float(self.noise_variance[i]),
            pixel_scale=float(self.pixel_scale[i]),
            psf=psf,
            ident=int(self.ident[i]),
            mag=float(self.mag[i]),
            index=i,
        )

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self._stamp(int(key))
        if isinstance(key, slice):
            return [self._stamp(i) for i in range(*key.indices(len(self)))]
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("index with an int, a slice, or a 1-d integer / boolean array")
        return [self._stamp(int(i)) for i in idx]

    def __iter__(self) -> Iterator[GalaxyStamp]:
        for i in range(len(self)):
            yield self._stamp(i)

    def index_of(self, ident: int) -> int:
        """Row index of the galaxy with identifier ``ident`` (first match)."""
        hits = np.flatnonzero(self.ident == ident)
        if hits.size == 0:
            raise KeyError(f"no galaxy with IDENT {ident} in {self.path}")
        return int(hits[0])

    def __repr__(self) -> str:
        return f"RealGalaxyCatalog({str(self.path)!r}, n={len(self)})"


def load_real_galaxy_catalog(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    load_psf: bool = True,
    max_open_files: int = 8,
    check_files: bool = True,
) -> RealGalaxyCatalog:
    """Open a GalSim ``RealGalaxyCatalog`` lazily.

    Parameters
    ----------
    path : str or Path
        Catalogue FITS file (table in HDU 1), e.g.
        ``real_galaxy_catalog_26_extension_example.fits`` or GalSim's
        ``real_galaxy_catalog_25.2.fits``.
    image_dir : str or Path, optional
        Folder holding the galaxy / PSF image files; defaults to the catalogue's folder.
    load_psf : bool
        Attach PSF images to the stamps (needs ``PSF_FILENAME`` and ``PSF_HDU``).
    max_open_files : int
        Image files kept open at once (memory mapped).
    check_files : bool
        Fail early if a referenced image file is missing.

    Returns
    -------
    RealGalaxyCatalog
        Lazy sequence of :class:`GalaxyStamp`; use as a context manager or call ``close()``.

    Raises
    ------
    CatalogError
        Missing catalogue / image file, missing required column, no table in HDU 1; bad HDU
        indices are reported when the stamp is read.
    """
    return RealGalaxyCatalog(
        path,
        image_dir,
        load_psf=load_psf,
        max_open_files=max_open_files,
        check_files=check_files,
    )
