"""Is there structure left in the residuals of the lensed arcs? A check users can act on.

When the source model cannot reproduce the galaxy (a real source the decoder does not span), the
lens parameters absorb part of the mismatch and their error bars, which assume the model is
right, become too small. The signature is in the residuals where the lensed source is bright:
their chi^2 per pixel is above 1 by more than the noise allows, and binning neighbouring pixels
(which averages white noise down but not coherent structure) raises it further.

:func:`arc_residuals` measures both over the pixels where the lensed source is brighter than
``snr`` times the noise and flags a significant excess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["arc_residuals", "arc_residual_message"]


def _binned(r: np.ndarray, use: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``r`` over ``b x b`` blocks fully inside ``use``, over sqrt(b^2): N(0, 1) for
    white unit noise."""
    ny, nx = (s // b * b for s in r.shape)
    rb = np.where(use, r, 0.0)[:ny, :nx].reshape(ny // b, b, nx // b, b).sum(axis=(1, 3)) / b
    full = use[:ny, :nx].reshape(ny // b, b, nx // b, b).all(axis=(1, 3))
    return rb, full


def arc_residuals(
    data,
    model,
    sigma,
    mask=None,
    *,
    source_model=None,
    snr: float = 3.0,
    bin_size: int = 2,
    p_threshold: float = 1e-3,
) -> dict[str, Any]:
    """Residual excess inside the lensed arcs.

    Parameters
    ----------
    data, model
        ``(ny, nx)`` observed image and best-fit model image.
    sigma
        ``(ny, nx)`` (or scalar) noise standard deviation of the best-fit model.
    mask
        Boolean ``(ny, nx)``, True where a pixel enters the likelihood (default all).
    source_model
        ``(ny, nx)`` lensed source alone (no lens light); default ``model``. The arcs are the
        unmasked pixels where it exceeds ``snr * sigma``.
    snr
        Threshold of the arc region, in noise sigma.
    bin_size
        Side of the blocks of the binned statistic (pixels).
    p_threshold
        A statistic is significant when its chi-square tail probability is below this.

    Returns
    -------
    dict
        ``num_pixels`` (arc pixels), ``chi2_per_pixel`` (mean squared normalised residual over
        them; 1 for pure noise, standard deviation ``sqrt(2 / num_pixels)``), ``p_value``,
        ``binned_chi2_per_block`` / ``binned_p_value`` / ``num_blocks`` (the same over
        ``bin_size x bin_size`` blocks inside the arcs), and ``significant`` (either p-value
        below ``p_threshold``). With fewer than 20 arc pixels the statistics are None and
        ``significant`` is False.
    """
    data, model = np.asarray(data, float), np.asarray(model, float)
    if data.shape != model.shape or data.ndim != 2:
        raise ValueError(f"data {data.shape} and model {model.shape} must be one 2-d shape")
    sigma = np.broadcast_to(np.asarray(sigma, float), data.shape)
    mask = np.ones(data.shape, bool) if mask is None else np.asarray(mask, bool)
    src = model if source_model is None else np.asarray(source_model, float)
    if src.shape != data.shape or mask.shape != data.shape:
        raise ValueError("source_model and mask must have the shape of the data")
    if not snr > 0 or int(bin_size) < 1:
        raise ValueError("snr must be positive and bin_size at least 1")
    ok = mask & np.isfinite(data) & np.isfinite(model) & (sigma > 0)
    arcs = ok & (src > snr * sigma)
    out: dict[str, Any] = {
        "snr_threshold": float(snr),
        "bin_size": int(bin_size),
        "num_pixels": int(arcs.sum()),
        "chi2_per_pixel": None,
        "p_value": None,
        "num_blocks": 0,
        "binned_chi2_per_block": None,
        "binned_p_value": None,
        "significant": False,
    }
    if arcs.sum() < 20:
        return out
    r = np.where(ok, (data - model) / np.where(sigma > 0, sigma, 1.0), 0.0)
    n = int(arcs.sum())
    chi2 = float(np.sum(r[arcs] ** 2))
    out["chi2_per_pixel"] = chi2 / n
    out["p_value"] = float(stats.chi2.sf(chi2, n))
    rb, full = _binned(r, arcs, int(bin_size))
    nb = int(full.sum())
    if nb >= 5:
        chi2b = float(np.sum(rb[full] ** 2))
        out.update(
            num_blocks=nb,
            binned_chi2_per_block=chi2b / nb,
            binned_p_value=float(stats.chi2.sf(chi2b, nb)),
        )
    pvals = [p for p in (out["p_value"], out["binned_p_value"]) if p is not None]
    out["significant"] = bool(min(pvals) < p_threshold)
    return out


def arc_residual_message(check: Mapping[str, Any]) -> str | None:
    """A warning for users when :func:`arc_residuals` found a significant excess, else None."""
    if not check.get("significant"):
        return None
    parts = [f"chi^2/pixel {check['chi2_per_pixel']:.2f} over {check['num_pixels']} arc pixels"]
    if check.get("binned_chi2_per_block") is not None:
        b = check.get("bin_size", 2)
        parts.append(f"{check['binned_chi2_per_block']:.2f} in {b}x{b} blocks")
    return (
        "the residuals inside the arcs show structure beyond the noise ("
        + ", ".join(parts)
        + "; pure noise gives 1): the source model does not reproduce this galaxy, the lens "
        "parameters absorb part of the mismatch and their error bars are likely too small "
        "(they assume the model is right); treat them as lower limits, or compare with a "
        "Sersic-source fit (--source sersic)"
    )
