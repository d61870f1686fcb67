"""Benchmark of the lensing forward model against lenstronomy's ImageModel.

Configuration: a 100x100 image (0.05"/px), supersampling 2, a 21x21 pixel PSF,
EPL + external shear + Sersic lens light + a 64x64 pixelated source. Times

* one jitted forward model (float32 and float64),
* one jitted ``value_and_grad`` of chi^2 with respect to all lens, light and source parameters
  including the 64x64 source pixels (float32 and float64),
* lenstronomy's ``ImageModel.image`` on the same configuration (source: ``INTERPOL``),

each as the median of many repeats after warm-up, with ``block_until_ready``. The JAX cases are
timed in ``--rounds`` interleaved rounds (every case runs ``repeats / rounds`` calls per round),
so that a slow spell of the shared machine falls on all of them rather than on one; the JSON
keeps the median of every round. Prints a table and writes
``benchmarks/results/bench_forward.json``.

Usage::

    python benchmarks/bench_forward.py [--repeats 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from vaelens.lensing import (  # noqa: E402
    EPL,
    XLA_CPU_OPTIONS,
    ExternalShear,
    PixelatedSource,
    PixelGrid,
    Sersic,
    forward_model,
    gaussian_psf,
)

NPIX, PIXEL_SCALE, SUPERSAMPLING, PSF_SIZE, SRC_N = 100, 0.05, 2, 21, 64
RESULTS = Path(__file__).resolve().parent / "results" / "bench_forward.json"


def make_source_image(n: int = SRC_N) -> np.ndarray:
    """A smooth, clumpy 64x64 test galaxy (numpy, deterministic)."""
    rng = np.random.default_rng(0)
    u = np.arange(n) - (n - 1) / 2
    xx, yy = np.meshgrid(u, u)
    img = np.exp(-0.5 * (xx**2 + (yy / 0.7) ** 2) / 8.0**2)
    for _ in range(5):
        cx, cy = rng.normal(0, 8, 2)
        img += 0.3 * np.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / 2.5**2)
    return img / img.sum()


def make_params(dtype):
    f = lambda v: jnp.asarray(v, dtype=dtype)  # noqa: E731
    mass = (
        EPL(f(1.2), f(2.1), f(0.1), f(-0.05), f(0.02), f(-0.01)),
        ExternalShear(f(0.03), f(-0.02)),
    )
    lens_light = (Sersic(f(5.0), f(0.9), f(3.5), f(0.05), f(-0.1), f(0.02), f(-0.01)),)
    source = (
        PixelatedSource(
            jnp.asarray(make_source_image(), dtype=dtype),
            center_x=f(0.05),
            center_y=f(0.1),
            size=f(1.92),
            angle=f(0.3),
            amp=f(2000.0),
        ),
    )
    return mass, lens_light, source


def _times_ms(fn, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _summary(t: list[float], round_medians: list[float] | None = None) -> dict:
    t = np.asarray(t)
    out = {
        "median_ms": float(np.median(t)),
        "p10_ms": float(np.percentile(t, 10)),
        "p90_ms": float(np.percentile(t, 90)),
        "repeats": int(t.size),
    }
    if round_medians is not None:
        out["round_medians_ms"] = [round(float(m), 4) for m in round_medians]
    return out


def timeit(fn, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    return _summary(_times_ms(fn, repeats))


def timeit_interleaved(fns: dict, repeats: int, rounds: int, warmup: int = 3) -> dict:
    """Time every callable of ``fns`` in ``rounds`` alternating rounds (see the module doc)."""
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    calls = max(repeats // rounds, 1)
    times = {name: [] for name in fns}
    medians = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = _times_ms(fn, calls)
            times[name] += t
            medians[name].append(float(np.median(t)))
    return {name: _summary(times[name], medians[name]) for name in fns}


def build_jax(dtype, compiler_options: dict | None = None) -> dict:
    """The jitted forward model and value-and-grad of chi^2, each with its argument.

    Returns ``{"forward": (jitted, params), "value_and_grad_chi2": (jitted, params)}``.
    """
    grid = PixelGrid((NPIX, NPIX), PIXEL_SCALE)
    psf = gaussian_psf(0.1, PIXEL_SCALE, PSF_SIZE).astype(dtype)
    params = make_params(dtype)

    def model(p):
        mass, light, src = p
        return forward_model(grid, mass, light, src, psf=psf, supersampling=SUPERSAMPLING)

    data = model(params) + 0.05 * jax.random.normal(jax.random.key(0), (NPIX, NPIX), dtype)
    sigma2 = jnp.full_like(data, 0.05**2)

    def chi2(p):
        return jnp.sum((model(p) - data) ** 2 / sigma2)

    fwd = jax.jit(model, compiler_options=compiler_options)
    vag = jax.jit(jax.value_and_grad(chi2), compiler_options=compiler_options)
    return {"forward": (fwd, params), "value_and_grad_chi2": (vag, params)}


def compile_jax(dtype, compiler_options: dict | None = None) -> dict:
    """The jitted forward model and value-and-grad of chi^2, as zero-argument callables."""
    built = build_jax(dtype, compiler_options)
    return {case: (lambda f=f, p=p: f(p)) for case, (f, p) in built.items()}


def bench_lenstronomy(repeats: int) -> dict | None:
    try:
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.ImSim.image_model import ImageModel
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel
    except ImportError:  # pragma: no cover
        return None
    grid = PixelGrid((NPIX, NPIX), PIXEL_SCALE)
    data = ImageData(
        image_data=np.zeros((NPIX, NPIX)),
        ra_at_xy_0=grid.ra_at_xy_0,
        dec_at_xy_0=grid.dec_at_xy_0,
        transform_pix2angle=grid.transform,
    )
    psf = PSF(psf_type="PIXEL", kernel_point_source=np.asarray(gaussian_psf(0.1, PIXEL_SCALE, 21)))
    image_model = ImageModel(
        data,
        psf,
        lens_model_class=LensModel(["EPL", "SHEAR"]),
        source_model_class=LightModel(["INTERPOL"]),
        lens_light_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": SUPERSAMPLING},
    )
    kw_lens = [
        dict(theta_E=1.2, gamma=2.1, e1=0.1, e2=-0.05, center_x=0.02, center_y=-0.01),
        dict(gamma1=0.03, gamma2=-0.02),
    ]
    kw_src = [
        dict(
            image=make_source_image(),
            amp=2000.0,
            center_x=0.05,
            center_y=0.1,
            phi_G=0.3,
            scale=1.92 / SRC_N,
        )
    ]
    kw_ll = [
        dict(amp=5.0, R_sersic=0.9, n_sersic=3.5, e1=0.05, e2=-0.1, center_x=0.02, center_y=-0.01)
    ]
    return {
        "forward": timeit(
            lambda: image_model.image(kw_lens, kw_src, kw_ll), max(repeats // 10, 10), warmup=1
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args()

    results = {
        "config": {
            "npix": NPIX,
            "pixel_scale": PIXEL_SCALE,
            "supersampling": SUPERSAMPLING,
            "psf_size": PSF_SIZE,
            "source_npix": SRC_N,
            "profiles": "EPL + SHEAR + SERSIC_ELLIPSE lens light + 64x64 pixelated",
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind,
        },
        "load_average_1min": os.getloadavg()[0],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    variants = {
        "float32": (jnp.float32, None),
        "float64": (jnp.float64, None),
    }
    if jax.default_backend() == "cpu":  # CPU-only compiler options
        variants["float32+XLA_CPU_OPTIONS"] = (jnp.float32, XLA_CPU_OPTIONS)
        variants["float64+XLA_CPU_OPTIONS"] = (jnp.float64, XLA_CPU_OPTIONS)
    fns = {}
    for name, (dtype, opts) in variants.items():
        for case, fn in compile_jax(dtype, opts).items():
            fns[(name, case)] = fn
    timed = timeit_interleaved(fns, args.repeats, args.rounds)
    calls = max(args.repeats // args.rounds, 1)
    results["timing"] = {"rounds": args.rounds, "calls_per_round": calls}
    results["vaelens"] = {name: {} for name in variants}
    for (name, case), r in timed.items():
        results["vaelens"][name][case] = r
    results["lenstronomy"] = bench_lenstronomy(args.repeats)
    lt = results["lenstronomy"]["forward"]["median_ms"] if results["lenstronomy"] else None
    rows = [("lenstronomy ImageModel.image (float64)", lt)] if lt else []
    for name, r in results["vaelens"].items():
        rows.append((f"vaelens forward [{name}]", r["forward"]["median_ms"]))
        vag_ms = r["value_and_grad_chi2"]["median_ms"]
        rows.append((f"vaelens value_and_grad chi2 [{name}]", vag_ms))
        if lt:
            r["speedup_forward_vs_lenstronomy"] = lt / r["forward"]["median_ms"]
    width = max(len(n) for n, _ in rows) + 2
    lines = [f"{'case':<{width}s} {'median [ms]':>12s} {'lenstronomy / this':>19s}"]
    lines.append("-" * (width + 33))
    for name, ms in rows:
        speed = f"{lt / ms:18.1f}x" if (lt and ms) else ""
        lines.append(f"{name:<{width}s} {ms:12.3f} {speed:>19s}")
    print("\n".join(lines))  # the benchmark's table is its output
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
