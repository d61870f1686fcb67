"""Real-galaxy training stamps: catalogue -> split -> preprocessed unit-flux arrays."""

from __future__ import annotations

import os

import numpy as np

from vaelens.data.catalog import load_real_galaxy_catalog
from vaelens.data.preprocess import prepare_stamp
from vaelens.data.split import split_by_id

__all__ = ["load_training_stamps"]

_SPLITS = ("train", "val", "test", "all")


def load_training_stamps(
    catalog_path: str | os.PathLike,
    split: str = "train",
    seed: int = 0,
    size: int = 64,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    image_dir: str | os.PathLike | None = None,
    target_pixel_scale: float | None = None,
    canonicalize: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load one split of a ``RealGalaxyCatalog`` as centred, unit-flux ``size x size`` stamps.

    The split is :func:`vaelens.data.split_by_id` of the ``IDENT`` column with ``seed`` and
    ``fractions``; the padding noise of each galaxy is seeded by ``(seed, IDENT)``, so a galaxy's
    stamp does not depend on which other galaxies are loaded.

    Parameters
    ----------
    catalog_path : str or Path
        Catalogue FITS file.
    split : {"train", "val", "test", "all"}
        Which galaxies to return. ``"test"`` is the held-out set for benchmarks only.
    seed : int
        Split and padding-noise seed.
    size : int
        Output stamp width, pixels.
    fractions : tuple of 3 floats
        Train / validation / test fractions.
    image_dir : str or Path, optional
        Folder of the image files (default: the catalogue's folder).
    target_pixel_scale : float, optional
        Resample every stamp to this pixel scale, arcsec.
    canonicalize : bool
        Rotate and zoom each stamp to a canonical orientation and size
        (see :func:`vaelens.data.prepare_stamp`).

    Returns
    -------
    images : numpy.ndarray
        ``(m, size, size)`` float32, unit galaxy flux (pixel sum 1 up to the zero-mean
        padding noise), light at pixel ``((size-1)/2,)*2``.
    noise_variance : numpy.ndarray
        ``(m,)`` float64 per-pixel noise variance of the normalised stamps.
    ids : numpy.ndarray
        ``(m,)`` int64 ``IDENT`` of each stamp, in catalogue order.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    with load_real_galaxy_catalog(catalog_path, image_dir, load_psf=False) as cat:
        if split == "all":
            rows = np.arange(len(cat))
        else:
            parts = dict(
                zip(("train", "val", "test"), split_by_id(cat.ident, fractions, seed), strict=True)
            )
            rows = np.flatnonzero(np.isin(cat.ident, parts[split]))
        images = np.empty((rows.size, size, size), dtype=np.float32)
        variances = np.empty(rows.size)
        for j, i in enumerate(rows):
            stamp = cat[int(i)]
            ident = int(stamp.ident)
            rng = np.random.default_rng(
                [seed & 0xFFFFFFFF, ident & 0xFFFFFFFF, ident >> 32 & 0xFFFF]
            )
            prepared = prepare_stamp(
                stamp.image,
                stamp.noise_variance,
                size,
                rng=rng,
                pixel_scale=stamp.pixel_scale,
                target_pixel_scale=target_pixel_scale,
                canonicalize=canonicalize,
            )
            images[j] = prepared.image
            variances[j] = prepared.noise_variance
        return images, variances, cat.ident[rows].astype(np.int64)
