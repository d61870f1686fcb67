"""XLA compiler options and fusion control for the lensing kernels on CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["XLA_CPU_OPTIONS", "materialize", "broadcast_scalars"]

#: Options for ``jax.jit(..., compiler_options=XLA_CPU_OPTIONS)`` on the CPU backend: disable
#: the experimental YNNPACK fusions of jax 0.10's XLA:CPU. An early version of the lensing
#: kernels needed this (a YNNPACK reduction fed by ray tracing and interpolation ran 10-20x
#: slower than unfused). With the current kernels the default is faster: value-and-grad
#: is 20-30% slower with these options, and the forward model is the same within the noise.
#: ``benchmarks/bench_forward.py`` times both, so the comparison stays visible on new jax
#: versions. Results are the same to rounding.
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
    return jax.lax.cond(first == first, lambda a: a, lambda a: jnp.full_like(a, jnp.nan), array)


def broadcast_scalars(shape, *scalars):
    """Each of ``scalars`` broadcast to ``shape``, for use in per-pixel expressions.

    Reverse mode turns every use of a scalar in a per-pixel expression into its own reduction
    over the pixels (a separate kernel of 20-60 us for 40 000 float32 values on XLA:CPU). A
    scalar broadcast once and then used several times collects its cotangent elementwise and is
    reduced once. For a profile whose parameters enter in several places this removes half of
    its reductions (Sersic value-and-grad inside the benchmark model: -0.2 ms of 2.7 ms).
    """
    return tuple(jnp.broadcast_to(s, shape) for s in scalars)
