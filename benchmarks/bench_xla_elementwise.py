"""Cost of single elementwise functions in XLA:CPU on the forward model's sub-pixel count.

Times one jitted call of ``f(x)`` on 200 x 200 float32 values (the 40 000 sub-pixels of the
100x100, supersampling-2 forward model) for a few functions. It shows which ones XLA:CPU
vectorises (``exp``, ``log``, ``sqrt``, ``tanh``) and which it evaluates value by value
(``pow`` with a non-integer exponent, ``sin``), so the per-pixel code of
:mod:`vaelens.lensing` avoids the latter. Prints a table and writes
``benchmarks/results/bench_xla_elementwise.json``.

Usage::

    python benchmarks/bench_xla_elementwise.py [--repeats 300]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "bench_xla_elementwise.json"

FUNCTIONS = {
    "x + 1 (dispatch floor)": lambda x: x + 1.0,
    "1 / x": lambda x: 1.0 / x,
    "sqrt": jnp.sqrt,
    "exp": jnp.exp,
    "log": jnp.log,
    "tanh": jnp.tanh,
    "floor": jnp.floor,
    "x ** 0.37 (pow)": lambda x: x**0.37,
    "exp(0.37 log x)": lambda x: jnp.exp(0.37 * jnp.log(x)),
    "sin": jnp.sin,
}


def median_us(fn, x, repeats: int) -> float:
    for _ in range(20):
        jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    x = jax.random.uniform(jax.random.key(0), (200, 200), jnp.float32, 0.1, 2.0)
    rows = {name: median_us(jax.jit(f), x, args.repeats) for name, f in FUNCTIONS.items()}
    print(f"{'function (40 000 float32 values)':36s} median [us]")
    for name, us in rows.items():
        print(f"{name:36s} {us:10.1f}")
    out = {
        "shape": [200, 200],
        "dtype": "float32",
        "repeats": args.repeats,
        "median_us": rows,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
