"""Restarting a fit from an earlier one: its best draws as starting points of the MAP."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RestartError", "init_points_from", "load_init_draws"]


class RestartError(ValueError):
    """The earlier fit cannot be read, or does not match the model being fitted."""


def load_init_draws(source: str | os.PathLike | Any, num: int) -> list[dict[str, np.ndarray]]:
    """Starting points taken from an earlier fit: the lowest-chi^2 draw of each of its chains.

    ``source`` is the output folder of an earlier fit, its ``posterior.nc``, or an ArviZ
    InferenceData. The draws are ordered by chi^2 (``sample_stats.chi2``; draw order without
    it) and at most ``num`` are returned, as dictionaries of constrained values of every
    posterior variable.
    """
    import arviz as az

    if hasattr(source, "posterior"):
        idata = source
    else:
        p = Path(source).expanduser()
        if p.is_dir():
            p = p / "posterior.nc"
        if not p.is_file():
            raise RestartError(f"earlier fit {p} not found")
        try:
            idata = az.from_netcdf(p)
            idata.posterior  # noqa: B018 - a file without a posterior group is unreadable here
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
            raise RestartError(f"cannot read {p} as ArviZ InferenceData ({exc})") from None
    post = idata.posterior
    nchain, ndraw = post.sizes["chain"], post.sizes["draw"]
    if "sample_stats" in idata.groups() and "chi2" in idata.sample_stats:
        chi2 = np.asarray(idata.sample_stats["chi2"].values, dtype=np.float64)
        chi2 = np.where(np.isfinite(chi2), chi2, np.inf).reshape(nchain, ndraw)
    else:
        chi2 = np.zeros((nchain, ndraw))
    best_draw = np.argmin(chi2, axis=1)
    order = np.argsort(chi2[np.arange(nchain), best_draw], kind="stable")[: max(1, num)]
    return [{k: np.asarray(post[k].values[c, best_draw[c]]) for k in post.data_vars} for c in order]


def init_points_from(model, model_args, draws, key) -> np.ndarray:
    """Flat unconstrained starting points of ``model`` for constrained ``draws``.

    Raises
    ------
    RestartError
        The draws do not hold every latent site of the model with the right shape (the earlier
        fit used other model options, e.g. another source model or no lens light), or a draw
        lies outside a prior's support.
    """
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to

    tr = handlers.trace(handlers.seed(model, key)).get_trace(*model_args)
    sites = {
        name: site
        for name, site in sorted(tr.items())
        if site["type"] == "sample" and not site["is_observed"]
    }
    points = []
    for draw in draws:
        missing = sorted(set(sites) - set(draw))
        if missing:
            raise RestartError(
                f"the earlier fit has no parameter(s) {', '.join(missing)}; "
                "it was run with other model options"
            )
        parts = []
        for name, site in sites.items():
            value = np.asarray(draw[name], dtype=np.float64)
            if value.shape != np.shape(site["value"]):
                raise RestartError(
                    f"parameter {name} has shape {value.shape} in the earlier fit, "
                    f"{np.shape(site['value'])} here"
                )
            u = np.asarray(biject_to(site["fn"].support).inv(value), dtype=np.float64)
            parts.append(u.reshape(-1))
        x = np.concatenate(parts)
        if not np.all(np.isfinite(x)):
            raise RestartError("a draw of the earlier fit lies outside the prior's support")
        points.append(x)
    return np.stack(points)
