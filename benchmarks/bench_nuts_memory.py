"""Memory of chunked NUTS sampling: resident set size after each chunk, per chain method.

A small simulated lens (toy ``blob_decoder`` source by default, ``--vae`` for the pretrained
decoder at 64 x 64) is sampled with :func:`vaelens.infer.nuts` in chunks of ``--chunk-size``
draws per chain; each configuration runs in its own process (``parallel`` needs one host device
per chain, set before JAX starts), and the resident set size (psutil) is recorded after the
warm-up and after every chunk, with the process's peak (``ru_maxrss``). A run whose memory is
bounded shows no growth from chunk 1 to the last chunk beyond the stored draws (a few kB per
chunk here).

Usage::

    python benchmarks/bench_nuts_memory.py                  # chains 1 and 4; all chain methods
    python benchmarks/bench_nuts_memory.py --chunks 3 --chunk-size 20 --configs 4:parallel

It prints a table and writes ``benchmarks/results/bench_nuts_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_nuts_memory.json"


def child(chains: int, method: str, chunks: int, chunk_size: int, warmup: int, vae: bool):
    """One configuration, in this process; prints one JSON line."""
    if method == "parallel":
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={chains}"
    import resource
    import time

    import jax
    import psutil

    from vaelens.infer import map_fit, nuts
    from vaelens.models import (
        LensPriors,
        LensSpec,
        SourcePriors,
        blob_decoder,
        lens_model,
        simulate_lens,
    )

    if vae:
        from vaelens.models.decoder import resolve_decoder

        decoder = resolve_decoder(None)
    else:
        decoder = blob_decoder(num_blobs=4, mobile=False)
    spec = LensSpec(
        lens=LensPriors(theta_E=0.72, theta_E_scale=0.1),
        source=SourcePriors(size=1.0, amp=20.0, center_x=0.08, center_y=-0.05,
                            center_scale=0.05),
        supersampling=1,
    )
    data, _ = simulate_lens(jax.random.PRNGKey(1), spec, decoder=decoder, shape=(40, 40),
                            pixel_scale=0.05)
    res = map_fit(lens_model, data, spec, decoder, key=jax.random.PRNGKey(2), num_starts=2,
                  max_iter=300)
    proc = psutil.Process()
    rss, times = [], []
    t0 = time.perf_counter()

    def on_chunk(done, draws):
        rss.append(proc.memory_info().rss / 2**20)
        times.append(time.perf_counter() - t0)

    nuts(lens_model, data, spec, decoder, key=jax.random.PRNGKey(3), init=res,
         num_warmup=warmup, num_samples=chunks * chunk_size, chunk_size=chunk_size,
         num_chains=chains, chain_method=method, max_tree_depth=6, progress_bar=False,
         log_likelihood=False, on_chunk=on_chunk)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"chains": chains, "chain_method": method, "rss_after_chunk_mib": rss,
                      "seconds_at_chunk": times, "peak_rss_mib": peak,
                      "devices": jax.local_device_count()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--chunk-size", type=int, default=20)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--vae", action="store_true", help="the pretrained decoder")
    p.add_argument("--configs", default="1:sequential,4:parallel,4:vectorized,4:sequential",
                   help="comma-separated CHAINS:METHOD")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(int(a.child[0]), a.child[1], a.chunks, a.chunk_size, a.warmup, a.vae)
        return
    rows = []
    for cfg in a.configs.split(","):
        chains, method = cfg.split(":")
        cmd = [sys.executable, __file__, "--child", chains, method, "--chunks", str(a.chunks),
               "--chunk-size", str(a.chunk_size), "--warmup", str(a.warmup)]
        cmd += ["--vae"] if a.vae else []
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ,
                             "JAX_PLATFORMS": "cpu"})
        line = [x for x in out.stdout.splitlines() if x.startswith("{")]
        if out.returncode or not line:
            print(f"{cfg}: failed\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(line[-1]))
    print(f"{'chains':>6} {'method':>11} {'RSS chunk 1':>12} {'RSS last':>9} {'growth':>7} "
          f"{'peak':>7} {'s/chunk':>8}   (MiB)")
    for r in rows:
        rss, t = r["rss_after_chunk_mib"], r["seconds_at_chunk"]
        per = (t[-1] - t[0]) / max(len(t) - 1, 1)
        print(f"{r['chains']:>6} {r['chain_method']:>11} {rss[0]:>12.0f} {rss[-1]:>9.0f} "
              f"{rss[-1] - rss[0]:>+7.0f} {r['peak_rss_mib']:>7.0f} {per:>8.1f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "settings": {"chunks": a.chunks, "chunk_size": a.chunk_size, "warmup": a.warmup,
                     "decoder": "pretrained VAE" if a.vae else "blob_decoder"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "rows": rows,
    }, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
