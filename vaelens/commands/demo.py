"""``vaelens demo --out DIR``: simulate a mock lens with a VAE source and fit it by MAP.

The quickest way to see vaelens work end to end (under a minute or two on a laptop CPU, most of
it compilation). ``DIR`` receives

- ``data/``: ``image.fits``, ``psf.fits``, ``truth.json`` (as written by ``vaelens simulate``);
- ``fit/``: the outputs of ``vaelens fit --method map`` (``posterior.nc``, ``summary.csv``,
  ``summary.json``, ``model.png``, ``corner.png``, ``trace.png``),

and the table of fitted vs. true lens parameters is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaelens.commands.simulate import simulate_mock, write_mock

#: Mock used by the demo: 64 x 64 pixels of 0.06" (3.84" across), HST-like noise and PSF.
DEMO_IMAGE = dict(size=64, pixel_scale=0.06, bkg_rms=0.01, exposure_time=2000.0, psf_fwhm=0.12)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vaelens demo``."""
    import jax

    from vaelens.commands._common import make_decoder
    from vaelens.commands._inputs import load_image_data
    from vaelens.commands.simulate import load_truth
    from vaelens.fit_folder import format_summary
    from vaelens.infer import fit_lens
    from vaelens.io_results import atomic_output_dir, check_output_dir
    from vaelens.models import LensSpec

    out = check_output_dir(args.out, force=args.force)
    with atomic_output_dir(out, force=args.force) as tmp:
        (tmp / "data").mkdir()
        mock = simulate_mock(seed=args.seed, source="vae", lens_light=False, **DEMO_IMAGE)
        write_mock(tmp / "data", mock)
        data = load_image_data(tmp / "data" / "image.fits", tmp / "data" / "psf.fits")
        spec = LensSpec.from_data(data, include_lens_light=False)
        decoder, decoder_kind = make_decoder("vae")
        fit = fit_lens(
            data, spec, method="map", key=jax.random.PRNGKey(args.seed), decoder=decoder,
            starts=4, chains=1, samples=200,
        )
        meta = {
            "command": getattr(args, "command_line", None),
            "image": str(out / "data" / "image.fits"),
            "psf": str(out / "data" / "psf.fits"),
            "seed": args.seed,
            "decoder": decoder_kind,
        }
        truth = load_truth(tmp / "data" / "truth.json")
        summary = fit.write(tmp / "fit", truth=truth, meta=meta)
    sys.stdout.write(format_summary(summary))
    sys.stdout.write(
        f"wrote {Path(args.out)}/data (mock lens) and {Path(args.out)}/fit "
        "(MAP fit; see fit/model.png)\n"
    )
    return 0
