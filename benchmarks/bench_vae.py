"""Benchmark of the galaxy VAE: decoder latency, reconstruction quality and fit speed.

On held-out REAL COSMOS stamps (the test split of ``load_training_stamps``, never used in
training or model selection) and on unseen synthetic galaxies with HST-like noise:

* encoder reconstruction (``z = encoder mean``, flux profiled) and decoder MAP fit (L-BFGS over
  ``z``, flux and sub-pixel centre, initialised from the encoder, N(0, 1) prior on ``z``), with
  the stamp's noise variance: reduced chi^2 and residual flux fraction;
* the same galaxies fitted by a PSF-convolved elliptical Sersic and by PSF-convolved shapelets
  with ``n_max = 20`` (231 coefficients, scale optimised): reduced chi^2, number of parameters,
  wall time per galaxy;
* decoder latency for one 64x64 image (decode; value-and-grad of a chi^2 through the decoder);
* decoder-fit time per galaxy after compilation, and galaxies/s for a vmapped batch.

Residual flux fraction (Hoyos et al. 2011, MNRAS 411, 2439):
``RFF = (sum |d - m| - 0.8 sum sigma) / sum d`` over the stamp, where ``0.8 sigma`` ~ the mean
absolute value of pure noise, so a perfect model has RFF ~ 0. For synthetic galaxies the
noiseless truth ``t`` also gives ``sum |m - t| / sum t``.

Run: ``python benchmarks/bench_vae.py`` (float32, CPU); writes
``benchmarks/results/bench_vae.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.galaxy import fit_galaxies, fit_galaxy, fit_sersic, fit_shapelets
from vaelens.vae import load_pretrained, load_weights
from vaelens.vae.weights import PRETRAINED_DIR, PRETRAINED_NAME, file_sha256

logger = logging.getLogger("bench_vae")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CATALOG = (
    ROOT.parent / "shared" / "data" / "cosmos_btk" / "real_galaxy_catalog_26_extension_example.fits"
)
N_LATENT = 64


def _timeit(fn, *args, n=200, repeat=5):
    out = fn(*args)
    jax.block_until_ready(out)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def _fixed_psf(psf: np.ndarray, size: int = 41) -> np.ndarray:
    """Crop / zero-pad a PSF image around its centre pixel to ``size x size``, unit sum.

    One kernel shape for all galaxies, so the Sersic and shapelet fitters compile once.
    """
    psf = np.asarray(psf, np.float64)
    out = np.zeros((size, size))
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    h = size // 2
    y0, y1 = max(cy - h, 0), min(cy + h + 1, psf.shape[0])
    x0, x1 = max(cx - h, 0), min(cx + h + 1, psf.shape[1])
    out[h - (cy - y0) : h + (y1 - cy), h - (cx - x0) : h + (x1 - cx)] = psf[y0:y1, x0:x1]
    return out / out.sum()


def decoder_latency(decoder) -> dict[str, float]:
    """Best-of-5 latencies (us) of decode and of value-and-grad of a chi^2 for one image."""
    z = jnp.zeros(N_LATENT, jnp.float32)
    target = decoder(jax.random.normal(jax.random.key(0), (N_LATENT,), jnp.float32))
    dec = jax.jit(decoder)

    def chi2(zz):
        return jnp.sum((decoder(zz) - target) ** 2) * 1e6

    vg = jax.jit(jax.value_and_grad(chi2))
    zb = jnp.zeros((64, N_LATENT), jnp.float32)
    dec_b = jax.jit(jax.vmap(decoder))
    vg_b = jax.jit(jax.vmap(jax.value_and_grad(chi2)))
    return {
        "decode_us": 1e6 * _timeit(dec, z),
        "value_and_grad_us": 1e6 * _timeit(vg, z),
        "decode_batch64_us_per_image": 1e6 * _timeit(dec_b, zb, n=20) / 64,
        "value_and_grad_batch64_us_per_image": 1e6 * _timeit(vg_b, zb, n=20) / 64,
    }


def _stats(image, model, var, n_par, truth=None):
    image, model = np.asarray(image, np.float64), np.asarray(model, np.float64)
    var = np.broadcast_to(np.asarray(var, np.float64), image.shape)
    chi2 = float(np.sum((image - model) ** 2 / var))
    out = {
        "chi2": chi2,
        "reduced_chi2": chi2 / (image.size - n_par),
        "rff": float(
            (np.abs(image - model).sum() - 0.8 * np.sqrt(var).sum()) / max(image.sum(), 1e-30)
        ),
    }
    if truth is not None:
        out["rff_truth"] = float(np.abs(model - truth).sum() / truth.sum())
    return out


def evaluate_set(name, vae, decoder, images, variances, psf_of, truths=None, max_iter=60):
    """Per-galaxy metrics of the four methods on one data set."""
    images = np.asarray(images, np.float32)
    z_enc = np.asarray(vae.encode(images / images.sum(axis=(1, 2), keepdims=True))[0])
    recon = np.asarray(vae.decode(z_enc))
    # warm-up compilations (not timed)
    fit_galaxy(decoder, images[0], float(variances[0]), z_init=z_enc[0], max_iter=max_iter)
    rows = []
    for i in range(len(images)):
        d, v = images[i], float(variances[i])
        t = None if truths is None else truths[i]
        row = {"set": name, "index": i}
        flux = float(np.sum(d * recon[i]) / np.sum(recon[i] ** 2))
        row["encoder"] = _stats(d, flux * recon[i], v, N_LATENT + 1, t)
        t0 = time.perf_counter()
        res = fit_galaxy(decoder, d, v, z_init=z_enc[i], max_iter=max_iter)
        jax.block_until_ready(res.model)
        row["decoder_fit"] = {
            **_stats(d, res.model, v, N_LATENT + 3, t),
            "seconds": time.perf_counter() - t0,
            "n_iter": int(res.n_iter),
            "converged": bool(res.converged),
        }
        psf = psf_of(i)
        t0 = time.perf_counter()
        ser = fit_sersic(d, v, pixel_scale=vae.pixel_scale, psf=psf)
        row["sersic"] = {**_stats(d, ser.model, v, ser.n_params, t), "seconds": 0.0}
        row["sersic"]["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sh = fit_shapelets(d, v, pixel_scale=vae.pixel_scale, n_max=20, psf=psf)
        row["shapelets"] = {**_stats(d, sh.model, v, sh.n_params, t), "seconds": 0.0}
        row["shapelets"]["seconds"] = time.perf_counter() - t0
        rows.append(row)
        logger.info(
            "%s %d: chi2_red enc %.3f fit %.3f sersic %.3f shapelets %.3f",
            name,
            i,
            row["encoder"]["reduced_chi2"],
            row["decoder_fit"]["reduced_chi2"],
            row["sersic"]["reduced_chi2"],
            row["shapelets"]["reduced_chi2"],
        )
    # the first Sersic / shapelet call of a set includes compilation: drop it from the timings
    extra_decoder_fits(vae, decoder, images, variances, rows, truths, max_iter)
    return rows


def extra_decoder_fits(vae, decoder, images, variances, rows, truths, max_iter):
    """Variants of the decoder fit, batched (``fit_galaxies``), added to ``rows``.

    ``decoder_fit_dihedral8``: the stamp's 8 flips / 90-degree rotations are fitted (each from
    its own encoder mean) and the best chi^2 kept, i.e. the model ``flux * D_k[shift(decoder(z))]``
    with a discrete orientation ``k``. ``decoder_fit_ml``: prior weight 0 (maximum likelihood in
    ``z``) instead of the N(0, 1) prior.
    """
    from vaelens.data.augment import dihedral

    n = len(images)
    var = np.asarray(variances, np.float32)
    ims = np.concatenate(
        [
            np.asarray(jax.vmap(lambda im, k=k: dihedral(im, k))(jnp.asarray(images)))
            for k in range(8)
        ]
    )
    z0 = vae.encode(ims / ims.sum(axis=(1, 2), keepdims=True))[0]
    res = fit_galaxies(
        decoder, ims, np.tile(var, 8), z_init=z0, max_iter=max_iter, chunk_size=len(ims)
    )
    chi2 = np.asarray(res.chi2).reshape(8, n)
    best = chi2.argmin(axis=0)
    ml = fit_galaxies(
        decoder, images, var, z_init=z0[:n], max_iter=max_iter, chunk_size=n, prior_weight=0.0
    )
    for i, row in enumerate(rows):
        j = best[i] * n + i
        t = None if truths is None else np.asarray(dihedral(jnp.asarray(truths[i]), best[i]))
        row["decoder_fit_dihedral8"] = {
            **_stats(ims[j], res.model[j], var[i], N_LATENT + 3, t),
            "orientation": int(best[i]),
        }
        t = None if truths is None else truths[i]
        row["decoder_fit_ml"] = _stats(images[i], ml.model[i], var[i], N_LATENT + 3, t)


def batched_throughput(decoder, images, variances, z_init, max_iter, chunk_sizes=(16, 64)):
    """Galaxies/s of a batch fit: ``fit_galaxies`` (``vmap`` of the single fit over chunks of
    ``chunk_size`` galaxies, ``max_iter`` and 30 iterations) in one call, and jitted single fits
    in a loop or on two threads (JAX releases the GIL while XLA runs)."""
    images = jnp.asarray(images, jnp.float32)
    var = jnp.asarray(variances, jnp.float32)
    z0 = jnp.asarray(z_init, jnp.float32)
    n = int(images.shape[0])
    out = {"batch_size": n, "max_iter": max_iter}
    for cs, iters in [
        (cs, it) for it in sorted({max_iter, 30}, reverse=True) for cs in chunk_sizes
    ]:
        res = fit_galaxies(decoder, images, var, z_init=z0, max_iter=iters, chunk_size=cs)
        jax.block_until_ready(res.model)
        t0 = time.perf_counter()
        res = fit_galaxies(decoder, images, var, z_init=z0, max_iter=iters, chunk_size=cs)
        jax.block_until_ready(res.model)
        dt = time.perf_counter() - t0
        out[f"batch_iter{iters}_chunk{cs}"] = {
            "galaxies_per_second": n / dt,
            "median_reduced_chi2": float(np.median(np.asarray(res.reduced_chi2))),
            "median_n_iter": float(np.median(np.asarray(res.n_iter))),
        }

    def one(i):
        r = fit_galaxy(decoder, images[i], var[i], z_init=z0[i], max_iter=max_iter)
        return jax.block_until_ready(r.reduced_chi2)

    one(0)
    for workers in (1, 2):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            red = list(pool.map(one, range(n)))
        dt = time.perf_counter() - t0
        out[f"jit_loop_{workers}thread"] = {
            "galaxies_per_second": n / dt,
            "median_reduced_chi2": float(np.median(np.asarray(red))),
        }
    out["galaxies_per_second"] = max(
        v["galaxies_per_second"] for v in out.values() if isinstance(v, dict)
    )
    return out


def summarise(
    rows,
    methods=(
        "encoder",
        "decoder_fit",
        "decoder_fit_dihedral8",
        "decoder_fit_ml",
        "sersic",
        "shapelets",
    ),
):
    n_par = {"encoder": N_LATENT + 1, "sersic": 7, "shapelets": 232}
    out = {}
    for m in methods:
        red = np.array([r[m]["reduced_chi2"] for r in rows])
        rff = np.array([r[m]["rff"] for r in rows])
        secs = [r[m].get("seconds") for r in rows[1:]]  # first call includes compilation
        entry = {
            "median_reduced_chi2": float(np.median(red)),
            "mean_reduced_chi2": float(np.mean(red)),
            "median_rff": float(np.median(rff)),
            "n_params": n_par.get(m, N_LATENT + 3),
            "seconds_per_galaxy": float(np.median(secs)) if secs and secs[0] is not None else None,
        }
        if "rff_truth" in rows[0][m]:
            entry["median_rff_truth"] = float(np.median([r[m]["rff_truth"] for r in rows]))
        out[m] = entry
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: shipped)")
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--n-synthetic", type=int, default=24)
    p.add_argument("--synthetic-seed", type=int, default=20261125)
    p.add_argument("--batch", type=int, default=64, help="batch size of the vmapped fit")
    p.add_argument("--max-iter", type=int, default=60)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_vae.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    vae = load_weights(args.weights) if args.weights else load_pretrained()
    weights_path = args.weights or PRETRAINED_DIR / f"{PRETRAINED_NAME}.safetensors"
    decoder = vae.decoder_function()
    result = {
        "command": "python benchmarks/bench_vae.py " + " ".join(argv or []),
        "weights": str(Path(weights_path).name),
        "weights_sha256": file_sha256(weights_path),
        "platform": {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "dtype": "float32",
        },
    }
    result["latency"] = decoder_latency(decoder)
    logger.info("latency %s", result["latency"])

    from vaelens.data.synthetic import hst_like_psf, make_synthetic_galaxies

    sets = {}
    # synthetic: unseen seed, white noise with COSMOS-like per-pixel sigma (unit-flux units)
    rng = np.random.default_rng(args.synthetic_seed)
    n_syn = max(args.n_synthetic, args.batch)
    sigma = np.exp(rng.uniform(np.log(2e-4), np.log(2e-3), n_syn))
    truth, _ = make_synthetic_galaxies(args.synthetic_seed, n_syn, size=64)
    noisy = truth + sigma[:, None, None] * rng.standard_normal(truth.shape)
    syn_psf = hst_like_psf(0.09, vae.pixel_scale, 41)
    sets["synthetic"] = (noisy, sigma**2, lambda i: syn_psf, truth)

    if args.catalog.is_file():
        from vaelens.data import load_real_galaxy_catalog
        from vaelens.data.training_stamps import load_training_stamps

        images, variances, ids = load_training_stamps(
            args.catalog, split="test", seed=args.split_seed, size=64
        )
        with load_real_galaxy_catalog(args.catalog) as cat:
            psfs = {int(cat[i].ident): _fixed_psf(cat[i].psf) for i in range(len(cat))}
        sets["real_test"] = (images, variances, lambda i, ids=ids: psfs[int(ids[i])], None)
        result["real_test_ids"] = [int(i) for i in ids]
    else:
        logger.warning("catalogue %s not found: real-galaxy part skipped", args.catalog)

    result["sets"] = {}
    for name, (images, variances, psf_of, truths) in sets.items():
        n = len(images) if name != "synthetic" else args.n_synthetic
        rows = evaluate_set(
            name,
            vae,
            decoder,
            images[:n],
            variances[:n],
            psf_of,
            None if truths is None else truths[:n],
            args.max_iter,
        )
        result["sets"][name] = {"n": n, "summary": summarise(rows), "galaxies": rows}

    z_enc = np.asarray(
        vae.encode(noisy[: args.batch] / noisy[: args.batch].sum((1, 2))[:, None, None])[0]
    )
    result["batched_fit"] = batched_throughput(
        decoder, noisy[: args.batch], sigma[: args.batch] ** 2, z_enc, args.max_iter
    )

    lat = result["latency"]
    lines = [
        f"decoder latency (1 image, float32): decode {lat['decode_us']:.0f} us, "
        f"value-and-grad {lat['value_and_grad_us']:.0f} us",
        f"batch of {args.batch} decoder fits (max_iter {args.max_iter}), galaxies/s: "
        + ", ".join(
            f"{k} {v['galaxies_per_second']:.1f}"
            for k, v in result["batched_fit"].items()
            if isinstance(v, dict)
        ),
        "",
        f"{'set':<10} {'method':<22} {'med chi2_red':>12} {'med RFF':>8} {'RFF(truth)':>10} "
        f"{'N_par':>6} {'s/galaxy':>9}",
    ]
    for name, s in result["sets"].items():
        for m, e in s["summary"].items():
            rt = e.get("median_rff_truth")
            sec = e["seconds_per_galaxy"]
            lines.append(
                f"{name:<10} {m:<22} {e['median_reduced_chi2']:>12.3f} {e['median_rff']:>8.3f} "
                f"{'' if rt is None else f'{rt:.3f}':>10} {e['n_params']:>6d} "
                f"{'' if sec is None else f'{sec:.3f}':>9}"
            )
    table = "\n".join(lines)
    print(table)  # noqa: T201 -- benchmark scripts print their table
    result["table"] = table
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
