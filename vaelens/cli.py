"""The ``vaelens`` command line.

::

    vaelens info
    vaelens simulate --out mock/ --seed 1
    vaelens fit mock/image.fits --psf mock/psf.fits --method map --out fit_map/
    vaelens fit mock/image.fits --psf mock/psf.fits --method nuts --chains 2 --out fit_nuts/
    vaelens batch lenses.csv --out fits/ --workers 4
    vaelens compare fit_map/ fit_nuts/
    vaelens export fit_map/ --coolest coolest/
    vaelens fit-galaxy stamps.fits --out gal/
    vaelens cutouts field.fits --psf psf.fits --out stamps/
    vaelens demo --out demo/
    vaelens train --help

Every subcommand is a module ``vaelens.commands.<name>`` with ``run(args) -> int`` (imported
lazily, so ``vaelens --help`` is instant); :func:`main` parses ``argv``,
dispatches and turns the expected failures (missing or malformed input, an existing output
folder, bad numbers) into one line on stderr and exit status 2, without a traceback. Set
``VAELENS_DEBUG=1`` (or pass ``--debug``) to see the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence

__all__ = ["CLIError", "main", "build_parser"]

log = logging.getLogger("vaelens")

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CLIError(Exception):
    """An error in the user's input: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- argument types
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``vaelens`` command (all subcommands)."""
    from vaelens import __version__

    parser = _Parser(
        prog="vaelens",
        description="Strong-lens modelling with a pretrained VAE as the source-galaxy model.",
    )
    parser.add_argument("--version", action="version", version=f"vaelens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="versions, pretrained model card, JAX devices")
    p.set_defaults(func="info")

    p = sub.add_parser("simulate", help="simulate a mock HST-like lens (FITS + truth.json)")
    p.add_argument("--out", required=True, help="output folder (must not exist)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--source",
        choices=["vae", "sersic", "catalog"],
        default="vae",
        help="source model: a decoded VAE galaxy (default), an elliptical Sersic, or "
        "a real galaxy stamp from --catalog",
    )
    p.add_argument("--catalog", help="GalSim RealGalaxyCatalog FITS file (for --source catalog)")
    p.add_argument(
        "--galaxy-index",
        type=_nonneg_int,
        default=None,
        help="catalogue row used with --source catalog (default: drawn from --seed)",
    )
    p.add_argument("--size", type=_positive_int, default=100, help="image side in pixels (100)")
    p.add_argument(
        "--pixel-scale", type=_positive_float, default=0.05, help="arcsec per pixel (0.05)"
    )
    p.add_argument(
        "--bkg-rms", type=_positive_float, default=0.01, help="background noise rms in e-/s (0.01)"
    )
    p.add_argument(
        "--exposure-time", type=_positive_float, default=2000.0, help="exposure time in s (2000)"
    )
    p.add_argument(
        "--psf-fwhm", type=_positive_float, default=0.1, help="Gaussian PSF FWHM in arcsec (0.1)"
    )
    p.add_argument(
        "--no-lens-light", dest="lens_light", action="store_false", help="no Sersic lens light"
    )
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func="simulate")

    p = sub.add_parser("fit", help="fit a lens image (MAP, SVI, NUTS or HMC)")
    _add_fit_arguments(p)
    p.set_defaults(func="fit")

    p = sub.add_parser(
        "batch",
        help="fit every lens of a catalogue (CSV/FITS/ECSV: id, image, psf, options) on Dask",
        description="Fit every lens of a catalogue with the model and inference of 'vaelens "
        "fit' (MAP + Laplace by default), one Dask task per lens, writing OUT/<id>/ and "
        "OUT/results.csv as lenses finish; run it again to resume. A catalogue column named "
        "like an option below (mask_radius, bkg_rms, theta_E, method, ...) overrides it for "
        "its row. Exit status 1 if some lens failed (see results.csv and OUT/errors.log).",
    )
    p.add_argument("catalog", help="table with columns id, image, psf (+ per-lens options)")
    p.add_argument("--out", required=True, help="output folder (created, or resumed)")
    p.add_argument(
        "--workers",
        type=_nonneg_int,
        default=None,
        help="worker processes of the local Dask cluster (default: one per core; 0: no Dask, "
        "one lens after the other in this process)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing Dask cluster (e.g. tcp://host:8786) instead of a local one",
    )
    p.add_argument(
        "--jax-cache",
        metavar="DIR",
        default=None,
        help="JAX compilation cache shared by the workers (default OUT/.jax_cache; '' disables)",
    )
    _add_fit_options(p, method_default="map")
    p.set_defaults(func="batch")

    p = sub.add_parser("fit-galaxy", help="fit galaxy stamps with the VAE decoder")
    p.add_argument("input", help="a stamp FITS image or a GalSim RealGalaxyCatalog FITS file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--hdu", type=_nonneg_int, default=0, help="image HDU of a stamp file (0)")
    p.add_argument(
        "--noise-variance",
        type=_positive_float,
        default=None,
        help="pixel noise variance of a single stamp (default: header NOISEVAR or a "
        "robust estimate from the stamp's edges)",
    )
    p.add_argument(
        "--pixel-scale",
        type=_positive_float,
        default=None,
        help="arcsec per pixel (default: header PIXSCALE, or 0.03)",
    )
    p.add_argument(
        "--max-galaxies",
        type=_positive_int,
        default=None,
        help="fit at most this many catalogue galaxies",
    )
    p.add_argument("--steps", type=_positive_int, default=300, help="optimiser steps (300)")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func="fit_galaxy")

    p = sub.add_parser(
        "cutouts",
        help="cut single-galaxy stamps out of a survey image (RealGalaxyCatalog; photutils)",
        description="Detect and deblend the galaxies of a field (photutils), keep the "
        "isolated-enough ones whose stamp fits, replace their neighbours by noise and write a "
        "GalSim RealGalaxyCatalog (catalogue + images + PSF) that vaelens fit-galaxy, vaelens "
        "train and vaelens.data.load_real_galaxy_catalog read. Needs photutils: pip install "
        "'vaelens[cutouts]'.",
    )
    p.add_argument("field", help="FITS image of the field (HDU 0 unless --hdu)")
    p.add_argument("--psf", required=True, help="FITS PSF at the field's pixel scale (odd size)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--hdu", default=0, help="HDU of the field: index or name (default 0)")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("--noise-map", help="FITS image of the per-pixel noise rms")
    noise.add_argument("--weight", help="FITS inverse-variance (weight) map")
    p.add_argument(
        "--pixel-scale",
        type=_positive_float,
        help="arcsec per pixel (default: header PIXSCALE or WCS)",
    )
    p.add_argument(
        "--stamp-size", type=_positive_int, default=64, help="stamp side, field pixels (64)"
    )
    p.add_argument(
        "--nsigma",
        type=_positive_float,
        default=3.0,
        help="detection threshold, in rms of the PSF-smoothed noise (3)",
    )
    p.add_argument(
        "--min-area", type=_positive_int, default=10, help="fewest pixels of a source (10)"
    )
    p.add_argument(
        "--min-snr", type=_positive_float, default=20.0, help="smallest segment S/N kept (20)"
    )
    p.add_argument(
        "--deblend",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="split blended sources (default: yes)",
    )
    p.add_argument(
        "--deblend-contrast",
        type=_positive_float,
        default=0.02,
        help="smallest flux fraction of a deblended component (0.02)",
    )
    p.add_argument(
        "--margin",
        type=_nonneg_int,
        default=2,
        help="pixels between a galaxy's segment and the stamp edge (2)",
    )
    p.add_argument(
        "--max-neighbour-fraction",
        type=_positive_float,
        default=0.5,
        help="largest fraction of a stamp its neighbours may cover (0.5)",
    )
    p.add_argument(
        "--psf-size",
        type=_positive_int,
        help="crop the PSF to this odd size about its centre (needed if larger than the stamp)",
    )
    p.add_argument(
        "--recentre-psf",
        action="store_true",
        help="accept an even-sized PSF: cut the largest odd box centred on its brightest pixel",
    )
    p.add_argument(
        "--zeropoint", type=float, help="AB zero point for MAG (default: header PHOTFLAM/PHOTPLAM)"
    )
    p.add_argument(
        "--prefix",
        default="real_galaxy",
        help="file-name prefix: PREFIX_catalog.fits, PREFIX_images.fits, PREFIX_PSF_images.fits",
    )
    p.add_argument(
        "--ident-offset",
        type=_nonneg_int,
        default=0,
        help="added to the segmentation labels to make IDENT (0)",
    )
    p.add_argument(
        "--seed", type=_nonneg_int, default=0, help="seed of the noise replacing neighbours (0)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func="cutouts")

    p = sub.add_parser("compare", help="compare a MAP fit folder with a NUTS fit folder")
    p.add_argument("map_dir", help="output folder of 'vaelens fit --method map'")
    p.add_argument("nuts_dir", help="output folder of 'vaelens fit --method nuts' (or svi, hmc)")
    p.add_argument(
        "--out", default=None, help="write comparison.png / comparison.csv here (default: NUTS_DIR)"
    )
    p.add_argument("--truth", default=None, help="truth.json of a simulated lens")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func="compare")

    p = sub.add_parser("export", help="export a fit folder (COOLEST template)")
    p.add_argument("fit_dir", help="output folder of 'vaelens fit' (VAE source)")
    p.add_argument("--coolest", metavar="OUT", help="write a COOLEST template into this folder")
    p.add_argument("--name", default="vaelens", help="template name, OUT/NAME.json (vaelens)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func="export")

    p = sub.add_parser("demo", help="simulate a mock lens and fit it by MAP (a few minutes)")
    p.add_argument("--out", required=True, help="output folder")
    _add_precision_argument(p)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func="demo")

    p = sub.add_parser("train", help="train the VAE (python -m vaelens.vae.train)", add_help=False)
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    p.set_defaults(func="train")
    return parser


def _add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "float64"],
        default="auto",
        help="floating-point precision; auto (default): float64 for MAP fits (the optimum and "
        "its Laplace errors are more reliable), float32 for SVI and the samplers (about 3x "
        "faster per gradient on a CPU)",
    )


def use_float64(args: argparse.Namespace) -> bool:
    """Whether a command computes in float64 (``--precision``; see its help)."""
    precision = getattr(args, "precision", "auto")
    if precision != "auto":
        return precision == "float64"
    return getattr(args, "command", None) == "demo" or getattr(args, "method", None) == "map"


def _add_fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "image",
        nargs="+",
        help="FITS image of the lens (HDU 0 unless --hdu); several images (bands) are fitted "
        "jointly: one mass and source shape, per-band amplitudes (the source colour)",
    )
    p.add_argument(
        "--psf",
        required=True,
        nargs="+",
        help="FITS PSF kernel at the image pixel scale (one per image, in the same order)",
    )
    p.add_argument(
        "--band-names",
        nargs="+",
        metavar="NAME",
        help="names of the bands of several images (default: the headers' FILTER keys, else "
        "band0 band1 ...)",
    )
    _add_fit_options(p)
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=100,
        help="NUTS/HMC draws per chain between two writes of the sampling record into the "
        "output folder (100); Ctrl-C takes effect at the end of a chunk",
    )
    p.add_argument(
        "--save-source-draws",
        action="store_true",
        help="NUTS/HMC: store the decoded source of every draw in posterior.nc (default: only "
        "its posterior mean and standard deviation, accumulated while sampling)",
    )
    p.add_argument(
        "--resume",
        metavar="FIT_DIR",
        help="continue the interrupted NUTS/HMC run whose output folder is FIT_DIR, with the "
        "options it was started with (the image and the other options may be left out)",
    )
    p.add_argument("--resume-cwd", help=argparse.SUPPRESS)


def _add_fit_options(p: argparse.ArgumentParser, *, method_default: str | None = None) -> None:
    """The data, model and inference options of ``vaelens fit`` (all but the image, the PSF
    and the output folder), shared with ``vaelens batch``; ``--method`` is required unless
    ``method_default`` is given."""
    p.add_argument("--hdu", default=0, help="HDU of the image: index or name (default 0)")
    noise = p.add_argument_group("noise (default: header BKG_RMS, EXPTIME and EXPMAP extension)")
    noise.add_argument("--noise-map", help="FITS image of the per-pixel noise sigma")
    noise.add_argument("--bkg-rms", type=_positive_float, help="background rms (image units)")
    noise.add_argument("--exposure-time", type=_positive_float, help="exposure time (s)")
    p.add_argument(
        "--pixel-scale",
        type=_positive_float,
        help="arcsec per pixel (default: header PIXSCALE or CD matrix)",
    )
    mask = p.add_mutually_exclusive_group()
    mask.add_argument("--mask", help="FITS mask image (non-zero = pixel used)")
    mask.add_argument(
        "--mask-radius",
        type=_positive_float,
        help="use pixels within this radius (arcsec) of the image centre",
    )
    p.add_argument(
        "--lens-light",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit a Sersic lens light (default: yes)",
    )
    p.add_argument(
        "--source", choices=["vae", "sersic"], default="vae", help="source model (default vae)"
    )
    p.add_argument(
        "--mass-profile",
        choices=["epl", "sie"],
        default="epl",
        help="main deflector: elliptical power law with free slope gamma (default) or SIE "
        "(gamma = 2)",
    )
    p.add_argument(
        "--shear",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="external shear gamma1, gamma2 (default: yes)",
    )
    p.add_argument(
        "--center-prior-sigma",
        type=_positive_float,
        default=None,
        metavar="ARCSEC",
        help="width of the Normal prior of the lens centre about the coordinate origin (the "
        "image centre unless the header's RA0/DEC0 place it elsewhere); default 0.05",
    )
    p.add_argument(
        "--model-error",
        type=_positive_float,
        default=None,
        metavar="FRAC",
        help="add a fractional model-error term to the likelihood: pixel variance + "
        "(f * model)^2 with f ~ LogNormal(log FRAC, 1) fitted (e.g. 0.05); widens the error "
        "bars where the source model cannot reproduce the galaxy. Default: none",
    )
    p.add_argument(
        "--method",
        choices=["map", "svi", "nuts", "hmc"],
        required=method_default is None,
        default=method_default,
        help=None if method_default is None else f"inference method (default {method_default})",
    )
    p.add_argument(
        "--starts",
        type=_positive_int,
        default=8,
        help="MAP starts (8); VAE sources are fitted in two stages (vaelens.infer.staged_map_fit)",
    )
    p.add_argument(
        "--init-from",
        metavar="FIT_DIR",
        help="start the MAP from an earlier fit of the same image and model (its output folder "
        "or posterior.nc): the lowest-chi2 draw of each of its chains, at most --starts, "
        "refined by BFGS (no staged search)",
    )
    p.add_argument(
        "--optimizer",
        choices=["auto", "lbfgs", "bfgs"],
        default="auto",
        help="MAP optimiser; auto (default): bfgs in float64, lbfgs in float32, where "
        "the BFGS line search tends to stall",
    )
    _add_precision_argument(p)
    p.add_argument("--chains", type=_positive_int, default=2, help="MCMC chains (2)")
    p.add_argument("--warmup", type=_positive_int, default=300, help="MCMC warm-up steps (300)")
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=300,
        help="MCMC draws per chain, SVI/Laplace posterior draws per chain (300)",
    )
    p.add_argument(
        "--max-tree-depth", type=_positive_int, default=10, help="NUTS maximum tree depth (10)"
    )
    p.add_argument(
        "--dense-mass",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dense (default) or diagonal mass matrix for NUTS/HMC, started from the Laplace one",
    )
    p.add_argument(
        "--init-mass",
        choices=["laplace", "gauss-newton"],
        default="laplace",
        help="NUTS/HMC metric that whitens the sampling space: the (capped) Laplace covariance "
        "at the MAP (default) or the Gauss-Newton covariance (Fisher information + prior "
        "Hessian; positive definite even where the MAP sits near a saddle, and a faster "
        "warm-up in benchmarks/bench_inference.py)",
    )
    p.add_argument("--svi-steps", type=_positive_int, default=2000, help="SVI steps (2000)")
    p.add_argument(
        "--supersampling",
        type=_positive_int,
        default=2,
        help="supersampling factor of the ray tracing (2)",
    )
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (0)")
    p.add_argument(
        "--theta-E",
        dest="theta_E",
        type=_positive_float,
        help="prior median of the Einstein radius in arcsec (default 1.0, a factor 1.35 wide)",
    )
    p.add_argument(
        "--gamma-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="bounds of the truncated-normal prior on the EPL slope gamma (default 1.5 2.5; "
        "at most 1.2 2.8)",
    )
    p.add_argument("--truth", help="truth.json of a simulated lens (drawn on the plots)")
    p.add_argument(
        "--weights",
        help="VAE weights (safetensors with its model card, or a training checkpoint); "
        "default: the pretrained weights",
    )


# --------------------------------------------------------------------------- commands
def _dispatch(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"vaelens.commands.{args.func}")
    return int(module.run(args) or 0)


# --------------------------------------------------------------------------- entry point
def _expected_errors() -> tuple[type[BaseException], ...]:
    from vaelens.io_results import OutputExistsError

    return (
        CLIError,
        OutputExistsError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vaelens`` command with ``argv`` (default ``sys.argv[1:]``); return the status.

    Input the user can fix (validated at the boundary: :class:`CLIError`, an existing output
    folder, a missing or unreadable file) prints ``vaelens COMMAND: error: <message>`` on stderr
    and returns 2; an output folder that cannot be written (a full disk) prints one line and
    returns 1; Ctrl-C returns 130. Nothing is left in the output folder of a failed run. Any
    other exception is a bug and shows its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "train":
        args = argparse.Namespace(
            func="train", train_args=argv[1:], debug=False, quiet=False, command="train"
        )
    else:
        from vaelens.commands.fit import resume_argv

        try:
            argv = resume_argv(argv)  # `fit --resume FIT_DIR`: the interrupted run's options
        except CLIError as err:
            sys.stderr.write(f"vaelens fit: error: {_one_line(err)}\n")
            return EXIT_USAGE
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.command_line = "vaelens " + " ".join(shlex.quote(a) for a in argv)
    debug = args.debug or os.environ.get("VAELENS_DEBUG", "") not in ("", "0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vaelens").setLevel(logging.WARNING if args.quiet else logging.INFO)
    logging.getLogger("arviz").setLevel(logging.ERROR)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    _host_devices(args)
    _configure_jax(x64=use_float64(args))
    previous_handlers = _terminate_as_interrupt()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        warnings.showwarning = _show_warning
        try:
            return _dispatch(args)
        except KeyboardInterrupt as exc:
            folder = getattr(exc, "folder", None)
            if folder is not None and getattr(exc, "draws_done", 0) > 0:
                sys.stderr.write(
                    f"vaelens: interrupted after {exc.draws_done} of {exc.draws_total} draws per "
                    f"chain; the finished chunks are in {folder}/sampling. Continue with: "
                    f"vaelens fit --resume {shlex.quote(str(folder))}\n"
                )
            elif folder is not None:
                sys.stderr.write(
                    "vaelens: interrupted before the first chunk of draws; continue with: "
                    f"vaelens fit --resume {shlex.quote(str(folder))} (it starts the sampling "
                    "again)\n"
                )
            else:
                sys.stderr.write("vaelens: interrupted; no output folder was written\n")
            return 130
        except _expected_errors() as err:
            if debug:
                raise
            sys.stderr.write(f"vaelens {args.command}: error: {_one_line(err)}\n")
            return EXIT_USAGE
        except OSError as err:
            from vaelens.fit_folder import OutputWriteError

            if debug or not isinstance(err, OutputWriteError):
                raise
            sys.stderr.write(f"vaelens {args.command}: error: {_one_line(err)}\n")
            return EXIT_FAILURE
        finally:
            import signal

            for signum, old in previous_handlers.items():
                signal.signal(signum, old)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr (``vaelens: warning: ...``), without source lines."""
    if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
        return
    sys.stderr.write(f"vaelens: warning: {_one_line(message)}\n")


