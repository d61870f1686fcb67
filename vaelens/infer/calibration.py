"""Calibration of error bars over many fits with known truth.

A posterior is calibrated when its intervals contain the truth as often as they claim: over many
mocks, the central 68% interval of a parameter holds the true value in 68% of them. These
functions measure that from either Gaussian summaries (a MAP estimate and its Laplace sigma) or
posterior draws, and the rank statistic of simulation-based calibration (Talts et al. 2018,
arXiv:1804.06788): the rank of the truth among ``L`` posterior draws is uniform on
``0..L`` when the posterior is exact.

All functions take plain arrays (one entry per mock) and ignore non-finite entries (a failed
fit), which are counted separately by :func:`coverage_table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "DEFAULT_LEVELS",
    "coverage_table",
    "draws_coverage",
    "gaussian_coverage",
    "normalized_errors",
    "rank_uniformity",
    "sbc_ranks",
]

#: The interval probabilities reported by default.
DEFAULT_LEVELS: tuple[float, ...] = (0.68, 0.95)


def _finite(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(np.shape(arrays[0]), bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def _check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    levels = tuple(float(level) for level in levels)
    if not levels or any(not 0.0 < level < 1.0 for level in levels):
        raise ValueError(f"interval levels must lie strictly between 0 and 1, got {levels}")
    return levels


def normalized_errors(estimate, sigma, truth) -> np.ndarray:
    """``(estimate - truth) / sigma`` per mock (NaN where an input is not finite or sigma <= 0).

    Parameters
    ----------
    estimate, sigma, truth : array_like
        One value per mock (same shape).
    """
    estimate, sigma, truth = (np.asarray(a, dtype=float) for a in (estimate, sigma, truth))
    if not estimate.shape == sigma.shape == truth.shape:
        raise ValueError(
            f"estimate, sigma and truth must have one shape, got {estimate.shape}, "
            f"{sigma.shape}, {truth.shape}"
        )
    ok = _finite(estimate, sigma, truth) & (sigma > 0)
    out = np.full(estimate.shape, np.nan)
    out[ok] = (estimate[ok] - truth[ok]) / sigma[ok]
    return out


def gaussian_coverage(
    estimate, sigma, truth, levels: Sequence[float] = DEFAULT_LEVELS
) -> dict[float, float]:
    """Fraction of mocks whose truth lies in the central Gaussian interval of each level.

    The interval of level ``p`` is ``estimate +- Phi^-1((1 + p) / 2) * sigma`` (for 0.68:
    +- 0.994 sigma; for 0.95: +- 1.96 sigma). Mocks with a non-finite input are left out.
    """
    levels = _check_levels(levels)
    z = normalized_errors(estimate, sigma, truth)
    z = np.abs(z[np.isfinite(z)])
    if z.size == 0:
        return {level: float("nan") for level in levels}
    return {level: float(np.mean(z <= stats.norm.ppf(0.5 + level / 2))) for level in levels}


def _draws_matrix(draws, truth) -> tuple[np.ndarray, np.ndarray]:
    draws = np.asarray(draws, dtype=float)
    truth = np.asarray(truth, dtype=float)
    if draws.ndim != 2 or truth.ndim != 1 or draws.shape[0] != truth.shape[0]:
        raise ValueError(
            "draws must be (n_mocks, n_draws) and truth (n_mocks,), got "
            f"{draws.shape} and {truth.shape}"
        )
    if draws.shape[1] < 2:
        raise ValueError("at least two posterior draws per mock are needed")
    return draws, truth


def draws_coverage(draws, truth, levels: Sequence[float] = DEFAULT_LEVELS) -> dict[float, float]:
    """Fraction of mocks whose truth lies in the central credible interval of its draws.

    Parameters
    ----------
    draws : array_like
        ``(n_mocks, n_draws)`` posterior draws of one parameter (chains flattened).
    truth : array_like
        ``(n_mocks,)`` true values.
    levels
        Interval probabilities. The truth lies in the central interval of level ``p`` when its
        normalised rank ``u = (r + 1/2) / (n_draws + 1)`` (``r`` draws below it, see
        :func:`sbc_ranks`) satisfies ``|u - 1/2| <= p / 2``: the rank form of the quantile
        interval, which keeps the nominal rate for any number of draws (sample quantiles of
        ``L`` draws cover only about ``p - 2 / L`` on average).
    """
    levels = _check_levels(levels)
    draws, truth = _draws_matrix(draws, truth)
    ranks = sbc_ranks(draws, truth)
    ok = ranks >= 0
    if not ok.any():
        return {level: float("nan") for level in levels}
    u = (ranks[ok] + 0.5) / (draws.shape[1] + 1)
    return {level: float(np.mean(np.abs(u - 0.5) <= level / 2)) for level in levels}


def sbc_ranks(draws, truth) -> np.ndarray:
    """Rank of each truth among its posterior draws (number of draws below it), ``0..n_draws``.

    Uniform over ``0..n_draws`` for a calibrated posterior with independent draws; thin
    correlated chains to about their effective sample size first (Talts et al. 2018). Mocks with
    a non-finite input get rank -1.
    """
    draws, truth = _draws_matrix(draws, truth)
    ok = np.isfinite(truth) & np.all(np.isfinite(draws), axis=1)
    ranks = np.full(truth.shape, -1, dtype=int)
    ranks[ok] = np.sum(draws[ok] < truth[ok, None], axis=1)
    return ranks


def rank_uniformity(ranks, n_draws: int, bins: int = 10) -> dict[str, Any]:
    """Histogram of SBC ranks and the chi-square test of their uniformity.

    Returns ``counts`` (``bins`` integers over ``0..n_draws``), ``expected`` (per bin) and
    ``p_value`` (chi-square with ``bins - 1`` degrees of freedom; small values flag a
    miscalibrated posterior: a U shape means too narrow, a hump too wide, a slope a bias).
    """
    ranks = np.asarray(ranks)
    ranks = ranks[ranks >= 0]
    if int(bins) < 2:
        raise ValueError("bins must be at least 2")
    if ranks.size == 0:
        return {"counts": [0] * int(bins), "expected": 0.0, "p_value": float("nan")}
    if np.any(ranks > n_draws):
        raise ValueError(f"ranks exceed n_draws = {n_draws}")
    edges = np.linspace(0, n_draws + 1, int(bins) + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    expected = ranks.size / int(bins)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    return {
        "counts": [int(c) for c in counts],
        "expected": expected,
        "p_value": float(stats.chi2.sf(chi2, int(bins) - 1)),
    }


def coverage_table(
    estimates: Mapping[str, Any],
    sigmas: Mapping[str, Any],
    truths: Mapping[str, Any],
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    draws: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-parameter calibration summary over mocks.

    Parameters
    ----------
    estimates, sigmas, truths
        By parameter name, one value per mock (NaN for a failed fit).
    levels
        Interval probabilities.
    draws
        Optional ``(n_mocks, n_draws)`` posterior draws by parameter: the coverage then comes
        from the draws' quantiles and the SBC ranks are added.

    Returns
    -------
    dict
        For each parameter: ``n`` (mocks used), ``coverage`` (level -> fraction),
        ``median_z`` and ``spread_z`` (median and half the 16-84% range of the normalised
        errors), and with ``draws``: ``rank_histogram``.
    """
    levels = _check_levels(levels)
    out: dict[str, dict[str, Any]] = {}
    for name in estimates:
        if name not in sigmas or name not in truths:
            raise ValueError(f"parameter {name!r} needs a sigma and a truth")
        z = normalized_errors(estimates[name], sigmas[name], truths[name])
        zf = z[np.isfinite(z)]
        row: dict[str, Any] = {
            "n": int(zf.size),
            "median_z": float(np.median(zf)) if zf.size else float("nan"),
            "spread_z": float(np.diff(np.quantile(zf, [0.16, 0.84]))[0] / 2)
            if zf.size
            else float("nan"),
        }
        if draws is not None and name in draws:
            cov = draws_coverage(draws[name], truths[name], levels)
            ranks = sbc_ranks(draws[name], truths[name])
            row["rank_histogram"] = rank_uniformity(ranks, np.shape(draws[name])[1])
        else:
            cov = gaussian_coverage(estimates[name], sigmas[name], truths[name], levels)
        row["coverage"] = {f"{level:g}": value for level, value in cov.items()}
        out[name] = row
    return out
