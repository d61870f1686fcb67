"""Interleaved A/B timing of the forward model against an earlier git revision.

A shared 2-core virtual machine (the one of ``benchmarks/README.md``) changes speed by
30-60% from one hour (sometimes one minute) to the next, so two benchmark runs made at
different times cannot be compared. This script times the ``bench_forward.py`` configuration
(float32 forward model and value-and-grad of chi^2) for the ``vaelens`` package of an old
revision and of the working tree, in alternating fresh processes, so that a slow spell falls on
both. The old package is exported with ``git archive`` into a
temporary directory and put first on ``PYTHONPATH``.

Usage::

    python benchmarks/ab_forward.py --old HEAD~1 [--pairs 4] [--calls 300]

Prints one line per process (median, 10th percentile and CPU time per call) and writes
``benchmarks/results/ab_forward.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "ab_forward.json"

# Runs in the child process: time one package (whichever ``vaelens`` is first on the path).
CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import bench_forward as B
import jax.numpy as jnp
import numpy as np
import vaelens

calls = int(sys.argv[2])
fns = B.compile_jax(jnp.float32)
out = {"vaelens": vaelens.__file__}
for name, fn in fns.items():
    B._times_ms(fn, 10)  # warm-up
    c0 = time.process_time()
    ts = B._times_ms(fn, calls)
    cpu = (time.process_time() - c0) / calls * 1e3
    out[name] = {
        "median_ms": float(np.median(ts)),
        "p10_ms": float(np.percentile(ts, 10)),
        "cpu_ms_per_call": cpu,
    }
print(json.dumps(out))
"""


def _run(pythonpath: str, calls: int, cwd: str) -> dict:
    # ``python -c`` puts the working directory first on sys.path: run in an empty directory so
    # that a ``vaelens/`` folder there cannot shadow the package under test
    env = dict(os.environ, PYTHONPATH=pythonpath)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "benchmarks"), str(calls)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out["vaelens"].startswith(pythonpath):
        raise RuntimeError(f"timed {out['vaelens']} instead of the package in {pythonpath}")
    return out


def _line(which: str, r: dict) -> str:
    cells = [
        f"{k}: med {v['median_ms']:.3f} p10 {v['p10_ms']:.3f} cpu {v['cpu_ms_per_call']:.3f}"
        for k, v in r.items()
        if isinstance(v, dict)
    ]
    return f"{which.upper():3s} " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="git revision to compare against")
    parser.add_argument("--pairs", type=int, default=4, help="old/new process pairs")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per process")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", args.old], capture_output=True, text=True, check=True
    ).stdout.strip()
    runs = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as empty:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "vaelens"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        paths = {"old": tmp, "new": str(ROOT)}
        for _ in range(args.pairs):
            for which in ("old", "new"):
                r = _run(paths[which], args.calls, empty)
                runs[which].append(r)
                print(_line(which, r), flush=True)
    for which in ("old", "new"):
        for r in runs[which]:
            r.pop("vaelens", None)
    result = {"old_revision": rev, "new": "working tree", "calls": args.calls, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
