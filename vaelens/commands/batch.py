"""``vaelens batch``: fit every lens of a catalogue on Dask (:func:`vaelens.survey.fit_catalog`).

The command checks the catalogue and the options (a problem there is a one-line error, exit
status 2), runs the batch and prints how many lenses were fitted, failed and skipped; the exit
status is 1 when some lens failed (its row of ``results.csv`` and ``errors.log`` say why) and
130 when interrupted (the finished lenses stay in ``results.csv``; the same command resumes).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from vaelens.commands._common import cli_error

__all__ = ["batch_options", "run"]


def batch_options(args: argparse.Namespace) -> dict:
    """The options of :func:`vaelens.survey.fit_catalog` given by parsed ``vaelens batch``
    arguments (every per-object option, by name)."""
    from vaelens.survey.options import OPTIONS

    return {name: getattr(args, name) for name in OPTIONS if hasattr(args, name)}


def _precision(args: argparse.Namespace) -> bool | None:
    """``--precision``: float64 (True), float32 (False) or auto (None: by each lens's method)."""
    precision = getattr(args, "precision", "auto")
    return None if precision == "auto" else precision == "float64"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens batch``."""
    from vaelens.survey import LensCatalogError, fit_catalog, read_catalog
    from vaelens.survey.options import check_options

    options = batch_options(args)
    try:
        read_catalog(args.catalog)
        check_options(options)
    except (LensCatalogError, ValueError) as err:
        raise cli_error(str(err)) from None
    if args.scheduler is not None and args.workers is not None:
        raise cli_error("give --workers (a local cluster) or --scheduler, not both")
    if args.workers != 0 and importlib.util.find_spec("distributed") is None:
        raise cli_error(
            "vaelens batch runs on Dask distributed: pip install 'vaelens[survey]' (or "
            "'dask[distributed]'), or pass --workers 0 to fit in this process"
        )
    try:
        res = fit_catalog(
            args.catalog,
            args.out,
            options=options,
            workers=args.workers,
            scheduler=args.scheduler,
            x64=_precision(args),
            jax_cache=args.jax_cache,
            command=getattr(args, "command_line", None),
        )
    except ValueError as err:  # an existing results.csv that is no results table
        raise cli_error(str(err)) from None
    except KeyboardInterrupt:
        sys.stderr.write(
            f"vaelens batch: interrupted; the lenses that finished are in {args.out}/results.csv "
            "and the same command resumes the batch\n"
        )
        return 130
    table = res.results
    errors = dict(zip(table["id"], table["error"], strict=True))
    for obj in res.failed[:10]:
        sys.stdout.write(f"failed {obj}: {errors.get(obj, '')}\n")
    if len(res.failed) > 10:
        sys.stdout.write(f"... and {len(res.failed) - 10} more (see results.csv)\n")
    sys.stdout.write(
        f"{len(res.fitted)} fitted, {len(res.failed)} failed, {len(res.skipped)} skipped "
        f"(done before) in {res.wall_s:.0f} s; wrote {res.out}/results.csv\n"
    )
    return 1 if res.failed else 0