def _terminate_as_interrupt() -> dict:
    """Treat SIGTERM (``kill``) like Ctrl-C, so the temporary output folder is removed.

    Returns the previous handlers (restored by :func:`main` when it returns).
    """
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = {}
    try:
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, handler)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # background job (nohup ... &)
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread (e.g. called from a worker thread)
        pass
    return previous


def _host_devices(args: argparse.Namespace) -> None:
    """Expose several CPU host devices to JAX so that MAP starts and MCMC chains run in parallel.

    XLA:CPU runs one optimiser start's or one chain's small kernels on about one core. The
    multi-start MAP splits its starts over the local devices (:func:`vaelens.infer.map_fit`)
    and NumPyro's ``parallel`` chain method needs one device per chain;
    ``--xla_force_host_platform_device_count`` provides them on a CPU (one per core, and at
    least ``--chains`` for NUTS/HMC: about 3x faster than sequential chains for 4 chains on 2
    cores, ``benchmarks/bench_inference.py``). Only for ``fit`` and ``demo``, only before JAX
    has started, and only if the user did not set the flag. On an accelerator JAX ignores it.
    """
    if getattr(args, "command", None) not in ("fit", "demo"):
        return
    n = os.cpu_count() or 1
    if getattr(args, "method", None) in ("nuts", "hmc"):
        n = max(n, int(getattr(args, "chains", 1) or 1))
    flags = os.environ.get("XLA_FLAGS", "")
    if n < 2 or "xla_force_host_platform_device_count" in flags or "jax" in sys.modules:
        return
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def _configure_jax(x64: bool = False) -> None:
    """Persistent XLA compilation cache (``VAELENS_JAX_CACHE``; ``0`` disables it).

    Compiling the lens model and the decoder dominates short runs on a CPU; with the cache a
    second ``vaelens fit`` or ``vaelens demo`` of the same image size starts in seconds.
    """
    import jax

    if x64:
        jax.config.update("jax_enable_x64", True)
    cache = os.environ.get(
        "VAELENS_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "vaelens", "jax")
    )
    if cache in ("", "0"):
        return
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    # run the imported module's main, so that its CLIError is the one the commands raise
    from vaelens.cli import main as _main

    sys.exit(_main())
