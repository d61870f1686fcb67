"""Prior configurations of the lens and galaxy models (frozen, printable, documented).

Every prior is data: a frozen dataclass of numbers with sensible defaults that a user can print,
compare and change with :func:`dataclasses.replace`. The model functions read them; they never
hold state. Each class has a :meth:`distributions` method returning the NumPyro distribution of
every sample site it controls, so the exact prior is always inspectable.

Reparameterisations that help gradient-based inference are built in:

* scale parameters (``theta_E``, sizes, amplitudes) are LogNormal, so they are sampled in log
  space by NumPyro's transforms;
* ellipticities ``(e1, e2)`` are derived from unconstrained ``(e1_raw, e2_raw) ~ Normal(0, s)``
  by ``e = tanh(|u|) u / |u|`` (see :func:`ellipticity_from_raw`), which keeps ``|e| < 1`` and
  equals ``u`` to first order, so the prior on ``e`` is close to ``Normal(0, s)`` for small ``s``;
* the VAE latent code is ``z ~ Normal(0, 1)^latent_dim``, the VAE's own prior.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpyro.distributions as dist

__all__ = [
    "LensPriors",
    "SourcePriors",
    "SersicPriors",
    "LensLightPriors",
    "GalaxyPriors",
    "ellipticity_from_raw",
    "raw_from_ellipticity",
]


def ellipticity_from_raw(u1, u2):
    """Map unconstrained ``(u1, u2)`` to ellipticities ``(e1, e2)`` with ``|e| < 1``.

    ``e = tanh(|u|) u / |u|``; smooth at ``u = 0`` (where ``e = u``).
    """
    r2 = u1**2 + u2**2
    r = jnp.sqrt(r2 + 1e-30)
    # tanh(r)/r -> 1 - r^2/3 as r -> 0; use the series for tiny r to keep gradients finite.
    factor = jnp.where(r2 < 1e-8, 1.0 - r2 / 3.0, jnp.tanh(r) / r)
    return u1 * factor, u2 * factor


def raw_from_ellipticity(e1, e2):
    """Inverse of :func:`ellipticity_from_raw` (requires ``|e| < 1``)."""
    r2 = e1**2 + e2**2
    r = jnp.sqrt(r2 + 1e-30)
    factor = jnp.where(r2 < 1e-8, 1.0 + r2 / 3.0, jnp.arctanh(r) / r)
    return e1 * factor, e2 * factor


def _lognormal(median: float, scale: float) -> dist.Distribution:
    return dist.LogNormal(math.log(median), scale)


@dataclasses.dataclass(frozen=True)
class LensPriors:
    """Priors of the lens mass (EPL or SIE) and the external shear.

    Parameters
    ----------
    theta_E, theta_E_scale
        ``theta_E ~ LogNormal(log(theta_E), theta_E_scale)``: Einstein radius guess (arcsec) and
        the log-space width.
    gamma_loc, gamma_scale, gamma_low, gamma_high
        ``gamma ~ TruncatedNormal(gamma_loc, gamma_scale, low, high)``: EPL power-law slope
        (2 = isothermal). Unused for an SIE.
    e_scale
        ``(e1_raw, e2_raw) ~ Normal(0, e_scale)``; ``(e1, e2) = ellipticity_from_raw(...)``.
    center_x, center_y, center_scale
        ``center ~ Normal(guess, center_scale)`` (arcsec).
    shear_scale
        ``gamma1, gamma2 ~ Normal(0, shear_scale)``.
    """

    theta_E: float = 1.0
    theta_E_scale: float = 0.3
    gamma_loc: float = 2.0
    gamma_scale: float = 0.2
    gamma_low: float = 1.5
    gamma_high: float = 2.5
    e_scale: float = 0.2
    center_x: float = 0.0
    center_y: float = 0.0
    center_scale: float = 0.05
    shear_scale: float = 0.05

    def __post_init__(self) -> None:
        if self.theta_E <= 0 or self.theta_E_scale <= 0:
            raise ValueError("theta_E and theta_E_scale must be positive")
        if not self.gamma_low < self.gamma_loc < self.gamma_high:
            raise ValueError("need gamma_low < gamma_loc < gamma_high")
        if min(self.gamma_scale, self.e_scale, self.center_scale, self.shear_scale) <= 0:
            raise ValueError("prior scales must be positive")

    def distributions(self) -> dict[str, dist.Distribution]:
        """The NumPyro distribution of every sample site (names as in the posterior)."""
        return {
            "theta_E": _lognormal(self.theta_E, self.theta_E_scale),
            "gamma": dist.TruncatedNormal(
                self.gamma_loc, self.gamma_scale, low=self.gamma_low, high=self.gamma_high
            ),
            "e1_raw": dist.Normal(0.0, self.e_scale),
            "e2_raw": dist.Normal(0.0, self.e_scale),
            "center_x": dist.Normal(self.center_x, self.center_scale),
            "center_y": dist.Normal(self.center_y, self.center_scale),
            "gamma1": dist.Normal(0.0, self.shear_scale),
            "gamma2": dist.Normal(0.0, self.shear_scale),
        }


@dataclasses.dataclass(frozen=True)
class SourcePriors:
    """Priors of the VAE source: latent code and placement in the source plane.

    The decoded image has unit total flux; it is placed with its centre at
    ``(source_center_x, source_center_y)`` (arcsec, source plane), full width ``source_size``
    (arcsec), rotated by ``source_angle`` (radians) and multiplied by ``source_amp``, so
    ``source_amp`` is the total unlensed source flux in image units.

    Parameters
    ----------
    latent_dim
        Dimension of ``z ~ Normal(0, 1)^latent_dim``.
    center_x, center_y, center_scale
        ``source_center ~ Normal(guess, center_scale)`` (arcsec).
    size, size_scale
        ``source_size ~ LogNormal(log(size), size_scale)``; full width of the 64-px stamp
        (1.92 arcsec is the COSMOS training scale, 0.03 arcsec/px).
    angle, angle_scale
        ``source_angle ~ Normal(angle, angle_scale)`` (radians); ``angle_scale=None`` fixes the
        angle at ``angle`` (the latent code can rotate the galaxy too).
    amp, amp_scale
        ``source_amp ~ LogNormal(log(amp), amp_scale)``: total source flux (image units).
    """

    latent_dim: int = 64
    center_x: float = 0.0
    center_y: float = 0.0
    center_scale: float = 0.2
    size: float = 1.92
    size_scale: float = 0.3
    angle: float = 0.0
    angle_scale: float | None = None
    amp: float = 1.0
    amp_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be positive")
        scales = [self.center_scale, self.size, self.size_scale, self.amp, self.amp_scale]
        if self.angle_scale is not None:
            scales.append(self.angle_scale)
        if min(scales) <= 0:
            raise ValueError("sizes, amplitudes and prior scales must be positive")

    def distributions(self) -> dict[str, dist.Distribution]:
        """The NumPyro distribution of every sample site (names as in the posterior)."""
        out = {
            "z": dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1),
            "source_center_x": dist.Normal(self.center_x, self.center_scale),
            "source_center_y": dist.Normal(self.center_y, self.center_scale),
            "source_size": _lognormal(self.size, self.size_scale),
            "source_amp": _lognormal(self.amp, self.amp_scale),
        }
        if self.angle_scale is not None:
            out["source_angle"] = dist.Normal(self.angle, self.angle_scale)
        return out


@dataclasses.dataclass(frozen=True)
class SersicPriors:
    """Priors of an elliptical Sersic profile (lenstronomy ``SERSIC_ELLIPSE`` convention).

    Used for a parametric source (site prefix ``source_``) and, through
    :class:`LensLightPriors`, for the lens light (prefix ``light_``).

    Parameters
    ----------
    amp, amp_scale
        ``amp ~ LogNormal(log(amp), amp_scale)``: surface brightness at ``R_sersic``.
    R_sersic, R_sersic_scale
        ``R_sersic ~ LogNormal(log(R_sersic), R_sersic_scale)`` (arcsec).
    n_low, n_high
        ``n_sersic ~ Uniform(n_low, n_high)``.
    e_scale
        Unconstrained ellipticity scale, as for the lens.
    center_x, center_y, center_scale
        ``center ~ Normal(guess, center_scale)`` (arcsec).
    """

    amp: float = 1.0
    amp_scale: float = 1.0
    R_sersic: float = 0.2
    R_sersic_scale: float = 0.5
    n_low: float = 0.5
    n_high: float = 6.0
    e_scale: float = 0.2
    center_x: float = 0.0
    center_y: float = 0.0
    center_scale: float = 0.2

    def __post_init__(self) -> None:
        if min(self.amp, self.amp_scale, self.R_sersic, self.R_sersic_scale) <= 0:
            raise ValueError("amplitudes, radii and scales must be positive")
        if not 0 < self.n_low < self.n_high:
            raise ValueError("need 0 < n_low < n_high")
        if min(self.e_scale, self.center_scale) <= 0:
            raise ValueError("prior scales must be positive")

    def distributions(self, prefix: str = "source_") -> dict[str, dist.Distribution]:
        """The NumPyro distribution of every sample site, names prefixed by ``prefix``."""
        return {
            f"{prefix}amp": _lognormal(self.amp, self.amp_scale),
            f"{prefix}R_sersic": _lognormal(self.R_sersic, self.R_sersic_scale),
            f"{prefix}n_sersic": dist.Uniform(self.n_low, self.n_high),
            f"{prefix}e1_raw": dist.Normal(0.0, self.e_scale),
            f"{prefix}e2_raw": dist.Normal(0.0, self.e_scale),
            f"{prefix}center_x": dist.Normal(self.center_x, self.center_scale),
            f"{prefix}center_y": dist.Normal(self.center_y, self.center_scale),
        }


@dataclasses.dataclass(frozen=True)
class LensLightPriors(SersicPriors):
    """Priors of the Sersic lens light (site prefix ``light_``).

    Same fields as :class:`SersicPriors` (defaults suited to a massive elliptical), plus

    Parameters
    ----------
    tie_center
        If True (default) the light shares the mass centre ``(center_x, center_y)`` and has no
        centre parameters of its own.
    """

    R_sersic: float = 0.8
    n_low: float = 1.0
    n_high: float = 8.0
    center_scale: float = 0.05
    tie_center: bool = True

    def distributions(self, prefix: str = "light_") -> dict[str, dist.Distribution]:
        out = super().distributions(prefix)
        if self.tie_center:
            del out[f"{prefix}center_x"], out[f"{prefix}center_y"]
        return out


@dataclasses.dataclass(frozen=True)
class GalaxyPriors:
    """Priors of the single-galaxy model :func:`vaelens.models.galaxy_model`.

    Parameters
    ----------
    latent_dim
        ``z ~ Normal(0, 1)^latent_dim``.
    flux, flux_scale
        ``flux ~ LogNormal(log(flux), flux_scale)`` (total flux, image units); ``flux=None``
        centres the prior on the stamp's pixel sum.
    center_scale
        ``center_x, center_y ~ Normal(0, center_scale)`` (arcsec from the stamp centre).
    fit_size, size_scale
        If ``fit_size``, the full width of the decoded stamp is free,
        ``size ~ LogNormal(log(native width), size_scale)`` (arcsec); otherwise it is the
        decoder's native width (64 x 0.03 arcsec).
    fit_angle, angle_scale
        If ``fit_angle``, ``angle ~ Normal(0, angle_scale)`` (radians).
    """

    latent_dim: int = 64
    flux: float | None = None
    flux_scale: float = 0.5
    center_scale: float = 0.05
    fit_size: bool = False
    size_scale: float = 0.2
    fit_angle: bool = False
    angle_scale: float = 0.5

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be positive")
        if self.flux is not None and self.flux <= 0:
            raise ValueError("flux must be positive")
        if min(self.flux_scale, self.center_scale, self.size_scale, self.angle_scale) <= 0:
            raise ValueError("prior scales must be positive")

    def distributions(
        self, flux_guess: float = 1.0, native_size: float = 1.92
    ) -> dict[str, dist.Distribution]:
        """The NumPyro distribution of every sample site.

        ``flux_guess`` is the prior median of ``flux`` when ``self.flux`` is None;
        ``native_size`` the prior median of ``size`` (arcsec).
        """
        flux = self.flux if self.flux is not None else flux_guess
        out = {
            "z": dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1),
            "flux": _lognormal(flux, self.flux_scale),
            "center_x": dist.Normal(0.0, self.center_scale),
            "center_y": dist.Normal(0.0, self.center_scale),
        }
        if self.fit_size:
            out["size"] = _lognormal(native_size, self.size_scale)
        if self.fit_angle:
            out["angle"] = dist.Normal(0.0, self.angle_scale)
        return out
