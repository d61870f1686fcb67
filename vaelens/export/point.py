"""The point estimate of a fit that the exports write: :class:`FitPoint`.

:func:`fit_point` takes a :class:`vaelens.infer.LensFit`: the MAP for ``method="map"``, the
posterior mean for SVI, NUTS and HMC (every scalar parameter and the deterministic ``source``
image averaged over the draws). :func:`fit_point_from_folder` reads a ``vaelens fit`` output
folder; such a folder does not keep the MAP's latent code, so for a MAP fit its point is the
lowest-chi^2 Laplace draw (for the samplers, again the posterior mean).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

__all__ = ["FitPoint", "fit_point", "fit_point_from_folder", "posterior_mean"]


@dataclasses.dataclass(frozen=True, eq=False)
class FitPoint:
    """One parameter set of a lens fit with what it was fitted to.

    Attributes
    ----------
    params
        Physical parameters by posterior name (``theta_E``, ``e1``, ..., ``source_amp``) and,
        for a VAE source, the ``(64, 64)`` ``source`` image (flux per source pixel).
    data, spec
        The :class:`vaelens.data.ImageData` and :class:`vaelens.models.LensSpec` of the fit.
    label
        What the point is: ``"MAP"``, ``"posterior mean"`` or ``"lowest-chi2 draw"``.
    idata
        The posterior draws (ArviZ InferenceData), or None.
    method
        The fit's method (``"map"``, ``"svi"``, ``"nuts"``, ``"hmc"``).
    """

    params: dict[str, Any]
    data: Any
    spec: Any
    label: str = "MAP"
    idata: Any = None
    method: str = "map"

    def __post_init__(self) -> None:
        missing = [n for n in self.spec.parameter_names() if n not in self.params]
        if missing:
            raise ValueError(f"the parameters lack {', '.join(missing)} of the model")
        if self.spec.source_model == "vae" and "source" not in self.params:
            raise ValueError(
                "a VAE-source fit needs its decoded 'source' image (flux per source pixel)"
            )


def _params_of(names, values) -> dict[str, Any]:
    out = {n: float(np.asarray(values[n])) for n in names}
    if "source" in values:
        out["source"] = np.asarray(values["source"], dtype=np.float64)
    return out


def posterior_mean(idata, spec) -> dict[str, Any]:
    """Posterior mean of every physical scalar parameter and of the ``source`` image."""
    post = idata.posterior
    names = [n for n in spec.parameter_names() if n in post.data_vars]
    out = {n: float(np.mean(np.asarray(post[n].values, dtype=np.float64))) for n in names}
    from vaelens.infer.chunked import image_moments

    moments = image_moments(idata, "source")  # per-draw images, or a sampler's moments
    if moments is not None:
        out["source"] = moments[0]
    return out


def fit_point(fit) -> FitPoint:
    """The point estimate of a :class:`vaelens.infer.LensFit` (MAP or posterior mean)."""
    if fit.method == "map":
        params = _params_of(fit.spec.parameter_names(), fit.map.params)
        label = "MAP"
    else:
        params = posterior_mean(fit.idata, fit.spec)
        label = "posterior mean"
    return FitPoint(params, fit.data, fit.spec, label, fit.idata, fit.method)


def fit_point_from_folder(path: str | os.PathLike, data) -> FitPoint:
    """The point estimate of a ``vaelens fit`` output folder.

    Parameters
    ----------
    path
        The folder (``posterior.nc`` and ``summary.json``).
    data : vaelens.data.ImageData
        The data of the fit (e.g. rebuilt from the image and PSF named in ``summary.json``).

    Raises
    ------
    FileNotFoundError
        The folder or one of its two files is missing.
    ValueError
        ``summary.json`` has no model specification, or it does not match the posterior.
    """
    from vaelens.fit_folder import best_draw, draw_params
    from vaelens.io_results import read_fit_folder
    from vaelens.models import LensSpec

    idata, summary = read_fit_folder(path)
    if not isinstance(summary.get("spec"), dict):
        raise ValueError(f"{path}: summary.json has no 'spec' (not a 'vaelens fit' folder?)")
    spec = LensSpec.from_dict(summary["spec"])
    method = str(summary.get("method", "map"))
    missing = [n for n in spec.parameter_names() if n not in idata.posterior.data_vars]
    if missing:
        raise ValueError(f"{path}: posterior.nc lacks {', '.join(missing)} of its model")
    observed = getattr(idata, "observed_data", None)
    if observed is not None and "obs" in observed:
        fitted = tuple(observed["obs"].shape[-2:])
        if tuple(data.shape) != fitted:
            raise ValueError(
                f"{path}: the data's shape {tuple(data.shape)} differs from the fitted {fitted}"
            )
    if method == "map":
        c, d = best_draw(idata)
        params = _params_of(spec.parameter_names(), draw_params(idata, c, d))
        label = "lowest-chi2 draw"
    else:
        params = posterior_mean(idata, spec)
        label = "posterior mean"
    return FitPoint(params, data, spec, label, idata, method)
