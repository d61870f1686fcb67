"""XLA compiler options that help the lensing kernels on CPU."""

from __future__ import annotations

__all__ = ["XLA_CPU_OPTIONS"]

#: Options for ``jax.jit(..., compiler_options=XLA_CPU_OPTIONS)`` on the CPU backend.
#: With jax 0.10 / XLA:CPU the experimental YNNPACK fusion turns a reduction fed by the
#: ray-tracing and interpolation kernels (e.g. a chi^2 sum) into a kernel that is 10-20x
#: slower than the unfused computation; disabling it restores the expected speed
#: (see benchmarks/bench_forward.py). Results are unchanged.
XLA_CPU_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}
