"""The memory-traffic estimate of ``benchmarks/profile_forward.py`` on programs of known size."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "profile_forward.py"


@pytest.fixture(scope="module")
def profile_forward():
    spec = importlib.util.spec_from_file_location("profile_forward", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hlo(fn, *args):
    return jax.jit(fn).lower(*args).compile().as_text()


def test_shape_bytes(profile_forward):
    assert profile_forward.shape_bytes("f32[4,3]{1,0}") == 48
    assert profile_forward.shape_bytes("(f32[4,3]{1,0}, s32[])") == 52
    assert profile_forward.shape_bytes("c64[2]") == 16
    assert profile_forward.shape_bytes("pred[]") == 1


def test_one_elementwise_kernel_reads_and_writes_its_arrays(profile_forward):
    x = jnp.ones(1000, jnp.float32)
    y = jnp.ones(1000, jnp.float32)
    traffic = profile_forward.hlo_traffic(_hlo(lambda a, b: a * 2.0 + b, x, y))
    assert len(traffic) == 1
    (kernel,) = traffic.values()
    assert kernel["read"] == 8000
    assert kernel["write"] == 4000


def test_kernels_inside_a_conditional_are_counted(profile_forward):
    x = jnp.ones((50, 40), jnp.float32)

    def fn(a):
        return jax.lax.cond(a[0, 0] > 0, lambda v: jnp.exp(v) * 3.0, lambda v: v - 1.0, a)

    traffic = profile_forward.hlo_traffic(_hlo(fn, x))
    # both branches hold a kernel that reads and writes the 8000-byte array
    rw = sorted((v["read"], v["write"]) for v in traffic.values() if v["write"] == 8000)
    assert len(rw) >= 2
    assert all(read >= 8000 for read, _ in rw)


def test_an_hlo_text_without_entry_is_rejected(profile_forward):
    with pytest.raises(ValueError, match="ENTRY"):
        profile_forward.hlo_traffic("HloModule m\n")
