"""Test configuration. Global JAX flags live here only."""

from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Implicit broadcasting of arrays of different rank and implicit dtype promotion hide shape and
# precision bugs; the test suite runs with both turned into errors (as diffrax's does).
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "standard")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent (fresh clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA
