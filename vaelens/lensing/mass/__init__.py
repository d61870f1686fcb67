"""Lens mass profiles (pytrees) and ray shooting."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import MassProfile
from .epl import EPL
from .shear import ExternalShear
from .sie import SIE
from .sis import SIS

__all__ = ["EPL", "SIE", "SIS", "ExternalShear", "MassProfile", "ray_shoot", "total_deflection"]


def _as_sequence(mass) -> tuple:
    if mass is None:
        return ()
    if isinstance(mass, MassProfile):
        return (mass,)
    return tuple(mass)


def total_deflection(x, y, mass: Sequence[MassProfile] | MassProfile):
    """Sum of the deflections ``(alpha_x, alpha_y)`` (arcsec) of all profiles (single plane)."""
    ax = ay = 0.0
    for profile in _as_sequence(mass):
        dx, dy = profile.deflection(x, y)
        ax, ay = ax + dx, ay + dy
    return ax, ay


def ray_shoot(x, y, mass: Sequence[MassProfile] | MassProfile):
    """Map image-plane positions to the source plane with the lens equation.

    .. math:: \\beta = \\theta - \\sum_k \\alpha_k(\\theta)

    Parameters
    ----------
    x, y : array_like
        Image-plane coordinates in arcsec.
    mass : sequence of mass profiles (or a single profile)
        All profiles sit in one lens plane; their deflections add.

    Returns
    -------
    beta_x, beta_y : jax.Array
        Source-plane coordinates in arcsec.
    """
    ax, ay = total_deflection(x, y, mass)
    return x - ax, y - ay
