"""Joint two-band fit against each band alone: the Laplace sigmas of theta_E and gamma.

A simulated lens (EPL + external shear, Sersic lens light, a VAE source: the pretrained decoder
when its weights are installed, else a random-weight decoder of the same architecture) is
observed in two bands that differ as HST/ACS F814W and WFC3/IR F160W do:

=========  ===========  ===========  =====  ==========  ==========  =====================
band       pixels       arcsec/px    FWHM   bkg rms     exposure    source, light ratio
=========  ===========  ===========  =====  ==========  ==========  =====================
F814W      64 x 64      0.05         0.09"  0.01        2000 s      1, 1 (reference)
F160W      40 x 40      0.08         0.18"  0.01        2000 s      2.5, 4 (a redder source)
=========  ===========  ===========  =====  ==========  ==========  =====================

The F160W grid is offset by (0.03", -0.02") from the F814W one. Each band alone
(:func:`vaelens.infer.fit_lens` of one :class:`~vaelens.data.ImageData`, priors
``LensSpec.from_data`` of that band) and both together (a list of the two, the priors of the
reference band and the flux ratio) are fitted by multi-start MAP + Laplace in float64, for
``--seeds`` noise realisations. The table gives the delta-method Laplace sigma (``laplace_sd``)
and the sd of the capped Laplace draws of theta_E and gamma, and the MAP values against the
truth; the JSON goes to ``benchmarks/results/bench_multiband.json``.

Usage::

    python benchmarks/bench_multiband.py              # 2 noise realisations, 8 starts
    python benchmarks/bench_multiband.py --quick      # 1 realisation, 4 starts, smaller images
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from bench_decoder import get_decoder  # noqa: E402

from vaelens.infer import fit_lens, package_versions  # noqa: E402
from vaelens.models import BandSetup, LensSpec, simulate_multiband  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_multiband.json"
PARAMS = ("theta_E", "gamma")
TRUTH = {
    "theta_E": 1.1,
    "gamma": 2.05,
    "source_amp": 2.0,
    "source_size": 1.6,
    "light_amp": 0.3,
}


def bands(quick: bool) -> list[BandSetup]:
    """The two bands of the mock (smaller images with ``quick``)."""
    n1, n2 = (56, 36) if quick else (64, 40)
    return [
        BandSetup("F814W", (n1, n1), 0.05, psf_fwhm=0.09, psf_size=11, bkg_rms=0.01,
                  exposure_time=2000.0),
        BandSetup("F160W", (n2, n2), 0.08, offset=(0.03, -0.02), psf_fwhm=0.18, psf_size=11,
                  bkg_rms=0.01, exposure_time=2000.0, source_ratio=2.5, light_ratio=4.0),
    ]


def one_fit(data, spec, decoder, key, starts):
    t0 = time.perf_counter()
    fit = fit_lens(data, spec, method="map", key=key, decoder=decoder, starts=starts,
                   chains=2, samples=200, progress_bar=False)
    wall = time.perf_counter() - t0
    post = fit.idata.posterior
    row = {"wall_s": wall, "map_chi2": fit.map.chi2, "num_pixels": fit.map.num_pixels}
    for p in PARAMS:
        row[p] = {
            "map": float(fit.map.summary_values()[p]),
            "laplace_sd": float(fit.map.sigma[p]),
            "draws_sd": float(np.asarray(post[p]).std()),
        }
    for name in ("source_colour_F160W", "light_colour_F160W"):
        if name in post:
            row[name] = {
                "map": float(fit.map.summary_values()[name]),
                "laplace_sd": float(fit.map.sigma[name]),
            }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 realisation, 4 starts, small images")
    ap.add_argument("--seeds", type=int, default=None, help="noise realisations (default 2)")
    ap.add_argument("--starts", type=int, default=None, help="MAP starts (default 8)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = args.seeds or (1 if args.quick else 2)
    starts = args.starts or (4 if args.quick else 8)
    decoder, decoder_kind = get_decoder()
    setups = bands(args.quick)
    base = LensSpec(include_lens_light=True, supersampling=2)
    rows = []
    for seed in range(seeds):
        data, truth = simulate_multiband(jax.random.PRNGKey(100 + seed), setups, base, TRUTH,
                                         decoder)
        key = jax.random.PRNGKey(seed)
        for label, d in (("F814W", data[0]), ("F160W", data[1]), ("joint", data)):
            ref = d.reference if label == "joint" else d
            spec = LensSpec.from_data(ref, include_lens_light=True, supersampling=2)
            row = one_fit(d, spec, decoder, key, starts)
            row.update(seed=seed, fit=label)
            rows.append(row)
            print(f"seed {seed} {label:6s} theta_E {row['theta_E']['map']:.4f} "
                  f"+- {row['theta_E']['laplace_sd']:.4f}  gamma {row['gamma']['map']:.4f} "
                  f"+- {row['gamma']['laplace_sd']:.4f}  ({row['wall_s']:.0f} s)", flush=True)
    truth_out = {k: float(v) for k, v in truth.items() if np.ndim(v) == 0}

    header = (f"{'seed':>4} {'fit':6} {'theta_E':>8} {'sd_lap':>7} {'sd_draw':>7} "
              f"{'gamma':>7} {'sd_lap':>7} {'sd_draw':>7} {'chi2/pix':>8} {'wall s':>7}")
    print("\n" + header)
    for r in rows:
        print(f"{r['seed']:>4} {r['fit']:6} {r['theta_E']['map']:8.4f} "
              f"{r['theta_E']['laplace_sd']:7.4f} {r['theta_E']['draws_sd']:7.4f} "
              f"{r['gamma']['map']:7.4f} {r['gamma']['laplace_sd']:7.4f} "
              f"{r['gamma']['draws_sd']:7.4f} {r['map_chi2'] / r['num_pixels']:8.3f} "
              f"{r['wall_s']:7.0f}")
    print(f"truth: theta_E {truth_out['theta_E']}, gamma {truth_out['gamma']}, source colour "
          f"{truth_out['source_colour_F160W']:.3f}, light colour "
          f"{truth_out['light_colour_F160W']:.3f} mag")
    verdict = {}
    for p in PARAMS:
        ok = []
        for seed in range(seeds):
            by = {r["fit"]: r[p]["laplace_sd"] for r in rows if r["seed"] == seed}
            ok.append(by["joint"] < min(by["F814W"], by["F160W"]))
        verdict[p] = ok
        print(f"joint laplace_sd({p}) < both single bands: {ok}")
    result = {
        "benchmark": "bench_multiband",
        "quick": args.quick,
        "starts": starts,
        "decoder": decoder_kind,
        "bands": [vars(b) | {"offset": list(b.offset), "shape": list(b.shape)} for b in setups],
        "truth": truth_out,
        "rows": rows,
        "joint_smaller_than_each_band": verdict,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "versions": package_versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
