"""What a lens model contains and how it is rendered: :class:`LensSpec` (frozen, printable).

:meth:`LensSpec.from_data` builds the data-informed priors that ``vaelens fit`` uses: the
amplitude priors are centred on the flux in the mask, the lens-centre prior on the coordinate
origin (the image centre unless the header's ``RA0``/``DEC0`` place it elsewhere).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from vaelens.models.priors import LensLightPriors, LensPriors, SersicPriors, SourcePriors

__all__ = ["LensSpec"]

#: Typical magnification of the source by a galaxy-scale lens, used to centre the source-flux
#: prior of :meth:`LensSpec.from_data` (a log-normal prior a factor ``e`` wide per sigma).
TYPICAL_MAGNIFICATION = 10.0

#: Supported range of the EPL slope.
GAMMA_LIMITS = (1.2, 2.8)


def _unit_sersic_flux(n: float, r: float) -> float:
    """Total flux of a Sersic profile of unit surface brightness at ``R_sersic = r``."""
    from vaelens.lensing.light.sersic import sersic_total_flux

    return float(sersic_total_flux(1.0, r, n))


@dataclasses.dataclass(frozen=True)
class LensSpec:
    """What the lens model contains and how it is rendered (frozen, printable).

    Parameters
    ----------
    mass_profile
        ``"epl"`` (elliptical power law, free slope ``gamma``) or ``"sie"`` (``gamma = 2``).
    include_shear
        Add an external shear ``(gamma1, gamma2)``.
    source_model
        ``"vae"`` (the decoder: ``z``, ``source_center_x/y``, ``source_size``, ``source_angle``,
        ``source_amp``) or ``"sersic"`` (elliptical Sersic, for comparison).
    include_lens_light
        Add an elliptical Sersic lens light (``light_*`` parameters).
    supersampling
        Rays per pixel side (the model is evaluated on a ``supersampling``-times finer grid and
        block averaged).
    convolve_supersampled
        Convolve with the PSF on the supersampled grid (the PSF must then be given at that
        resolution) instead of after downsampling.
    save_model_image
        Record the noise-free model image as the deterministic site ``model_image``.
    model_error
        None (default): the likelihood is the data's noise model alone. A positive number adds
        a fractional model-error term: the variance of a pixel becomes
        ``variance(model) + (model_error_frac * model)**2`` with the parameter
        ``model_error_frac ~ LogNormal(log(model_error), 1)``, so that the part of the image the
        model cannot reproduce (a real galaxy the decoder does not span) widens the error bars
        where the light is instead of biasing the lens parameters.
    lens, source, sersic_source, lens_light
        The prior configurations (:class:`LensPriors`, :class:`SourcePriors`,
        :class:`SersicPriors`, :class:`LensLightPriors`).

    Examples
    --------
    >>> spec = LensSpec(lens=LensPriors(theta_E=1.2), supersampling=2)
    >>> spec.lens.theta_E
    1.2
    """

    mass_profile: Literal["epl", "sie"] = "epl"
    include_shear: bool = True
    source_model: Literal["vae", "sersic"] = "vae"
    include_lens_light: bool = False
    supersampling: int = 2
    convolve_supersampled: bool = False
    save_model_image: bool = False
    model_error: float | None = None
    lens: LensPriors = dataclasses.field(default_factory=LensPriors)
    source: SourcePriors = dataclasses.field(default_factory=SourcePriors)
    sersic_source: SersicPriors = dataclasses.field(default_factory=SersicPriors)
    lens_light: LensLightPriors = dataclasses.field(default_factory=LensLightPriors)

    def __post_init__(self) -> None:
        if self.mass_profile not in ("epl", "sie"):
            raise ValueError(f"mass_profile must be 'epl' or 'sie', got {self.mass_profile!r}")
        if self.source_model not in ("vae", "sersic"):
            raise ValueError(f"source_model must be 'vae' or 'sersic', got {self.source_model!r}")
        if int(self.supersampling) < 1:
            raise ValueError("supersampling must be a positive integer")
        if self.model_error is not None and not (
            np.isfinite(self.model_error) and 0 < self.model_error < 1
        ):
            raise ValueError(
                f"model_error must be a fraction between 0 and 1 (or None), got {self.model_error}"
            )

    def parameter_names(self) -> tuple[str, ...]:
        """Names of the physical (constrained, scalar) parameters, without ``z``."""
        names = ["theta_E", "gamma", "e1", "e2", "center_x", "center_y"]
        if self.mass_profile == "sie":
            names.remove("gamma")
        if self.include_shear:
            names += ["gamma1", "gamma2"]
        if self.include_lens_light:
            names += ["light_amp", "light_R_sersic", "light_n_sersic", "light_e1", "light_e2"]
            if not self.lens_light.tie_center:
                names += ["light_center_x", "light_center_y"]
        if self.source_model == "vae":
            names += ["source_center_x", "source_center_y", "source_size", "source_amp"]
            if self.source.angle_scale is not None:
                names.append("source_angle")
        else:
            names += [
                "source_amp",
                "source_R_sersic",
                "source_n_sersic",
                "source_e1",
                "source_e2",
                "source_center_x",
                "source_center_y",
            ]
        if self.model_error is not None:
            names.append("model_error_frac")
        return tuple(names)

    @classmethod
    def from_data(
        cls,
        data,
        *,
        mass_profile: Literal["epl", "sie"] = "epl",
        include_shear: bool = True,
        include_lens_light: bool = True,
        source_model: Literal["vae", "sersic"] = "vae",
        supersampling: int = 2,
        theta_E: float | None = None,
        gamma_range: tuple[float, float] | None = None,
        center_sigma: float | None = None,
        model_error: float | None = None,
    ) -> LensSpec:
        """A specification whose amplitude priors are centred on the data.

        The default priors are in arbitrary flux units; here the total flux ``F`` inside the
        mask fixes their medians: the lens light carries about half of ``F`` (Sersic ``n = 4``
        at the prior ``R_sersic``), and the source half of ``F`` (all of it without lens
        light) divided by a typical magnification of 10 (for a Sersic source, that flux spread
        over the prior ``R_sersic``). The log-normal widths are those of the default priors.

        Parameters
        ----------
        data : vaelens.data.ImageData
            The observation.
        mass_profile, include_shear, include_lens_light, source_model, supersampling, model_error
            As in the class.
        theta_E
            Prior median of the Einstein radius (arcsec; default that of :class:`LensPriors`).
        gamma_range
            ``(low, high)`` bounds of the truncated-normal slope prior, within 1.2-2.8.
        center_sigma
            Width (arcsec) of the Normal prior of the lens centre about the coordinate origin
            (default that of :class:`LensPriors`, 0.05").

        Raises
        ------
        ValueError
            A slope range outside 1.2-2.8 or not around the prior's centre, a non-positive
            ``theta_E`` or ``center_sigma``.
        """
        flux = float(np.sum(data.image[data.mask]))
        noise = float(np.sqrt(np.sum(data.variance(np.zeros(data.shape)))))
        flux = max(flux, 10.0 * noise)
        source_flux = (0.5 if include_lens_light else 1.0) * flux / TYPICAL_MAGNIFICATION
        light = LensLightPriors()
        light = dataclasses.replace(
            light, amp=0.5 * flux / _unit_sersic_flux(4.0, light.R_sersic)
        )
        sersic = SersicPriors()
        sersic = dataclasses.replace(
            sersic, amp=source_flux / _unit_sersic_flux(1.5, sersic.R_sersic)
        )
        lens = LensPriors()
        if theta_E is not None:
            if not theta_E > 0:
                raise ValueError(f"theta_E must be positive, got {theta_E}")
            lens = dataclasses.replace(lens, theta_E=float(theta_E))
        if center_sigma is not None:
            if not center_sigma > 0:
                raise ValueError(f"center_sigma must be positive, got {center_sigma}")
            lens = dataclasses.replace(lens, center_scale=float(center_sigma))
        if gamma_range is not None:
            low, high = (float(g) for g in gamma_range)
            lo_lim, hi_lim = GAMMA_LIMITS
            if not lo_lim <= low < lens.gamma_loc < high <= hi_lim:
                raise ValueError(
                    f"gamma range {low:g} {high:g}: need {lo_lim:g} <= low < {lens.gamma_loc:g} "
                    f"< high <= {hi_lim:g} (the EPL slopes supported)"
                )
            lens = dataclasses.replace(lens, gamma_low=low, gamma_high=high)
        return cls(
            mass_profile=mass_profile,
            include_shear=include_shear,
            source_model=source_model,
            include_lens_light=include_lens_light,
            supersampling=supersampling,
            model_error=model_error,
            lens=lens,
            lens_light=light,
            source=dataclasses.replace(SourcePriors(), amp=source_flux),
            sersic_source=sersic,
        )

    def to_dict(self) -> dict:
        """A JSON-friendly description (the priors as nested dictionaries)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            is_config = dataclasses.is_dataclass(value)
            out[field.name] = dataclasses.asdict(value) if is_config else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LensSpec:
        """The specification described by :meth:`to_dict` (e.g. the ``spec`` of a fit's
        ``summary.json``).

        Raises
        ------
        ValueError
            ``data`` is not a mapping, or has a key that is not a field of the class or of the
            prior configurations (the message names it).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a LensSpec description must be a dict, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown LensSpec fields: {', '.join(unknown)}")
        defaults, kwargs = cls(), {}
        for name, value in data.items():
            default = getattr(defaults, name)
            if dataclasses.is_dataclass(default):
                if not isinstance(value, dict):
                    raise ValueError(f"LensSpec field {name!r} must be a dict, got {value!r}")
                config = type(default)
                known = {f.name for f in dataclasses.fields(config)}
                bad = sorted(set(value) - known)
                if bad:
                    raise ValueError(f"unknown {config.__name__} fields: {', '.join(bad)}")
                value = config(**value)
            kwargs[name] = value
        return cls(**kwargs)
