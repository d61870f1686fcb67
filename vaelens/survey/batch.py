"""Fit every lens of a catalogue: :func:`fit_catalog` (what ``vaelens batch`` runs).

Each object is one Dask task (:func:`vaelens.survey.task.fit_object`); as each finishes its row
goes into ``OUT/results.csv`` (:mod:`vaelens.survey.results`), which is rewritten atomically, so
an interrupted run loses only the objects in flight. Running again with the same ``OUT``
resumes: objects already ``ok`` in the table whose folder exists are skipped, failed and
missing ones are fitted (again); options changed in between apply to the objects fitted
from then on (each folder's ``summary.json`` records its own), so refit with a new ``OUT``
to change every object. The traceback of every failure is appended to
``OUT/errors.log``. Where pyarrow is installed, the finished table is also written as
``OUT/results.parquet`` at the end of the call.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vaelens.survey.catalog import read_catalog
from vaelens.survey.options import check_options
from vaelens.survey.results import RESULTS_FILE, ResultsTable
from vaelens.survey.task import fit_object, one_line

__all__ = ["BatchResult", "fit_catalog"]

log = logging.getLogger("vaelens")

ERRORS_FILE = "errors.log"


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What :func:`fit_catalog` did.

    Attributes
    ----------
    out
        The output folder.
    results
        ``results.csv`` as a pandas DataFrame (every object fitted so far, this run's and
        earlier runs').
    fitted, failed, skipped
        Ids fitted now, failed now, and skipped as already done.
    wall_s
        Wall time of the call in seconds.
    """

    out: Path
    results: Any
    fitted: tuple[str, ...]
    failed: tuple[str, ...]
    skipped: tuple[str, ...]
    wall_s: float


def _failed_row(obj: str, err: BaseException) -> dict[str, Any]:
    text = one_line(err)
    if type(err).__name__ == "KilledWorker":
        text = (
            "the worker process died while fitting this object, also on its retry (out of "
            f"memory?): {text}"
        )
    return {"id": obj, "status": "failed", "error": text}


def _log_error(out: Path, row: Mapping[str, Any], tb: str | None) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(out / ERRORS_FILE, "a", encoding="utf-8") as f:
        f.write(f"--- {row['id']} ({stamp}, worker {row.get('worker', '?')}): {row['error']}\n")
        if tb:
            f.write(tb.rstrip() + "\n")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("TQDM_DISABLE", "0") not in ("", "0")
    return tqdm(total=total, unit="lens", desc="vaelens batch", disable=disable, smoothing=0.1)


def _write_parquet(out: Path, table: ResultsTable) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return
    frame = table.to_pandas()
    tmp = out / f".results.parquet.{os.getpid()}.tmp"
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out / "results.parquet")
    finally:
        if tmp.exists():
            tmp.unlink()


