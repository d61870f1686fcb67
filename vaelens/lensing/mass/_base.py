"""Shared pieces of the mass profiles: the profile interface and safe elementary functions."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["MassProfile", "safe_norm2", "hessian_to_convergence"]

# lenstronomy floors the elliptical radius at 1e-8 arcsec when it evaluates the convergence of
# power-law profiles (``EPLMajorAxis.hessian``); we use the same floor so that the (formally
# infinite) central convergence is finite and identical to lenstronomy's.
R_FLOOR = 1e-8


class MassProfile:
    """Interface of all lens mass profiles (mixin for the pytree dataclasses).

    Subclasses implement :meth:`deflection`, :meth:`potential` and :meth:`hessian`; the
    convergence defaults to half the trace of the hessian.
    """

    def deflection(self, x, y):  # pragma: no cover - interface
        """Deflection angle ``(alpha_x, alpha_y)`` in arcsec at image-plane ``(x, y)``."""
        raise NotImplementedError

    def potential(self, x, y):  # pragma: no cover - interface
        """Lensing potential in arcsec^2 at ``(x, y)``."""
        raise NotImplementedError

    def hessian(self, x, y):  # pragma: no cover - interface
        """Second derivatives ``(f_xx, f_xy, f_yx, f_yy)`` of the potential (dimensionless)."""
        raise NotImplementedError

    def convergence(self, x, y):
        """Convergence ``kappa = (f_xx + f_yy) / 2`` (dimensionless)."""
        f_xx, _, _, f_yy = self.hessian(x, y)
        return 0.5 * (f_xx + f_yy)

    def ray_shoot(self, x, y):
        """Source-plane position ``(x - alpha_x, y - alpha_y)`` for this profile alone."""
        ax, ay = self.deflection(x, y)
        return x - ax, y - ay


def safe_norm2(dx, dy):
    """Return ``(r2, nonzero, r2_safe)`` with ``r2_safe = 1`` where ``r2 == 0`` (double where)."""
    r2 = dx * dx + dy * dy
    nonzero = r2 > 0
    return r2, nonzero, jnp.where(nonzero, r2, 1.0)


def hessian_to_convergence(h):
    """Convergence from a hessian tuple ``(f_xx, f_xy, f_yx, f_yy)``."""
    return 0.5 * (h[0] + h[3])
