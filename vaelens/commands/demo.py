"""``vaelens demo --out DIR``: simulate a mock lens with a VAE source and fit it by MAP.

The quickest way to see vaelens work end to end (about a minute or two on a laptop CPU, most of
it compilation; computed in float64 unless ``--float32``, because the float32 MAP and its
Laplace errors are less reliable). ``DIR`` receives

- ``data/``: ``image.fits``, ``psf.fits``, ``truth.json`` (as written by ``vaelens simulate``);
- ``fit/``: the ``vaelens fit --method map`` outputs (``posterior.nc``, ``summary.csv``,
  ``summary.json``, ``model.png``, ``corner.png``, ``trace.png``),

and the table of fitted vs. true lens parameters is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaelens.commands import _outputs
from vaelens.commands.fit import fit_into
from vaelens.commands.simulate import simulate_mock, write_mock

#: Mock used by the demo: 64 x 64 pixels of 0.06" (3.84" across), HST-like noise and PSF.
DEMO_IMAGE = dict(size=64, pixel_scale=0.06, bkg_rms=0.01, exposure_time=2000.0, psf_fwhm=0.12)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens demo``."""
    from vaelens.cli import build_parser
    from vaelens.io_results import atomic_output_dir, check_output_dir

    out = check_output_dir(args.out, force=args.force)
    with atomic_output_dir(out, force=args.force) as tmp:
        (tmp / "data").mkdir()
        (tmp / "fit").mkdir()
        mock = simulate_mock(seed=args.seed, source="vae", lens_light=False, **DEMO_IMAGE)
        write_mock(tmp / "data", mock)
        argv = [
            "fit",
            str(tmp / "data" / "image.fits"),
            "--psf",
            str(tmp / "data" / "psf.fits"),
            "--no-lens-light",
            "--method",
            "map",
            "--starts",
            "4",
            "--samples",
            "200",
            "--chains",
            "1",
            "--seed",
            str(args.seed),
            "--truth",
            str(tmp / "data" / "truth.json"),
            "--out",
            str(out / "fit"),
        ]
        fit_args = build_parser().parse_args(argv)
        fit_args.command_line = getattr(args, "command_line", None)
        summary = fit_into(fit_args, tmp / "fit")
    sys.stdout.write(_outputs.format_summary(summary))
    sys.stdout.write(
        f"wrote {Path(args.out)}/data (mock lens) and {Path(args.out)}/fit "
        "(MAP fit; see fit/model.png)\n"
    )
    return 0
