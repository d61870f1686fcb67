"""Per-kernel profile and memory-traffic estimate of the ``bench_forward.py`` programs.

Compiles the float32 value-and-grad of chi^2 (or the forward model) of the
``bench_forward.py`` configuration, traces ``--calls`` calls with ``jax.profiler`` and prints,
per compiled kernel, its mean time per call, and the bytes that every kernel of the optimised
program reads and writes (operands plus results, summed over the top-level program and the
branches of its conditionals; fused computations are internal to their kernel). Writes
``benchmarks/results/profile_forward.json``.

The traffic estimate is what makes the value-and-grad slow on a 2-core virtual machine: the
program moves ~90 MB per call, and a fused kernel that streams 40 000-value float32 arrays
runs at ~25-30 GB/s. Run it pinned to one core to see which kernels use both cores (their time
halves with two)::

    python benchmarks/profile_forward.py [--case value_and_grad_chi2] [--calls 100]
    taskset -c 0 python benchmarks/profile_forward.py --out profile_1core.json

Kernel names are XLA's (``fusion``, ``fft``, ``scatter`` ...); the HLO text of the program
(``--hlo FILE``) maps them to operations. Loop bodies (``while``) are counted once in the
traffic estimate, not once per iteration.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "profile_forward.json"

_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4}
_BYTES.update({"s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16})
_SHAPE = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
_INSTR = re.compile(r"^\s+(?:ROOT )?%([\w.\-]+) = (.*?) ([a-z][\w\-]*)\((.*)$")
_HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$")
# runtime bookkeeping in the profiler trace, not compiled kernels
_NOT_KERNELS = (
    "end:", "Threadpool", "Wait for", "PythonRef", "ThunkExecutor", "$", "Pjit", "ParseArg",
    "PjRt", "Handle ", "Allocate", "Common", "DevicePut", "Slinky",
)  # fmt: skip


def shape_bytes(text: str) -> int:
    """Bytes of all array shapes in an HLO type string, e.g. ``(f32[4,3], s32[])`` -> 52."""
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        n = 1
        for d in dims.split(","):
            if d:
                n *= int(d)
        total += n * _BYTES[dtype]
    return total


def _computations(hlo: str) -> tuple[dict[str, list[str]], str]:
    comps, entry, name = {}, None, None
    for line in hlo.splitlines():
        head = _HEADER.match(line)
        if head and not line.startswith(" "):
            name = head.group(2)
            comps[name] = []
            if head.group(1):
                entry = name
        elif name is not None and line.startswith("  "):
            comps[name].append(line)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    return comps, entry


def hlo_traffic(hlo: str) -> dict[str, dict]:
    """Bytes read and written by every kernel of an optimised HLO module (``compiled.as_text()``).

    Walks the entry computation and the computations it calls through ``conditional``,
    ``while`` (its body, once) and ``call`` (not the bodies of fusions: a fusion is one
    kernel). Returns ``{name: {"op", "read", "write"}}``; parameters, tuples, bitcasts and
    constants move nothing.
    """
    comps, entry = _computations(hlo)
    out: dict[str, dict] = {}

    def walk(cname: str) -> None:
        shapes = {}
        parsed = []
        for line in comps.get(cname, []):
            m = _INSTR.match(line)
            if m:
                name, shape, op, rest = m.groups()
                shapes[name] = shape
                parsed.append((name, shape, op, rest))
        for name, shape, op, rest in parsed:
            if op in ("parameter", "get-tuple-element", "tuple", "bitcast", "constant"):
                continue
            if op in ("conditional", "while", "call"):
                called = re.findall(
                    r"(?:branch_computations=\{([^}]*)\}|(?:body|to_apply)=%?([\w.\-]+))", rest
                )
                for group, body in called:
                    for c in re.findall(r"%?([\w.\-]+)", group) + ([body] if body else []):
                        if c in comps:
                            walk(c)
                continue
            operands = rest.split("), ")[0] if "), " in rest else rest
            read = sum(shape_bytes(shapes.get(a, "")) for a in re.findall(r"%([\w.\-]+)", operands))
            out[name] = {"op": op, "read": read, "write": shape_bytes(shape)}

    walk(entry)
    return out


def kernel_times(fn, calls: int) -> dict[str, dict]:
    """Mean time per call (us) and count per call of every kernel in a profiler trace."""
    for _ in range(5):
        jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(calls):
                jax.block_until_ready(fn())
        files = glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)
        if not files:
            raise RuntimeError("jax.profiler wrote no trace (is the profiler plugin installed?)")
        with gzip.open(files[0]) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total = collections.defaultdict(float)
    count = collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith(_NOT_KERNELS) or "Execute" in name:
            continue
        if name.startswith(("cond", "while")):  # containers: their kernels are listed
            continue
        total[name] += e["dur"]
        count[name] += 1
    return {
        k: {"us_per_call": total[k] / calls, "per_call": count[k] / calls}
        for k in sorted(total, key=total.get, reverse=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("value_and_grad_chi2", "forward"),
                        default="value_and_grad_chi2")  # fmt: skip
    parser.add_argument("--calls", type=int, default=100, help="profiled calls")
    parser.add_argument("--top", type=int, default=25, help="kernels to print")
    parser.add_argument("--hlo", type=Path, help="also write the optimised HLO text here")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args()

    # imported here: bench_forward enables float64 in JAX when imported
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_forward as B
    import jax.numpy as jnp

    jitted, params = B.build_jax(jnp.float32)[args.case]
    hlo = jitted.lower(params).compile().as_text()
    if args.hlo:
        args.hlo.write_text(hlo)
    traffic = hlo_traffic(hlo)
    fn = lambda: jitted(params)  # noqa: E731
    wall = B.timeit(fn, 200)
    kernels = kernel_times(fn, args.calls)
    moved = sum(v["read"] + v["write"] for v in traffic.values())

    print(f"{args.case}, float32, {os.cpu_count()} CPUs visible to the process "
          f"({len(os.sched_getaffinity(0))} usable)")  # fmt: skip
    print(f"wall time per call (median of 200): {wall['median_ms']:.3f} ms")
    print(f"kernel time per call (sum over threads): "
          f"{sum(k['us_per_call'] for k in kernels.values()) / 1e3:.3f} ms in "
          f"{sum(k['per_call'] for k in kernels.values()):.0f} kernels")  # fmt: skip
    print(f"memory traffic estimate: {moved / 1e6:.1f} MB per call "
          f"(read {sum(v['read'] for v in traffic.values()) / 1e6:.1f}, "
          f"written {sum(v['write'] for v in traffic.values()) / 1e6:.1f})")  # fmt: skip
    print(f"\n{'us/call':>8s} {'n/call':>6s} {'MB':>6s}  kernel")
    for name, k in list(kernels.items())[: args.top]:
        mb = (traffic[name]["read"] + traffic[name]["write"]) / 1e6 if name in traffic else np.nan
        print(f"{k['us_per_call']:8.1f} {k['per_call']:6.1f} {mb:6.2f}  {name}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "case": args.case,
                "dtype": "float32",
                "usable_cpus": len(os.sched_getaffinity(0)),
                "jax": jax.__version__,
                "wall": wall,
                "traffic_mb": moved / 1e6,
                "kernels": kernels,
                "traffic": traffic,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
