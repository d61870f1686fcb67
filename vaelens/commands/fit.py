"""``vaelens fit``: fit a lens image by MAP (BFGS + Laplace), SVI, NUTS or HMC.

Several images (``vaelens fit IMG1 IMG2 ... --psf PSF1 PSF2 ...``) are bands of one lens,
read by :func:`vaelens.data.multiband.load_multiband` and fitted jointly by
:func:`vaelens.models.multiband_lens_model`.

The command reads and checks the FITS inputs (:func:`vaelens.commands._inputs.load_image_data`),
builds the data-informed model (:meth:`vaelens.models.LensSpec.from_data`), runs
:func:`vaelens.infer.fit_lens` and writes its output folder (:meth:`vaelens.infer.LensFit.write`).
NUTS/HMC write every chunk of draws into the output folder's ``sampling/`` record while they
run; ``vaelens fit --resume FIT_DIR`` continues an interrupted run with its own options.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from vaelens.commands._common import cli_error, make_decoder, parse_hdu
from vaelens.commands._inputs import load_image_data

__all__ = ["fit_lens_from_args", "fit_options", "resume_argv", "run", "spec_from_args"]

#: Options of ``vaelens fit`` that name files, made absolute when a run is resumed.
_PATH_OPTIONS = ("image", "psf", "noise_map", "mask", "truth", "weights", "init_from")


def spec_from_args(args: argparse.Namespace, data):
    """The :class:`vaelens.models.LensSpec` of parsed ``vaelens fit`` arguments."""
    from vaelens.models import LensSpec

    try:
        return LensSpec.from_data(
            data,
            mass_profile=args.mass_profile,
            include_shear=args.shear,
            include_lens_light=args.lens_light,
            source_model=args.source,
            supersampling=args.supersampling,
            theta_E=args.theta_E,
            gamma_range=args.gamma_range,
            center_sigma=args.center_prior_sigma,
            model_error=getattr(args, "model_error", None),
        )
    except ValueError as err:
        raise cli_error(str(err)) from None


def fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`vaelens.infer.fit_lens` given by parsed ``vaelens fit`` arguments."""
    import os

    return {
        "method": args.method,
        "starts": args.starts,
        "optimizer": args.optimizer,
        "chains": args.chains,
        "warmup": args.warmup,
        "samples": args.samples,
        "svi_steps": args.svi_steps,
        "max_tree_depth": args.max_tree_depth,
        "dense_mass": args.dense_mass,
        "init_mass": args.init_mass,
        "init_from": args.init_from,
        "progress_bar": os.environ.get("TQDM_DISABLE", "0") in ("", "0"),
        **_sampling_options(args),
    }


def _sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """Chunked NUTS/HMC sampling into the output folder (``--chunk-size``, ``--resume``)."""
    import os

    if args.method not in ("nuts", "hmc") or getattr(args, "out", None) is None:
        return {}
    argv = shlex.split(args.command_line)[1:] if getattr(args, "command_line", None) else []
    if "--resume" in argv:
        argv = argv[: argv.index("--resume")]
    return {
        "chunk_size": getattr(args, "chunk_size", 100),
        "keep_draws": ("source",) if getattr(args, "save_source_draws", False) else (),
        "checkpoint": args.out,
        "resume": bool(getattr(args, "resume", None)),
        "checkpoint_info": {"argv": argv, "cwd": os.getcwd()},
    }


def resume_argv(argv: list[str]) -> list[str]:
    """``fit --resume FIT_DIR [...]`` -> the interrupted run's own arguments plus ``--resume``.

    Other ``argv`` is returned as it is.
    """
    if not argv or argv[0] != "fit":
        return argv
    folder = None
    for i, a in enumerate(argv):
        if a == "--resume" and i + 1 < len(argv):
            folder = argv[i + 1]
        elif a.startswith("--resume="):
            folder = a.split("=", 1)[1]
    if folder is None:
        return argv
    from vaelens.infer.chunked import ResumeError, SamplingStore

    try:
        info = SamplingStore(folder).settings().get("info", {})
    except ResumeError as err:
        raise cli_error(f"--resume: {err}") from None
    stored = info.get("argv")
    if not stored or stored[0] != "fit":
        raise cli_error(f"--resume: {folder} was not written by vaelens fit")
    return [*stored, "--resume", folder, "--resume-cwd", info.get("cwd", ".")]


