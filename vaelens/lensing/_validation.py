"""Input validation that is active for concrete values and silent under JAX tracing.

Constructors and public entry points call these helpers. A value that is a
:class:`jax.core.Tracer` (inside ``jit``, ``grad``, ``vmap``, ...) cannot be inspected, so it
passes unchecked; everything else is converted to a NumPy array and checked, raising a
:class:`ValueError` that names the offending argument.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = [
    "concrete",
    "check_finite",
    "check_positive",
    "check_range",
    "check_ellipticity",
]


def concrete(value: Any) -> np.ndarray | None:
    """Return ``value`` as a NumPy array, or ``None`` when it is traced or not numeric."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` if a concrete ``value`` contains NaN or infinity."""
    arr = concrete(value)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is not finite and strictly positive."""
    check_finite(name, value)
    arr = concrete(value)
    if arr is not None and not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def check_range(name: str, value: Any, low: float, high: float) -> None:
    """Raise ``ValueError`` if a concrete ``value`` lies outside the closed range [low, high]."""
    check_finite(name, value)
    arr = concrete(value)
    if arr is not None and not np.all((arr >= low) & (arr <= high)):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")


def check_ellipticity(e1: Any, e2: Any) -> None:
    """Raise ``ValueError`` unless concrete ellipticity components satisfy ``|e| < 1``."""
    check_finite("e1", e1)
    check_finite("e2", e2)
    a1, a2 = concrete(e1), concrete(e2)
    if a1 is not None and a2 is not None and not np.all(np.hypot(a1, a2) < 1.0):
        raise ValueError(
            f"ellipticity |e| = sqrt(e1**2 + e2**2) must be < 1, got e1={e1!r}, e2={e2!r}"
        )
