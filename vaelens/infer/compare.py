"""MCMC versus BFGS: a per-parameter comparison table (:func:`compare_fits`).

The difference between the MAP and the posterior mean is measured in units of the posterior
standard deviation, (MAP - mean) / sd (:func:`difference_in_sd`), in this table, in the table of
``vaelens compare`` and in :func:`vaelens.plotting.plot_comparison`. The posterior sd is the
scale of the question "is the MAP a typical point of the posterior?"; both estimates come from
the same data, so adding their sigmas in quadrature, as for independent measurements, would
understate the difference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vaelens.infer.diagnostics import scalar_variables
from vaelens.infer.map import MAPResult

__all__ = ["FitComparison", "compare_fits", "difference_in_sd"]

_COLUMNS = [
    "map",
    "map_sigma",
    "mean",
    "sd",
    "q16",
    "q50",
    "q84",
    "truth",
    "map_minus_mean_sigma",
    "map_minus_truth_sigma",
    "mean_minus_truth_sigma",
]


def difference_in_sd(value: float, mean: float, sd: float) -> float:
    """``(value - mean) / sd``, or NaN when ``sd`` is not a positive number.

    Parameters
    ----------
    value
        A point estimate (the MAP, or a true value).
    mean, sd
        Posterior mean and standard deviation of the same parameter (same units).
    """
    value, mean, sd = float(value), float(mean), float(sd)
    return (value - mean) / sd if np.isfinite(sd) and sd > 0 else float("nan")


@dataclasses.dataclass(frozen=True)
class FitComparison:
    """Per-parameter comparison of a MAP (+ Laplace) fit and a sampled posterior.

    Attributes
    ----------
    rows
        ``{parameter: {column: value}}`` with the columns ``map``, ``map_sigma`` (Laplace),
        ``mean``, ``sd``, ``q16``, ``q50``, ``q84`` (posterior), ``truth`` (NaN if unknown) and
        the differences ``map_minus_mean_sigma`` ((MAP - mean) / sd),
        ``map_minus_truth_sigma`` ((MAP - truth) / map_sigma) and ``mean_minus_truth_sigma``
        ((mean - truth) / sd).
    chi2_map
        chi^2 of the MAP model image over the unmasked pixels.
    chi2_posterior
        Median over posterior draws of the chi^2 (NaN when the posterior has no ``chi2``).
    num_pixels
        Unmasked pixels (for reduced chi^2).
    """

    rows: dict[str, dict[str, float]]
    chi2_map: float
    chi2_posterior: float
    num_pixels: int

    def to_dataframe(self) -> pd.DataFrame:
        """The table as a DataFrame (one row per parameter)."""
        return pd.DataFrame.from_dict(self.rows, orient="index", columns=_COLUMNS)

    def to_string(self, float_format: str = "{:.5g}") -> str:
        """A fixed-width table followed by the chi^2 lines."""
        df = self.to_dataframe()
        text = df.to_string(float_format=lambda v: float_format.format(v))
        n = max(self.num_pixels, 1)
        return (
            f"{text}\nchi2 MAP = {self.chi2_map:.1f} (reduced {self.chi2_map / n:.3f}); "
            f"chi2 posterior median = {self.chi2_posterior:.1f} "
            f"(reduced {self.chi2_posterior / n:.3f}); {self.num_pixels} pixels"
        )

    def __str__(self) -> str:
        return self.to_string()


def compare_fits(
    map_result: MAPResult,
    posterior: Any,
    truth: Mapping[str, Any] | None = None,
    var_names: Sequence[str] | None = None,
) -> FitComparison:
    """Compare the BFGS/Laplace answer with a posterior sample.

    Parameters
    ----------
    map_result
        Result of :func:`vaelens.infer.map_fit`.
    posterior
        InferenceData from :func:`~vaelens.infer.nuts`, :func:`~vaelens.infer.hmc` or
        :func:`~vaelens.infer.svi`.
    truth
        Known parameter values (e.g. from :func:`vaelens.models.simulate_lens`).
    var_names
        Parameters to compare; default every scalar posterior variable known to both fits.

    Returns
    -------
    FitComparison
    """
    post = posterior.posterior
    values = map_result.summary_values()
    sigmas = map_result.sigma
    names = (
        list(var_names)
        if var_names is not None
        else [n for n in scalar_variables(posterior) if n in values and not n.endswith("_raw")]
    )
    truth = dict(truth or {})
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        draws = np.asarray(post[name]).ravel()
        mean, sd = float(np.mean(draws)), float(np.std(draws, ddof=1)) if draws.size > 1 else 0.0
        q16, q50, q84 = (float(v) for v in np.percentile(draws, [16, 50, 84]))
        m, ms = float(values[name]), float(sigmas.get(name, np.nan))
        known = name in truth and np.ndim(truth[name]) == 0
        t = float(np.asarray(truth[name])) if known else np.nan

        rows[name] = {
            "map": m,
            "map_sigma": ms,
            "mean": mean,
            "sd": sd,
            "q16": q16,
            "q50": q50,
            "q84": q84,
            "truth": t,
            "map_minus_mean_sigma": difference_in_sd(m, mean, sd),
            "map_minus_truth_sigma": difference_in_sd(m, t, ms),
            "mean_minus_truth_sigma": difference_in_sd(mean, t, sd),
        }
    stats = getattr(posterior, "sample_stats", None)
    chi2_post = (
        float(np.median(np.asarray(stats["chi2"])))
        if stats is not None and "chi2" in stats
        else np.nan
    )
    return FitComparison(rows, map_result.chi2, chi2_post, map_result.num_pixels)