def fit_lens_from_args(args: argparse.Namespace):
    """Read the inputs and run the fit of parsed ``vaelens fit`` arguments.

    Returns ``(fit, meta, truth)``: the :class:`vaelens.infer.LensFit`, what ``summary.json``
    records of the command (command line, input files, seed, decoder) and the truth of a mock.
    """
    import jax

    from vaelens.infer import fit_lens
    from vaelens.infer.chunked import ResumeError
    from vaelens.infer.restart import RestartError

    if len(args.image) > 1 or len(args.psf) > 1 or args.band_names:
        return _fit_bands_from_args(args)
    data = load_image_data(
        args.image[0],
        args.psf[0],
        hdu=parse_hdu(args.hdu),
        noise_map=args.noise_map,
        bkg_rms=args.bkg_rms,
        exposure_time=args.exposure_time,
        pixel_scale=args.pixel_scale,
        mask=args.mask,
        mask_radius=args.mask_radius,
    )
    truth = None
    if args.truth:
        from vaelens.commands.simulate import load_truth

        truth = load_truth(args.truth)
    spec = spec_from_args(args, data)
    decoder, decoder_kind = make_decoder(args.source, args.weights)
    try:
        fit = fit_lens(
            data, spec, key=jax.random.PRNGKey(args.seed), decoder=decoder, **fit_options(args)
        )
    except RestartError as err:
        raise cli_error(f"--init-from: {err}") from None
    except ResumeError as err:
        raise cli_error(f"--resume: {err}") from None
    meta = {
        "command": getattr(args, "command_line", None),
        "image": str(Path(args.image[0]).resolve()),
        "psf": str(Path(args.psf[0]).resolve()),
        "seed": args.seed,
        "decoder": decoder_kind,
    }
    return fit, meta, truth


#: Options of one band that ``vaelens fit`` does not take for several images (each band's
#: noise model comes from its header).
_SINGLE_BAND_OPTIONS = ("noise_map", "mask", "bkg_rms", "exposure_time", "pixel_scale")


def _fit_bands_from_args(args: argparse.Namespace):
    """:func:`fit_lens_from_args` for several images: a joint multi-band fit."""
    import jax

    from vaelens.data.inputs import InputError
    from vaelens.data.multiband import load_multiband
    from vaelens.infer import fit_lens
    from vaelens.infer.restart import RestartError

    given = [o for o in _SINGLE_BAND_OPTIONS if getattr(args, o, None) is not None]
    if given:
        flags = ", ".join("--" + o.replace("_", "-") for o in given)
        raise cli_error(
            f"{flags}: not supported with several images; put each band's noise model "
            "(BKG_RMS, EXPTIME or an EXPMAP extension) and pixel scale in its header"
        )
    try:
        data = load_multiband(
            args.image, args.psf, names=args.band_names, hdu=parse_hdu(args.hdu),
            mask_radius=args.mask_radius,
        )
    except InputError as err:
        raise cli_error(str(err)) from None
    truth = None
    if args.truth:
        from vaelens.commands.simulate import load_truth

        truth = load_truth(args.truth)
    spec = spec_from_args(args, data.reference)
    decoder, decoder_kind = make_decoder(args.source, args.weights)
    try:
        fit = fit_lens(
            data, spec, key=jax.random.PRNGKey(args.seed), decoder=decoder, **fit_options(args)
        )
    except RestartError as err:
        raise cli_error(f"--init-from: {err}") from None
    meta = {
        "command": getattr(args, "command_line", None),
        "image": [str(Path(p).resolve()) for p in args.image],
        "psf": [str(Path(p).resolve()) for p in args.psf],
        "seed": args.seed,
        "decoder": decoder_kind,
    }
    return fit, meta, truth


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens fit``."""
    from vaelens.fit_folder import OutputWriteError, format_summary
    from vaelens.io_results import check_output_dir

    if getattr(args, "resume", None):
        _resolve_resumed(args)
    else:
        check_output_dir(args.out, force=args.force)
    try:
        fit, meta, truth = fit_lens_from_args(args)
    except KeyboardInterrupt as exc:
        _interrupted(args, exc)
        raise
    try:
        summary = fit.write(args.out, force=args.force, truth=truth, meta=meta)
    except OutputWriteError:
        sys.stdout.write(fit.summary().to_string() + "\n")
        raise
    sys.stdout.write(format_summary(summary))
    bands = "".join(f"model_{b}.png, " for b in summary.get("bands", []))
    sys.stdout.write(
        f"wrote {Path(args.out)}/ (posterior.nc, summary.csv, summary.json, model.png, "
        f"{bands}corner.png, trace.png)\n"
    )
    return 0


def _resolve_resumed(args: argparse.Namespace) -> None:
    """A resumed run writes into its own folder and reads its files relative to where it was
    started."""
    folder = Path(args.resume).expanduser().absolute()
    cwd = Path(getattr(args, "resume_cwd", None) or ".")
    for name in _PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            setattr(args, name, str(cwd / value))
    args.out = str(folder)


def _interrupted(args: argparse.Namespace, exc: KeyboardInterrupt) -> None:
    """Raise the sampler's interruption (with the folder to resume) for a Ctrl-C in warm-up."""
    from vaelens.infer.chunked import SamplingInterrupted, SamplingStore

    if isinstance(exc, SamplingInterrupted) or args.method not in ("nuts", "hmc"):
        return
    if SamplingStore(args.out).exists():
        folder = Path(args.out).expanduser().absolute()
        raise SamplingInterrupted("interrupted in warm-up", folder, 0, args.samples) from None
