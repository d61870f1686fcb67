"""XLA compiler options and fusion control for the lensing kernels on CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["XLA_CPU_OPTIONS", "materialize"]

#: Options for ``jax.jit(..., compiler_options=XLA_CPU_OPTIONS)`` on the CPU backend.
#: With jax 0.10 / XLA:CPU the experimental YNNPACK fusion turns a reduction fed by the
#: ray-tracing and interpolation kernels (e.g. a chi^2 sum) into a kernel that is 10-20x
#: slower than the unfused computation; disabling it restores the expected speed
#: (see benchmarks/bench_forward.py). Results are unchanged.
XLA_CPU_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}


def materialize(array):
    """``array`` unchanged, computed into its own buffer before any consumer reads it.

    A fusion barrier that XLA:CPU respects (it drops ``lax.optimization_barrier``): a
    ``lax.cond`` whose operand must exist as a buffer. Without it XLA fuses the surface
    brightness (``exp``, ``log``, ...) into the zero padding in front of the PSF FFT, whose
    per-element bounds test keeps the transcendental functions from vectorising: the forward
    model ran 2.3x slower (``benchmarks/bench_forward.py``). If the first element is NaN the
    result is NaN everywhere (the branch taken then), so no NaN is hidden.
    """
    array = jnp.asarray(array)
    first = array.reshape(-1)[0]
    return jax.lax.cond(
        first == first, lambda a: a, lambda a: jnp.full_like(a, jnp.nan), array
    )
