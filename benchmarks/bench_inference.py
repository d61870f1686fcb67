"""Benchmark of lens inference: multi-start MAP (BFGS + Laplace), SVI and NUTS.

A simulated 100x100 HST-like lens (0.05 arcsec/px, EPL + external shear, a VAE source -- the
pretrained decoder when its weights are installed, otherwise a random-weight decoder of the same
architecture, as reported in the output -- an obscured-Airy PSF, background + Poisson noise,
supersampling 2) is fitted in float32 by

1. ``staged_map_fit``: multi-start BFGS from prior draws + Laplace covariance;
2. ``svi``: full-covariance Gaussian guide initialised at the MAP;
3. ``nuts``: 4 chains initialised near the MAP, run in coordinates whitened by the
   Gauss-Newton covariance at the MAP (``--init-mass``; diagonal mass-matrix adaptation on
   top); the number of draws is doubled (up to a cap) until R-hat <= 1.01 and bulk ESS >= 400
   for every lens parameter.

It prints a table (wall times, ESS/s, truth inside the 68 / 95 % intervals) and writes
``benchmarks/results/bench_inference.json``.

Usage::

    python benchmarks/bench_inference.py            # full run
    python benchmarks/bench_inference.py --quick    # small and short, a smoke test
    python benchmarks/bench_inference.py --stages map,svi   # MAP and SVI only (set-up times)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path

# Four host "devices" so that the four NUTS chains run in parallel (chain_method="parallel")
# on the CPU cores instead of one after the other; set before JAX initialises its backend.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

import jax
import jax.numpy as jnp
import numpy as np
from bench_decoder import get_decoder

from vaelens.data import hst_like_psf
from vaelens.data.image_data import ImageData
from vaelens.infer import compare_fits, diagnostics, nuts, package_versions, staged_map_fit, svi
from vaelens.infer.flat import flatten_model
from vaelens.models import LensPriors, LensSpec, SourcePriors, lens_model, simulate_lens

LENS = ("theta_E", "gamma", "e1", "e2", "center_x", "center_y", "gamma1", "gamma2")
RESULTS = Path(__file__).resolve().parent / "results" / "bench_inference.json"
log = logging.getLogger("bench_inference")


def make_problem(quick: bool, decoder):
    n = 60 if quick else 100
    truth = {
        "theta_E": 1.2,
        "gamma": 2.08,
        "e1": 0.12,
        "e2": -0.06,
        "center_x": 0.02,
        "center_y": -0.03,
        "gamma1": 0.04,
        "gamma2": -0.03,
        "source_center_x": 0.08,
        "source_center_y": 0.05,
        "source_size": 1.2,
        "source_amp": 30.0,
    }
    # "user guesses" a little off the truth
    spec = LensSpec(
        lens=LensPriors(theta_E=1.25, theta_E_scale=0.1, center_x=0.0, center_y=0.0),
        source=SourcePriors(size=1.2, size_scale=0.2, amp=25.0, amp_scale=0.5,
                            center_x=0.05, center_y=0.05, center_scale=0.1),
        supersampling=2,
    )
    pixel_scale = 0.05 if not quick else 0.08
    data, truth = simulate_lens(
        jax.random.PRNGKey(42), spec, truth=truth, decoder=decoder, shape=(n, n),
        pixel_scale=pixel_scale, psf_fwhm=None, bkg_rms=0.006, exposure_time=2000.0,
    )
    psf = hst_like_psf(fwhm=0.09, pixel_scale=pixel_scale, size=21)
    # re-render with the HST-like PSF (simulate_lens draws a Gaussian PSF by default)
    from vaelens.lensing import draw_noise
    from vaelens.models import lens_components, render_lens

    blank = ImageData(np.zeros(data.shape), grid=data.grid, psf=psf, bkg_rms=0.006,
                      exposure_time=2000.0)
    params = {k: jnp.asarray(v) for k, v in truth.items()}
    model = render_lens(blank, spec, lens_components(params, spec, decoder))
    image = model + draw_noise(jax.random.PRNGKey(43), model, 0.006, 2000.0)
    data = ImageData(np.asarray(image), grid=data.grid, psf=psf, bkg_rms=0.006,
                     exposure_time=2000.0)
    truth["model_image"] = np.asarray(model)
    return data, spec, truth


def gradient_cost(data, spec, decoder) -> dict[str, float]:
    """Milliseconds per potential and per gradient evaluation (compiled, warm)."""
    fm = flatten_model(lens_model, (data, spec, decoder), key=jax.random.PRNGKey(0))
    x = fm.init_flat[0]
    out = {}
    for name, f in (("potential_ms", jax.jit(fm.potential)),
                    ("gradient_ms", jax.jit(jax.grad(fm.potential)))):
        jax.block_until_ready(f(x))
        t = time.perf_counter()
        for _ in range(20):
            jax.block_until_ready(f(x))
        out[name] = (time.perf_counter() - t) / 20 * 1e3
    out["dim"] = fm.dim
    return out


def interval_hits(idata, truth) -> dict[str, dict[str, bool]]:
    hits = {}
    for name in LENS:
        d = np.asarray(idata.posterior[name]).ravel()
        q = np.percentile(d, [2.5, 16, 84, 97.5])
        hits[name] = {"in68": bool(q[1] <= truth[name] <= q[2]),
                      "in95": bool(q[0] <= truth[name] <= q[3])}
    return hits


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small image, short runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-starts", type=int, default=None)
    parser.add_argument("--chain-method", default="parallel",
                        choices=("sequential", "vectorized", "parallel"))
    parser.add_argument("--max-tree-depth", type=int, default=8)
    parser.add_argument("--progress", action="store_true", help="NUTS progress bar")
    parser.add_argument("--num-warmup", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--max-samples", type=int, default=2000,
                        help="cap of draws per chain when doubling for convergence")
    parser.add_argument("--init-mass", default="gauss-newton",
                        choices=("laplace", "gauss-newton", "svi"),
                        help="covariance that whitens the NUTS coordinates")
    parser.add_argument("--no-adapt-mass", action="store_true",
                        help="NUTS keeps the whitening metric (adapts only its step size)")
    parser.add_argument("--jitter", type=float, default=0.5,
                        help="NUTS chains start at x* + jitter L eps (L: the whitening)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="persistent XLA compilation cache directory (timings of a second "
                             "run then exclude most compilation; reported in the JSON)")
    parser.add_argument("--stages", default="map,svi,nuts",
                        help="comma-separated stages to run, in order: map, map,svi or "
                             "map,svi,nuts (default); without nuts the JSON holds the MAP and "
                             "SVI figures only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    stages = tuple(s.strip() for s in args.stages.split(","))
    if stages not in (("map",), ("map", "svi"), ("map", "svi", "nuts")):
        parser.error(f"--stages must be map, map,svi or map,svi,nuts, got {args.stages!r}")
    cache_warm = False
    if args.cache is not None:
        cache_warm = args.cache.is_dir() and any(args.cache.iterdir())
        jax.config.update("jax_compilation_cache_dir", str(args.cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quick = args.quick
    key = jax.random.PRNGKey(args.seed)
    k_map, k_svi, k_nuts = jax.random.split(key, 3)

    decoder, decoder_kind = get_decoder()
    data, spec, truth = make_problem(quick, decoder)
    cost = gradient_cost(data, spec, decoder)
    log.info("decoder: %s; image %s; %d parameters; potential %.2f ms, gradient %.2f ms",
             decoder_kind, data.shape, cost["dim"], cost["potential_ms"], cost["gradient_ms"])

    num_starts = args.num_starts or (4 if quick else 8)
    t = time.perf_counter()
    res = staged_map_fit(lens_model, data, spec, decoder, key=k_map, num_starts=num_starts,
                         fixed={"z": np.zeros(spec.source.latent_dim, np.float32)},
                         num_refine=4, max_iter=1500)
    t_map = time.perf_counter() - t
    log.info("MAP: %.1f s (%s), chi2/N = %.3f", t_map, res.timings,
             res.chi2 / res.num_pixels)

    partial = {
        "benchmark": "bench_inference",
        "stages": list(stages),
        "quick": quick,
        "decoder": decoder_kind,
        "image_shape": list(data.shape),
        "num_parameters": cost["dim"],
        "gradient_ms": cost["gradient_ms"],
        "map": {"wall_s": t_map, "num_starts": num_starts, **res.timings,
                "chi2_per_pixel": res.chi2 / res.num_pixels, "loss": res.loss},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": os.getloadavg()[0], "backend": jax.default_backend()},
        "versions": package_versions(),
    }
    if stages == ("map",):
        return _write_partial(partial, args.out)

    t = time.perf_counter()
    post_svi = svi(lens_model, data, spec, decoder, key=k_svi, init=res, guide="mvn",
                   num_steps=300 if quick else 1500, num_samples=1000, log_likelihood=False)
    t_svi = time.perf_counter() - t
    log.info("SVI: %.1f s (%s)", t_svi,
             {k: v for k, v in post_svi.attrs.items() if k.startswith("timing")})
    if stages == ("map", "svi"):
        partial["svi"] = {"wall_s": t_svi, "guide": "mvn",
                          "final_loss": float(post_svi.attrs["final_loss"]),
                          **{k: v for k, v in post_svi.attrs.items() if k.startswith("timing")}}
        return _write_partial(partial, args.out)

    # full run: 4 x (150 + 300) reached R-hat <= 1.01 and bulk ESS >= 400 in both runs tried;
    # 4 x (100 + 300) gave R-hat 1.004 in one run and 1.015 in another, 4 x (150 + 150) 1.013
    warmup = args.num_warmup or (100 if quick else 150)
    samples = args.num_samples or (100 if quick else 300)
    runs = []
    while True:
        t = time.perf_counter()
        post = nuts(lens_model, data, spec, decoder, key=k_nuts, init=res, num_chains=4,
                    init_mass=post_svi if args.init_mass == "svi" else args.init_mass,
                    num_warmup=warmup, num_samples=samples, chain_method=args.chain_method,
                    max_tree_depth=args.max_tree_depth, progress_bar=args.progress,
                    jitter=args.jitter, adapt_mass_matrix=not args.no_adapt_mass,
                    log_likelihood=False)
        t_nuts = time.perf_counter() - t
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            diag = diagnostics(post, var_names=list(LENS), warn=False)
        s = diag.summary
        run = {
            "num_warmup": warmup,
            "num_samples": samples,
            "wall_s": t_nuts,
            "max_rhat": float(s["r_hat"].max()),
            "min_ess_bulk": float(s["ess_bulk"].min()),
            "min_ess_tail": float(s["ess_tail"].min()),
            "divergences": diag.num_divergent,
            "mean_tree_depth": float(post.sample_stats["tree_depth"].mean()),
            "mean_leapfrog_steps": float(post.sample_stats["n_steps"].mean()),
            "gradients_per_s": float(post.sample_stats["n_steps"].sum()) * (
                1.0 + warmup / samples) / t_nuts,
        }
        runs.append(run)
        log.info("NUTS %d+%d: %.1f s, max R-hat %.3f, min bulk ESS %.0f, %d divergences",
                 warmup, samples, t_nuts, run["max_rhat"], run["min_ess_bulk"],
                 run["divergences"])
        if (run["max_rhat"] <= 1.01 and run["min_ess_bulk"] >= 400) or quick:
            break
        if samples * 2 > args.max_samples:
            break
        samples *= 2

    cmp = compare_fits(res, post, truth, var_names=list(LENS))
    svi_vs_nuts = {
        n: float(
            (post_svi.posterior[n].mean() - post.posterior[n].mean()) / post.posterior[n].std()
        )
        for n in LENS
    }
    hits = interval_hits(post, truth)
    ess_per_s = {n: float(s.loc[n, "ess_bulk"]) / runs[-1]["wall_s"] for n in LENS}
    result = {
        "benchmark": "bench_inference",
        "quick": quick,
        "decoder": decoder_kind,
        "image_shape": list(data.shape),
        "supersampling": spec.supersampling,
        "dtype": str(jnp.asarray(1.0).dtype),
        "num_parameters": cost["dim"],
        "potential_ms": cost["potential_ms"],
        "gradient_ms": cost["gradient_ms"],
        "map": {"wall_s": t_map, "num_starts": num_starts, **res.timings,
                "chi2_per_pixel": res.chi2 / res.num_pixels,
                "losses": res.losses.tolist(),
                "iterations": np.asarray(res.num_iterations).tolist()},
        "svi": {"wall_s": t_svi, "guide": "mvn", **{k: v for k, v in post_svi.attrs.items()
                                                        if k.startswith("timing")},
                "mean_minus_nuts_mean_sigma": svi_vs_nuts},
        "nuts": {"chain_method": args.chain_method, "num_chains": 4, "jitter": args.jitter,
                 "adapt_mass_matrix": not args.no_adapt_mass, "runs": runs,
                 "ess_bulk_per_s": ess_per_s,
                 "converged": runs[-1]["max_rhat"] <= 1.01 and runs[-1]["min_ess_bulk"] >= 400},
        "truth_in_intervals": hits,
        "comparison": cmp.to_dataframe().replace({np.nan: None}).to_dict(orient="index"),
        "targets_s": {"map": 20, "svi": 60, "nuts": 300},
        "compilation_cache": {"dir": None if args.cache is None else str(args.cache),
                              "warm_at_start": cache_warm},
        "init_mass": args.init_mass,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": os.getloadavg()[0], "backend": jax.default_backend(),
                    "device": jax.devices()[0].device_kind},
        "versions": package_versions(),
    }
    print_table(result, cmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    log.info("wrote %s", args.out)
    return result


def _write_partial(result: dict, out: Path) -> dict:
    """Print and write the result of a run without the NUTS stage."""
    print(json.dumps(result, indent=2, default=float))  # noqa: T201  (the benchmark's report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    log.info("wrote %s", out)
    return result


def print_table(result: dict, cmp) -> None:
    """Print the summary table (the benchmark's report)."""
    n = result["nuts"]["runs"][-1]
    lines = [
        f"vaelens inference benchmark ({'quick' if result['quick'] else 'full'}): "
        f"{result['image_shape'][0]}x{result['image_shape'][1]} px, supersampling "
        f"{result['supersampling']}, {result['decoder']} VAE decoder, {result['dtype']}, "
        f"{result['num_parameters']} parameters",
        f"gradient of the log density: {result['gradient_ms']:.2f} ms "
        f"(potential {result['potential_ms']:.2f} ms)",
        f"{'stage':<10}{'wall [s]':>10}{'target [s]':>12}  notes",
        f"{'MAP':<10}{result['map']['wall_s']:>10.1f}{20:>12}  "
        f"{result['map']['num_starts']} starts, compile {result['map']['compile']:.1f} s, "
        f"chi2/N {result['map']['chi2_per_pixel']:.3f}",
        f"{'SVI':<10}{result['svi']['wall_s']:>10.1f}{60:>12}  mvn guide",
        f"{'NUTS':<10}{n['wall_s']:>10.1f}{300:>12}  4 chains x {n['num_samples']} "
        f"(+{n['num_warmup']} warm-up), max R-hat {n['max_rhat']:.3f}, min bulk ESS "
        f"{n['min_ess_bulk']:.0f}, {n['divergences']} divergences",
        "",
        f"{'param':<10}{'ESS/s':>8}{'in 68%':>8}{'in 95%':>8}",
    ]
    for name in LENS:
        h = result["truth_in_intervals"][name]
        lines.append(f"{name:<10}{result['nuts']['ess_bulk_per_s'][name]:>8.2f}"
                     f"{str(h['in68']):>8}{str(h['in95']):>8}")
    lines += ["", cmp.to_string()]
    print("\n".join(lines))  # noqa: T201  (the benchmark's table)


if __name__ == "__main__":
    main()
