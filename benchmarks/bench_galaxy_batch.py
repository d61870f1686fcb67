"""Batched decoder fits of galaxy stamps: lock-step batched L-BFGS against ``vmap`` of one fit.

Two ways to fit a batch of stamps with the pretrained VAE decoder (same objective: flux profiled,
``N(0, 1)`` prior on ``z``, sub-pixel shift, started from the encoder mean, ``max_iter = 60``):

* ``lockstep``: the hand-written lock-step L-BFGS (every galaxy one objective evaluation per
  step, ``lax.scan`` of exactly ``max_iter`` batched evaluations, Armijo backtracking by
  rejected steps); it lived in ``vaelens/infer/galaxy_fit.py`` and is loaded here from the git
  revision ``--lockstep-rev`` (it is not part of the package any more);
* ``vmap``: :func:`vaelens.galaxy.fit_galaxies`, ``jax.vmap`` of the single-stamp fit
  (:func:`vaelens.optim.lbfgs_minimize`: optax L-BFGS, zoom line search, one
  ``lax.while_loop``), the whole batch as one chunk;
* ``map``: the same function with ``chunk_size=1``, i.e. the single fits one after another in
  one compiled program (``jax.lax.map``), for reference.

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
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.data import make_synthetic_galaxies
from vaelens.galaxy import fit_galaxies
from vaelens.vae import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
LOCKSTEP_PATH = "vaelens/infer/galaxy_fit.py"
LOCKSTEP_REV = "6ba5496"


def load_lockstep(rev: str) -> types.ModuleType:
    """The module holding the lock-step batched fit, read from git revision ``rev``."""
    src = subprocess.run(
        ["git", "show", f"{rev}:{LOCKSTEP_PATH}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("lockstep_galaxy_fit")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(src, f"{rev}:{LOCKSTEP_PATH}", "exec"), module.__dict__)  # noqa: S102
    return module


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
    p.add_argument("--lockstep-rev", default=LOCKSTEP_REV)
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_galaxy_batch.json"
    )
    args = p.parse_args(argv)

    vae = load_pretrained()
    decoder = vae.decoder_function()
    lockstep = load_lockstep(args.lockstep_rev)
    methods = {
        "lockstep": lambda im, v, z0: lockstep.fit_galaxies(
            decoder, im, v, z_init=z0, max_iter=args.max_iter, chunk_size=len(im)
        ),
        "vmap": lambda im, v, z0: fit_galaxies(
            decoder, im, v, z_init=z0, max_iter=args.max_iter, chunk_size=len(im)
        ),
        "map": lambda im, v, z0: fit_galaxies(
            decoder, im, v, z_init=z0, max_iter=args.max_iter, chunk_size=1
        ),
    }
    results = {
        "command": "python benchmarks/bench_galaxy_batch.py " + " ".join(argv or sys.argv[1:]),
        "lockstep_rev": args.lockstep_rev,
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
            rows[f"{name}_over_lockstep_speed"] = (
                rows[name]["galaxies_per_second"] / rows["lockstep"]["galaxies_per_second"]
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
            ratio = rows[f"{name}_over_lockstep_speed"]
            print(f"{b:>5} {'ratio':>9} {ratio:8.2f}  ({name} / lockstep galaxies per second)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
