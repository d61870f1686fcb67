"""Ellipticity, shear and position conventions: vaelens (lenstronomy) <-> COOLEST.

vaelens uses lenstronomy's parameters: the coordinate ``x`` follows right ascension (it grows
to the east, to the left of a sky image in the usual orientation) and ``y`` follows declination;
an ellipticity ``(e1, e2)`` has axis ratio :math:`q = (1-|e|)/(1+|e|)` and major axis at the
angle :math:`\\phi_{\\rm L} = \\arg(e_1 + i e_2)/2` counter-clockwise from the ``x`` axis; the
external shear :math:`(\\gamma_1, \\gamma_2)` has strength :math:`|\\gamma|` and angle
:math:`\\arg(\\gamma_1 + i\\gamma_2)/2`.

COOLEST (Galan et al. 2023, A&A 672, A9) puts its ``x`` axis to the west (``x_C = -x``,
``y_C = y``) and gives axis ratios ``q`` and position angles ``phi`` in degrees east of north,
folded into (-90, 90]:

.. math:: \\phi_{\\rm C} = 90^\\circ - \\phi_{\\rm L} \\pmod{180^\\circ},

the same for the shear angle ``phi_ext``. These are the conversions of lenstronomy's own
COOLEST interface (``lenstronomy.Util.coolest_update_util``). All functions take scalars or
arrays.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "center_from_coolest",
    "center_to_coolest",
    "ellipticity_from_coolest",
    "ellipticity_to_coolest",
    "fold_angle",
    "shear_from_coolest",
    "shear_to_coolest",
]


def fold_angle(phi_deg):
    """An angle in degrees folded into COOLEST's range (-90, 90] (an axis, defined mod 180)."""
    phi = np.asarray(phi_deg, dtype=float)
    out = phi - 180.0 * np.ceil((phi - 90.0) / 180.0)
    return out if out.ndim else float(out)


def _coolest_angle(phi_lenstronomy_rad):
    return fold_angle(90.0 - np.degrees(phi_lenstronomy_rad))


def _lenstronomy_angle(phi_coolest_deg):
    return np.radians(90.0 - np.asarray(phi_coolest_deg, dtype=float))


def ellipticity_to_coolest(e1, e2):
    """COOLEST ``(q, phi)`` of a lenstronomy ellipticity ``(e1, e2)``.

    Returns
    -------
    q : float or array
        Axis ratio (minor / major), in (0, 1].
    phi : float or array
        Position angle of the major axis, degrees east of north, in (-90, 90]; 90 for a round
        profile (``e = 0``, where the angle is undefined).

    Raises
    ------
    ValueError
        ``|e| >= 1``.
    """
    e1, e2 = np.asarray(e1, dtype=float), np.asarray(e2, dtype=float)
    e = np.hypot(e1, e2)
    if np.any(e >= 1.0) or not np.all(np.isfinite(e)):
        raise ValueError("ellipticity |e| = sqrt(e1^2 + e2^2) must be finite and below 1")
    q = (1.0 - e) / (1.0 + e)
    phi = _coolest_angle(0.5 * np.arctan2(e2, e1))
    return (q if q.ndim else float(q)), phi


def ellipticity_from_coolest(q, phi):
    """lenstronomy ``(e1, e2)`` of a COOLEST axis ratio ``q`` and position angle ``phi`` (deg).

    Raises
    ------
    ValueError
        ``q`` outside (0, 1].
    """
    q = np.asarray(q, dtype=float)
    if np.any(q <= 0.0) or np.any(q > 1.0):
        raise ValueError("axis ratio q must be in (0, 1]")
    e = (1.0 - q) / (1.0 + q)
    angle = 2.0 * _lenstronomy_angle(phi)
    e1, e2 = e * np.cos(angle), e * np.sin(angle)
    return (e1 if e1.ndim else float(e1)), (e2 if e2.ndim else float(e2))


def shear_to_coolest(gamma1, gamma2):
    """COOLEST ``(gamma_ext, phi_ext)`` (strength, degrees east of north) of a shear."""
    g1, g2 = np.asarray(gamma1, dtype=float), np.asarray(gamma2, dtype=float)
    strength = np.hypot(g1, g2)
    phi = _coolest_angle(0.5 * np.arctan2(g2, g1))
    return (strength if strength.ndim else float(strength)), phi


def shear_from_coolest(gamma_ext, phi_ext):
    """lenstronomy ``(gamma1, gamma2)`` of a COOLEST shear strength and angle (degrees).

    Raises
    ------
    ValueError
        A negative strength.
    """
    g = np.asarray(gamma_ext, dtype=float)
    if np.any(g < 0.0):
        raise ValueError("shear strength gamma_ext must be >= 0")
    angle = 2.0 * _lenstronomy_angle(phi_ext)
    g1, g2 = g * np.cos(angle), g * np.sin(angle)
    return (g1 if g1.ndim else float(g1)), (g2 if g2.ndim else float(g2))


def center_to_coolest(x, y, origin=(0.0, 0.0)):
    """COOLEST ``(x_C, y_C)`` of a position ``(x, y)``, the COOLEST origin at ``origin``."""
    return -(np.asarray(x, float) - origin[0]), np.asarray(y, float) - origin[1]


def center_from_coolest(x_c, y_c, origin=(0.0, 0.0)):
    """The inverse of :func:`center_to_coolest`."""
    return origin[0] - np.asarray(x_c, float), np.asarray(y_c, float) + origin[1]
