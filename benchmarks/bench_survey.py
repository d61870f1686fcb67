"""Benchmark of ``vaelens batch`` (:func:`vaelens.survey.fit_catalog`): lenses per hour against
Dask workers, and the memory of a worker.

``--num`` mock lenses with varied parameters (``vaelens simulate`` with seeds 0, 1, ...; its
random EPL + shear lens and source, no lens light by default) are written once with a catalogue;
then each worker count of ``--workers`` fits the whole catalogue by MAP + Laplace into a fresh
output folder and compilation cache, on its own ``LocalCluster``. The worker counts are
interleaved over ``--rounds`` rounds so that a change of the machine's load hits every count
alike; the table gives the median over rounds of the throughput (lenses per hour, wall time of
the whole batch including the workers' start and compilation), the median time per lens on
its worker, and the peak resident memory of a worker process (``ru_maxrss``). It writes
``benchmarks/results/bench_survey.json``.

A throughput ratio means something only on a machine with the cores to itself.

Usage::

    python benchmarks/bench_survey.py                      # 50 lenses, 1 and 2 workers
    python benchmarks/bench_survey.py --num 4 --size 32    # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_survey.json"


def make_mocks(root: Path, num: int, *, size: int, source: str, lens_light: bool) -> Path:
    """``num`` mocks under ``root`` (kept between runs) and their catalogue ``cat.csv``."""
    from vaelens.commands.simulate import simulate_mock, write_mock

    lines = ["id,image,psf,truth"]
    for seed in range(num):
        folder = root / f"mock{seed:04d}"
        if not (folder / "truth.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            mock = simulate_mock(seed=seed, source=source, size=size, lens_light=lens_light)
            write_mock(folder, mock)
        lines.append(f"lens{seed:04d},{folder.name}/image.fits,{folder.name}/psf.fits,"
                     f"{folder.name}/truth.json")
    cat = root / "cat.csv"
    cat.write_text("\n".join(lines) + "\n")
    return cat


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_batch(cat: Path, out: Path, workers: int, options: dict) -> dict:
    """Fit the catalogue on a new ``workers``-process LocalCluster; wall time and memory."""
    from vaelens.survey import fit_catalog
    from vaelens.survey.engine import dask_client

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with dask_client(workers) as client:
        res = fit_catalog(cat, out, options=options, client=client, progress=False)
        rss = client.run(_peak_rss_mib)
    wall = time.perf_counter() - t0
    table = res.results
    ok = table[table["status"] == "ok"]
    return {
        "workers": workers,
        "wall_s": wall,
        "lenses": len(table),
        "ok": len(ok),
        "failed": len(table) - len(ok),
        "lenses_per_hour": 3600.0 * len(table) / wall,
        "median_lens_s": float(ok["wall_s"].median()) if len(ok) else float("nan"),
        "worker_peak_rss_mib": sorted(float(v) for v in rss.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=50, help="mock lenses (50)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    p.add_argument("--source", choices=["vae", "sersic"], default="vae", help="source (vae)")
    p.add_argument("--lens-light", action="store_true", help="mocks and model with lens light")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (1 2)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (1)")
    p.add_argument("--starts", type=int, default=8, help="MAP starts (8)")
    p.add_argument("--samples", type=int, default=300, help="Laplace draws per chain (300)")
    p.add_argument("--work", type=Path, default=Path("bench_survey_work"),
                   help="folder of the mocks and fits (bench_survey_work/)")
    p.add_argument("--json", type=Path, default=RESULTS, help="output JSON")
    args = p.parse_args()

    import jax

    from vaelens.infer import package_versions

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cat = make_mocks(args.work / "mocks", args.num, size=args.size, source=args.source,
                     lens_light=args.lens_light)
    print(f"{args.num} mocks of {args.size}x{args.size} px in {time.perf_counter() - t0:.0f} s")
    options = {"source": args.source, "lens_light": args.lens_light, "starts": args.starts,
               "samples": args.samples}
    runs = []
    for r in range(args.rounds):
        for n in args.workers:
            res = run_batch(cat, args.work / f"fits_w{n}", n, options)
            res["round"] = r
            runs.append(res)
            print(f"round {r}, {n} worker(s): {res['wall_s']:.0f} s, "
                  f"{res['lenses_per_hour']:.0f} lenses/h, {res['failed']} failed", flush=True)

    summary = []
    for n in args.workers:
        mine = [x for x in runs if x["workers"] == n]
        summary.append({
            "workers": n,
            "lenses_per_hour": statistics.median(x["lenses_per_hour"] for x in mine),
            "median_lens_s": statistics.median(x["median_lens_s"] for x in mine),
            "worker_peak_rss_mib": max(max(x["worker_peak_rss_mib"]) for x in mine),
            "failed": sum(x["failed"] for x in mine),
        })
    base = summary[0]["lenses_per_hour"]
    print(f"\n{'workers':>7} {'lenses/h':>9} {'speed-up':>8} {'s/lens':>7} {'RSS MiB':>8} "
          f"{'failed':>6}")
    for s in summary:
        s["speedup"] = s["lenses_per_hour"] / base
        print(f"{s['workers']:>7} {s['lenses_per_hour']:>9.0f} {s['speedup']:>8.2f} "
              f"{s['median_lens_s']:>7.1f} {s['worker_peak_rss_mib']:>8.0f} {s['failed']:>6}")
    record = {
        "benchmark": "bench_survey",
        "settings": {**vars(args), "work": str(args.work), "json": str(args.json)},
        "options": options,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "backend": jax.default_backend()},
        "versions": package_versions(),
        "runs": runs,
        "summary": summary,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
