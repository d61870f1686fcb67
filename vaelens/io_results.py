"""Result folders of ``vaelens`` commands: atomic creation, summaries, reading back.

A result folder (``vaelens fit --out DIR``) is written into a hidden temporary sibling
``.DIR.tmp-XXXX`` and renamed to ``DIR`` only when every file is in place, so an interrupted or
failed run never leaves a half-written ``DIR`` behind. An existing ``DIR`` is replaced only when
the caller passes ``force=True`` (the old folder is moved aside first and deleted after the
rename, so even a forced run keeps the old results until the new ones are complete).

Contents written by :func:`write_fit_folder` (see DESIGN.md, "Outputs of vaelens fit"):

- ``posterior.nc``  ArviZ InferenceData (netCDF4 / HDF5);
- ``summary.csv``   mean, sd, HDI, R-hat, ESS per scalar parameter (``arviz.summary``);
- ``summary.json``  the same table plus timings, seed, versions, chi^2 and the command line;
- ``model.png``, ``corner.png``, ``trace.png``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OutputExistsError",
    "atomic_output_dir",
    "check_output_dir",
    "write_json",
    "read_json",
    "to_jsonable",
    "read_fit_folder",
    "format_table",
]


class OutputExistsError(FileExistsError):
    """The output folder exists and ``force`` was not given."""


def check_output_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Validate an output folder path before any expensive work starts.

    Parameters
    ----------
    path
        Folder to be created.
    force
        Allow replacing an existing folder.

    Returns
    -------
    pathlib.Path
        The absolute path.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    NotADirectoryError
        ``path`` exists and is a file (never replaced, even with ``force``).
    FileNotFoundError
        The parent folder does not exist.
    """
    out = Path(path).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a folder")
    if out.exists() and not force:
        raise OutputExistsError(f"output folder {out} already exists (use --force to replace it)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"parent folder of {out} does not exist")
    return out


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary folder that becomes ``path`` on success.

    Parameters
    ----------
    path
        Final folder.
    force
        Replace an existing ``path`` (only once the new folder is complete).

    Yields
    ------
    pathlib.Path
        A fresh temporary sibling folder to write into. On a clean exit it is renamed to
        ``path``; on any exception (including KeyboardInterrupt) it is deleted and ``path`` is
        left untouched.
    """
    out = check_output_dir(path, force=force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700; the results are the user's usual
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # re-check: another process may have created it meanwhile
    if out.exists() and not force:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputExistsError(f"output folder {out} appeared during the run; not replaced")
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy / JAX scalars and arrays to JSON types (NaN -> None)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr.tolist()]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return to_jsonable(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON (numpy values converted, NaN written as null)."""
    Path(path).write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file, with a clear error naming the file when it is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p} is not valid JSON: {err}") from None


def read_fit_folder(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """Read a ``vaelens fit`` output folder.

    Parameters
    ----------
    path
        Folder holding ``posterior.nc`` and ``summary.json``.

    Returns
    -------
    (arviz.InferenceData, dict)
        The InferenceData and the parsed ``summary.json``.

    Raises
    ------
    FileNotFoundError
        The folder or one of the two files is missing.
    """
    import arviz as az

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"fit folder {folder} not found")
    nc = folder / "posterior.nc"
    if not nc.is_file():
        raise FileNotFoundError(f"{nc} not found (is {folder} a 'vaelens fit' output folder?)")
    summary = read_json(folder / "summary.json")
    idata = az.from_netcdf(nc)
    return idata, summary


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, index: str) -> str:
    """A plain-text table (one row per mapping) with numbers to 4 significant figures."""

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return "nan" if not np.isfinite(v) else f"{v:.4g}"
        return str(v)

    header = [index, *columns]
    body = [[fmt(r.get(index))] + [fmt(r.get(c)) for c in columns] for r in rows]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    out = [line, "-" * len(line)]
    for b in body:
        out.append(
            "  ".join(
                x.rjust(w) if i else x.ljust(w)
                for i, (x, w) in enumerate(zip(b, widths, strict=True))
            )
        )
    return "\n".join(out) + "\n"
