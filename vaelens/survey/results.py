"""``results.csv``: one row per object of a batch fit, rewritten atomically as objects finish.

Columns, in this order (then one pair per fitted parameter):

- ``id``: the object's id (its fit folder is ``OUT/<id>/``);
- ``status``: ``ok`` (fitted, folder written) or ``failed``;
- ``error``: why it failed, the exception's type and message on one line (empty when ok);
- ``method``: the inference method, ``map`` (MAP + Laplace draws), ``svi``, ``nuts`` or ``hmc``;
- ``reduced_chi2``: chi^2 of the best fit (the MAP, or the lowest-chi^2 draw of a sampler) over
  the masked pixels, divided by (pixels - fitted parameters); dimensionless;
- ``r_hat_max``: the largest split R-hat of the scalar parameters (NUTS/HMC; empty otherwise);
- ``divergences``: divergent transitions (NUTS/HMC; empty otherwise);
- ``wall_s``: wall time of the object on its worker, from reading the files to the written
  folder, in seconds;
- ``worker``: the Dask worker that fitted it (its name, or its address where unnamed);
- ``warnings``: the warnings raised while fitting it, one line each, separated by `` | ``;
- ``<p>``: posterior mean of parameter ``p`` (for ``map``: the mean of the Laplace draws);
- ``<p>_sd``: posterior standard deviation of ``p``, in the unit of ``p``.

The parameters and their units (:data:`PARAMETER_UNITS`): angles and positions in arcsec (the
coordinates of the image's pixel grid), position angles in radians,
ellipticities and slopes dimensionless, amplitudes in the image's units (``light_amp`` and a
Sersic ``source_amp``: surface brightness at ``R_sersic`` per arcsec^2; a VAE ``source_amp``:
the total unlensed source flux). Which parameters appear depends on the model (an SIE has no
``gamma``; objects with other models leave other cells empty). Per-object details (HDI, R-hat
and ESS per parameter, MAP values, the Laplace sigma) are in ``OUT/<id>/summary.csv``.

The table is written to a temporary file that replaces ``results.csv`` (``os.replace``), so a
crash leaves the previous complete table; the cells of rows read from an earlier run are
written back as they were read, character for character (a row gets empty cells for parameter
columns that appear later).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "PARAMETER_UNITS",
    "RESULTS_FILE",
    "ResultsTable",
    "column_description",
    "summary_columns",
]

RESULTS_FILE = "results.csv"

#: The fixed columns of ``results.csv`` and their meaning (units included).
COLUMNS: dict[str, str] = {
    "id": "object id (its fit folder is OUT/<id>/)",
    "status": "ok or failed",
    "error": "why the object failed, on one line (empty when ok)",
    "method": "inference method (map, svi, nuts, hmc)",
    "reduced_chi2": "chi^2 of the best fit / (masked pixels - parameters); dimensionless",
    "r_hat_max": "largest split R-hat of the scalar parameters (NUTS/HMC only); dimensionless",
    "divergences": "divergent transitions (NUTS/HMC only); count",
    "wall_s": "wall time of the object on its worker, in s",
    "worker": "Dask worker that fitted the object",
    "warnings": "warnings raised while fitting the object, separated by ' | '",
}

#: Unit of every parameter a lens model can have (``<p>`` and ``<p>_sd`` columns).
PARAMETER_UNITS: dict[str, str] = {
    "theta_E": "arcsec",
    "gamma": "dimensionless",
    "e1": "dimensionless",
    "e2": "dimensionless",
    "center_x": "arcsec",
    "center_y": "arcsec",
    "gamma1": "dimensionless",
    "gamma2": "dimensionless",
    "light_amp": "image units per arcsec^2",
    "light_R_sersic": "arcsec",
    "light_n_sersic": "dimensionless",
    "light_e1": "dimensionless",
    "light_e2": "dimensionless",
    "source_center_x": "arcsec",
    "source_center_y": "arcsec",
    "source_size": "arcsec",
    "source_angle": "rad",
    "source_amp": "image units (VAE source: total flux; Sersic: per arcsec^2 at R_sersic)",
    "source_R_sersic": "arcsec",
    "source_n_sersic": "dimensionless",
    "source_e1": "dimensionless",
    "source_e2": "dimensionless",
    "model_error_frac": "fraction of the model image (model-error term)",
}


def column_description(name: str) -> str:
    """What column ``name`` of ``results.csv`` holds, with its unit.

    Raises
    ------
    KeyError
        A column this module does not document.
    """
    if name in COLUMNS:
        return COLUMNS[name]
    if name.endswith("_sd") and name[:-3] in PARAMETER_UNITS:
        return f"posterior standard deviation of {name[:-3]}, {PARAMETER_UNITS[name[:-3]]}"
    if name in PARAMETER_UNITS:
        return f"posterior mean of {name}, {PARAMETER_UNITS[name]}"
    raise KeyError(f"undocumented results column {name!r}")


def summary_columns(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``results.csv`` cells of one fit from its summary (:meth:`LensFit.write`'s)."""
    diag = summary.get("diagnostics") or {}
    row: dict[str, Any] = {
        "method": summary.get("method"),
        "reduced_chi2": summary["fit"]["reduced_chi2"],
        "r_hat_max": diag.get("r_hat_max"),
        "divergences": diag.get("divergences") if summary.get("method") != "map" else None,
    }
    for name, p in summary["parameters"].items():
        row[name] = p.get("mean")
        row[f"{name}_sd"] = p.get("sd")
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if hasattr(value, "item"):  # numpy scalar
        return _cell(value.item())
    return " ".join(str(value).split())


