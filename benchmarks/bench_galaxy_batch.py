"""Batched decoder fits of galaxy stamps: lock-step batched L-BFGS against ``vmap`` of one fit.

Three ways to fit a batch of stamps with the pretrained VAE decoder (same objective: flux profiled,
``N(0, 1)`` prior on ``z``, sub-pixel shift, started from the encoder mean, ``max_iter = 60``):

* ``lockstep``: :func:`vaelens.galaxy.fit_galaxies`, lock-step batched L-BFGS
  (:func:`vaelens.optim.lockstep_lbfgs_minimize`: every galaxy one objective evaluation per
  step, ``lax.scan`` of exactly ``max_iter`` batched evaluations, Armijo backtracking by
  rejected steps), the whole batch as one chunk;
* ``vmap``: ``jax.vmap`` of the single-stamp fit of :func:`vaelens.galaxy.make_galaxy_fitter`
  (:func:`vaelens.optim.lbfgs_minimize`: optax L-BFGS, zoom line search, one
  ``lax.while_loop``);
* ``map``: the same single-stamp fits one after another in one compiled program
  (``jax.lax.map``), for reference.

Data: synthetic galaxies (:func:`vaelens.data.make_synthetic_galaxies`, seed ``--seed``) with
white noise of a per-galaxy sigma drawn log-uniformly in [2e-4, 2e-3] (unit-flux units, like
COSMOS stamps), same generator seed. For each batch size both methods are compiled first, then
timed in ``--rounds`` interleaved rounds (the order alternates between rounds) in one process;
the table gives the median galaxies/s over rounds, the median reduced chi^2 of the batch and the
median iterations.

Run: ``python benchmarks/bench_galaxy_batch.py`` (float32, CPU); writes
``benchmarks/results/bench_galaxy_batch.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.data import make_synthetic_galaxies
from vaelens.galaxy import fit_galaxies, make_galaxy_fitter
from vaelens.vae import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


def synthetic_batch(seed: int, n: int):
    """``n`` noisy synthetic stamps, their noise variances and the encoder-mean latents."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(2e-4), np.log(2e-3), n))
    truth, _ = make_synthetic_galaxies(seed, n, size=64)
    noisy = (truth + sigma[:, None, None] * rng.standard_normal(truth.shape)).astype(np.float32)
    return noisy, (sigma**2).astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=60)
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_galaxy_batch.json"
    )
    args = p.parse_args(argv)

    vae = load_pretrained()
    decoder = vae.decoder_function()
    fit_one, _ = make_galaxy_fitter(decoder, max_iter=args.max_iter)
    vmapped = jax.jit(jax.vmap(fit_one))
    mapped = jax.jit(lambda *a: jax.lax.map(lambda x: fit_one(*x), a))

    def single_fits(batched_fit_one):
        def fit(im, v, z0):
            return batched_fit_one(im, jnp.broadcast_to(v[:, None, None], im.shape), z0, im * 0 + 1)

        return fit

    methods = {
        "lockstep": lambda im, v, z0: fit_galaxies(
            decoder, im, v, z_init=z0, max_iter=args.max_iter, chunk_size=len(im)
        ),
        "vmap": single_fits(vmapped),
        "map": single_fits(mapped),
    }
    results = {
        "command": "python benchmarks/bench_galaxy_batch.py " + " ".join(argv or sys.argv[1:]),
        "seed": args.seed,
        "max_iter": args.max_iter,
        "rounds": args.rounds,
        "platform": {
            "machine": platform.machine(),
            "cpu_count": __import__("os").cpu_count(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "dtype": "float32",
        },
        "batches": {},
    }
    for b in args.batch_sizes:
        images, var = synthetic_batch(args.seed + b, b)
        images, var = jnp.asarray(images), jnp.asarray(var)
        z0 = vae.encode(images / images.sum(axis=(1, 2), keepdims=True))[0]
        out, times = {}, {name: [] for name in methods}
        for name, fit in methods.items():  # compile (not timed)
            out[name] = jax.block_until_ready(fit(images, var, z0))
        for r in range(args.rounds):
            order = list(methods) if r % 2 == 0 else list(methods)[::-1]  # interleaved
            for name in order:
                t0 = time.perf_counter()
                out[name] = jax.block_until_ready(methods[name](images, var, z0))
                times[name].append(time.perf_counter() - t0)
        rows = {}
        for name in methods:
            res = out[name]
            rows[name] = {
                "galaxies_per_second": float(b / np.median(times[name])),
                "seconds": [float(t) for t in times[name]],
                "median_reduced_chi2": float(np.median(np.asarray(res.reduced_chi2))),
                "median_objective": float(np.median(np.asarray(res.objective))),
                "median_n_iter": float(np.median(np.asarray(res.n_iter))),
                "fraction_converged": float(np.mean(np.asarray(res.converged))),
            }
        for name in ("vmap", "map"):
            rows[f"lockstep_over_{name}_speed"] = (
                rows["lockstep"]["galaxies_per_second"] / rows[name]["galaxies_per_second"]
            )
        results["batches"][str(b)] = rows

    header = (
        f"{'batch':>5} {'method':>9} {'gal/s':>8} {'med chi2_red':>13} {'med iter':>9} {'conv':>5}"
    )
    print(header)
    print("-" * len(header))
    for b, rows in results["batches"].items():
        for name in methods:
            r = rows[name]
            print(
                f"{b:>5} {name:>9} {r['galaxies_per_second']:8.2f} "
                f"{r['median_reduced_chi2']:13.4f} {r['median_n_iter']:9.0f} "
                f"{r['fraction_converged']:5.2f}"
            )
        for name in ("vmap", "map"):
            ratio = rows[f"lockstep_over_{name}_speed"]
            print(f"{b:>5} {'ratio':>9} {ratio:8.2f}  (lockstep / {name} galaxies per second)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
