"""The catalogue of a batch fit: one row per lens, read with ``astropy.table.Table.read``.

Columns:

- ``id`` (required): the object's name, unique; its fit folder is ``OUT/<id>/``, so it may
  hold letters, digits and ``. _ - +`` only and must not start with a dot;
- ``image``, ``psf`` (required): FITS files of the lens image and of its PSF kernel;
- any option of :data:`vaelens.survey.options.OPTIONS` (``hdu``, ``noise_map``, ``bkg_rms``,
  ``exposure_time`` or ``exptime``, ``pixel_scale``, ``mask``, ``mask_radius``, ``theta_E``,
  ``method``, ``seed``, ``truth``, ...): that row's value, overriding the batch's; an empty cell
  keeps the batch's.

Relative paths (``image``, ``psf``, ``noise_map``, ``mask``, ``truth``, ``init_from``,
``weights``) are relative to the catalogue's folder. Other columns (coordinates, redshifts) are
ignored. A CSV is read as text, so ids such as ``007`` keep their zeros; FITS and ECSV columns
keep their types.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any

from vaelens.survey.options import ALIASES, OPTIONS, is_missing, parse_option, resolve_path

__all__ = ["CatalogRow", "LensCatalogError", "read_catalog"]

log = logging.getLogger("vaelens")

_ID = re.compile(r"^[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]*$")
_TEXT_FORMATS = {".csv": "ascii.csv", ".tsv": "ascii.tab", ".txt": "ascii.csv"}


class LensCatalogError(ValueError):
    """The catalogue cannot be used as a whole (unreadable, no ``id`` column, repeated ids)."""


@dataclasses.dataclass(frozen=True)
class CatalogRow:
    """One catalogue row.

    Attributes
    ----------
    id
        The object's name (its output folder).
    image, psf
        Absolute paths of its image and PSF (None where the cell is empty).
    options
        The options its columns set (parsed; paths absolute).
    error
        Why the row cannot be fitted (a bad cell, no image), else None.
    """

    id: str
    image: str | None
    psf: str | None
    options: dict[str, Any]
    error: str | None = None


def _read_table(path: Path):
    from astropy.io import ascii
    from astropy.table import Table

    suffix = path.suffix.lower()
    try:
        if suffix in _TEXT_FORMATS:
            return Table.read(
                path,
                format=_TEXT_FORMATS[suffix],
                converters={"*": [ascii.convert_numpy(str)]},
            )
        return Table.read(path)
    except Exception as err:  # noqa: BLE001 - any reading failure is the user's file
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise LensCatalogError(f"catalogue {path} cannot be read as a table ({text})") from None


def _cell(value: Any) -> Any:
    return None if is_missing(value) else value


def read_catalog(path: str | os.PathLike) -> list[CatalogRow]:
    """Read and check a catalogue (CSV, ECSV, FITS or any table astropy reads).

    Returns one :class:`CatalogRow` per row, in the catalogue's order; a row with a bad cell
    carries its ``error`` (it becomes a failed row of the batch, the others are fitted).

    Raises
    ------
    LensCatalogError
        A missing or unreadable file, no ``id``, ``image`` or ``psf`` column, an empty or
        repeated id, or an id that is not a valid folder name.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise LensCatalogError(f"catalogue {path} not found")
    table = _read_table(path)
    known = {k.lower(): k for k in (*OPTIONS, *ALIASES, "id", "image", "psf")}
    columns: dict[str, str] = {}
    ignored = []
    for name in table.colnames:
        key = known.get(name.strip().lower())
        if key is None:
            ignored.append(name)
            continue
        key = ALIASES.get(key, key)
        if key in columns:
            raise LensCatalogError(
                f"catalogue {path}: columns {columns[key]!r} and {name!r} both set {key}"
            )
        columns[key] = name
    missing = [c for c in ("id", "image", "psf") if c not in columns]
    if missing:
        raise LensCatalogError(
            f"catalogue {path} has no column {', '.join(missing)} (columns: "
            f"{', '.join(table.colnames)}); it needs id, image and psf"
        )
    options = {k: v for k, v in columns.items() if k not in ("id", "image", "psf")}
    if ignored:
        log.info("catalogue columns that are no fit option are ignored: %s", ", ".join(ignored))
    base = path.parent.absolute()
    rows: list[CatalogRow] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(table, start=1):
        raw_id = _cell(rec[columns["id"]])
        obj = "" if raw_id is None else str(raw_id).strip()
        if not obj:
            raise LensCatalogError(f"catalogue {path}: row {i} has no id")
        if not _ID.match(obj):
            raise LensCatalogError(
                f"catalogue {path}: id {obj!r} (row {i}) is not a folder name; use letters, "
                "digits and . _ - + (not first a dot)"
            )
        if obj in seen:
            raise LensCatalogError(
                f"catalogue {path}: id {obj!r} appears twice (rows {seen[obj]} and {i})"
            )
        seen[obj] = i
        errors = []
        files = {}
        for what in ("image", "psf"):
            value = _cell(rec[columns[what]])
            files[what] = None if value is None else resolve_path(value, base)
            if value is None:
                errors.append(f"no {what} file")
        values = {}
        for option, name in options.items():
            value = _cell(rec[name])
            if value is None:
                continue
            try:
                values[option] = parse_option(option, value, base)
            except ValueError as err:
                errors.append(f"column {err}")
        rows.append(
            CatalogRow(obj, files["image"], files["psf"], values, "; ".join(errors) or None)
        )
    return rows