class ResultsTable:
    """The rows of ``results.csv`` by id, in the order the objects finished.

    Rows read from an existing file are kept as their text; :meth:`add` replaces a row (a
    retried object moves to the end) and :meth:`write` rewrites the file atomically.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[str, dict[str, str]] = {}
        self._params: list[str] = []
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            if "id" not in reader.fieldnames or "status" not in reader.fieldnames:
                raise ValueError(
                    f"{self.path} is not a vaelens results table (no id/status columns); "
                    "choose another output folder"
                )
            self._note_columns(reader.fieldnames)
            for rec in reader:
                if rec.get("id"):
                    self.rows[rec["id"]] = {k: v or "" for k, v in rec.items() if k is not None}

    def _note_columns(self, names: Iterable[str]) -> None:
        for name in names:
            if name in COLUMNS or name.endswith("_sd"):
                continue
            if name not in self._params:
                self._params.append(name)

    @property
    def columns(self) -> list[str]:
        """The header: :data:`COLUMNS`, then each parameter followed by its ``_sd``."""
        cols = list(COLUMNS)
        for name in self._params:
            cols += [name, f"{name}_sd"]
        return cols

    def status(self, obj: str) -> str | None:
        """``"ok"``, ``"failed"`` or None (not in the table)."""
        row = self.rows.get(obj)
        return None if row is None else row.get("status") or None

    def add(self, row: Mapping[str, Any]) -> None:
        """Put the row of one finished object (``id`` required) at the end of the table."""
        cells = {k: _cell(v) for k, v in row.items()}
        self._note_columns(k for k in cells if k not in COLUMNS)
        self.rows.pop(cells["id"], None)
        self.rows[cells["id"]] = cells

    def write(self) -> None:
        """Rewrite ``results.csv`` atomically (temporary file, then ``os.replace``)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        columns = self.columns
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                for row in self.rows.values():
                    writer.writerow({c: row.get(c, "") for c in columns})
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def to_pandas(self):
        """The table as a pandas DataFrame: numbers parsed (empty cells NaN), the text columns
        as strings (empty cells ``""``)."""
        import pandas as pd

        text = ("id", "status", "error", "method", "worker", "warnings")
        frame = pd.read_csv(
            self.path, dtype=dict.fromkeys(text, str), keep_default_na=False, na_values=[""]
        )
        for name in text:
            frame[name] = frame[name].fillna("")
        return frame
