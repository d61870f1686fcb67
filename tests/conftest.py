"""Test configuration. Global JAX flags live here only."""

import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Implicit broadcasting of arrays of different rank and implicit dtype promotion hide shape and
# precision bugs; the test suite runs with both turned into errors (as diffrax's does).
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")

# One persistent compilation cache per test run, shared by the pytest-xdist workers, the CLI
# commands run in-process (VAELENS_JAX_CACHE) and the notebook kernels (JAX_COMPILATION_CACHE_DIR):
# the same model compiled by several tests is compiled once. It never touches the user's cache.
_RUN = os.getppid() if "PYTEST_XDIST_WORKER" in os.environ else os.getpid()  # the controller
JAX_CACHE = os.environ.setdefault(
    "VAELENS_JAX_CACHE", os.path.join(tempfile.gettempdir(), f"vaelens-test-jax-{_RUN}")
)
if JAX_CACHE not in ("", "0"):
    os.environ["JAX_COMPILATION_CACHE_DIR"] = JAX_CACHE
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.3"
    jax.config.update("jax_compilation_cache_dir", JAX_CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.3)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent (fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


def pytest_sessionfinish(session, exitstatus):
    """The run's compilation cache is removed by the controlling process at the end."""
    if not hasattr(session.config, "workerinput") and "vaelens-test-jax-" in JAX_CACHE:
        shutil.rmtree(JAX_CACHE, ignore_errors=True)