def fit_catalog(
    catalog: str | os.PathLike,
    out: str | os.PathLike,
    *,
    options: Mapping[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    x64: bool | None = None,
    jax_cache: str | os.PathLike | None = None,
    retries: int = 1,
    progress: bool = True,
    command: str | None = None,
) -> BatchResult:
    """Fit every object of ``catalog`` and write ``out/<id>/`` and ``out/results.csv``.

    Parameters
    ----------
    catalog
        A table with columns ``id``, ``image``, ``psf`` and optional per-object options
        (:mod:`vaelens.survey.catalog`).
    out
        The output folder (created; an existing one is resumed).
    options
        Options of every object, by the names of ``vaelens fit`` options
        (:data:`vaelens.survey.options.OPTIONS`: ``method``, ``starts``, ``source``,
        ``bkg_rms``, ...); default :data:`~vaelens.survey.options.DEFAULT_OPTIONS` (MAP +
        Laplace, EPL + shear, Sersic lens light, VAE source). A catalogue column overrides its
        option for its row.
    workers
        Worker processes of the embedded ``LocalCluster`` (default: one per core); ``0`` fits
        the objects one after the other in this process, without Dask.
    scheduler, client
        Address of a running Dask scheduler, or a ``distributed.Client``, to run on instead.
    x64
        Compute in float64 (True) or float32 (False). Default, as ``vaelens fit``: float64 for
        the objects fitted by MAP (a more reliable optimum and Laplace errors), float32 for
        SVI and the samplers (about 3x faster per gradient on a CPU); with ``workers=0`` this
        process's setting.
    jax_cache
        JAX's persistent compilation cache, shared by the workers (default
        ``out/.jax_cache``), so that a program is compiled once, not once per worker. ``""``
        disables it. With ``workers=0`` this process's own cache setting is used. The data
        are arguments of the compiled programs, so objects of one image shape, PSF shape and
        model share them: a worker compiles once per shape and model.
    retries
        How often a task is run again when its worker dies (a failure of the fit itself is a
        failed row, not retried within the run).
    progress
        Show a progress bar with the rate and the remaining time.
    command
        The command line, recorded in each object's ``summary.json``.

    Returns
    -------
    BatchResult

    Raises
    ------
    vaelens.survey.LensCatalogError
        The catalogue cannot be read or has no ``id``/``image``/``psf`` column, empty, repeated
        or invalid ids.
    ValueError
        An unknown option or a bad option value, or ``out/results.csv`` is not a results table.
    ImportError
        ``distributed`` is needed (``workers != 0``) and missing.
    """
    t0 = time.perf_counter()
    rows = read_catalog(catalog)
    opts = check_options(options)
    out = Path(out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    table = ResultsTable(out / RESULTS_FILE)
    cache = str(out / ".jax_cache") if jax_cache is None else os.fspath(jax_cache)
    if cache and workers != 0:
        cache = str(Path(cache).expanduser().absolute())
    else:
        cache = None
    skipped = tuple(r.id for r in rows if table.status(r.id) == "ok" and (out / r.id).is_dir())
    done = set(skipped)

    def precision(method: str) -> bool | None:
        if x64 is not None:
            return bool(x64)
        return None if workers == 0 else method == "map"

    tasks = []
    for r in rows:
        if r.id in done:
            continue
        row_options = {**opts, **r.options}
        tasks.append(
            {
                "id": r.id,
                "image": r.image,
                "psf": r.psf,
                "error": r.error,
                "options": row_options,
                "out": str(out / r.id),
                "x64": precision(row_options["method"]),
                "jax_cache": cache,
                "command": command,
                "catalog": str(Path(catalog).expanduser().absolute()),
            }
        )
    if skipped:
        log.info("%d object(s) already fitted in %s are skipped", len(skipped), out)
    for task in tasks:  # temporary folders of writes that a killed worker left behind
        for stale in out.glob(f".{task['id']}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    if not table.path.exists():
        table.write()
    fitted: list[str] = []
    failed: list[str] = []

    def finish(row: dict[str, Any]) -> None:
        tb = row.pop("traceback", None)
        if row["status"] == "ok":
            fitted.append(row["id"])
        else:
            failed.append(row["id"])
            _log_error(out, row, tb)
        table.add(row)
        table.write()
        bar.update(1)
        bar.set_postfix(ok=len(fitted), failed=len(failed), refresh=False)

    with _progress(len(tasks), progress) as bar:
        if tasks and workers == 0:
            for task in tasks:
                finish(fit_object(task))
        elif tasks:
            _run_on_dask(
                tasks, finish, workers=workers, scheduler=scheduler, client=client, retries=retries
            )
    _write_parquet(out, table)
    return BatchResult(
        out=out,
        results=table.to_pandas(),
        fitted=tuple(fitted),
        failed=tuple(failed),
        skipped=skipped,
        wall_s=time.perf_counter() - t0,
    )


def _run_on_dask(tasks, finish, *, workers, scheduler, client, retries) -> None:
    from vaelens.survey.engine import dask_client

    with dask_client(workers, scheduler, client=client) as c:
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        futures = {
            c.submit(
                fit_object,
                task,
                key=f"vaelens-fit-{task['id']}-{token}",
                pure=False,
                retries=retries,
            ): task["id"]
            for task in tasks
        }
        try:
            for fut in as_completed(futures):
                try:
                    row = fut.result()
                except Exception as err:  # noqa: BLE001 - a lost task is that object's row
                    row = _failed_row(futures[fut], err)
                finish(row)
                fut.release()
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
