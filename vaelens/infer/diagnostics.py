"""Convergence diagnostics of MCMC output, with explicit warnings.

:func:`diagnostics` summarises the rank-normalised split R-hat, bulk and tail effective sample
sizes (Vehtari et al. 2021, Bayesian Analysis 16, 667), the number of divergent transitions and
the energy Bayesian fraction of missing information (E-BFMI, Betancourt 2016,
arXiv:1604.00695), and warns (:class:`ConvergenceWarning`) when R-hat > 1.01, a bulk or tail
ESS < 400, any transition diverged, or E-BFMI < 0.3.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

__all__ = ["ConvergenceWarning", "Diagnostics", "diagnostics", "scalar_variables"]


class ConvergenceWarning(UserWarning):
    """An MCMC run failed a convergence check (R-hat, ESS, divergences, E-BFMI)."""


def scalar_variables(idata: Any, group: str = "posterior") -> list[str]:
    """Names of the scalar (per draw) variables of a group, in storage order."""
    ds = getattr(idata, group)
    return [
        name for name, da in ds.data_vars.items() if set(da.dims) <= {"chain", "draw"}
    ]


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Summary of a run's convergence.

    Attributes
    ----------
    summary
        Per parameter: mean, sd, HDI, MCSE, ``ess_bulk``, ``ess_tail``, ``r_hat``.
    num_divergent, num_draws
        Divergent transitions after warm-up, and total draws.
    bfmi
        E-BFMI per chain (empty without energies).
    problems
        Human-readable failed checks (empty when all pass).
    """

    summary: pd.DataFrame
    num_divergent: int
    num_draws: int
    bfmi: np.ndarray
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def to_string(self) -> str:
        """The summary table followed by the checks."""
        lines = [self.summary.to_string()]
        lines.append(f"divergences: {self.num_divergent} / {self.num_draws}")
        if self.bfmi.size:
            lines.append("E-BFMI per chain: " + ", ".join(f"{b:.2f}" for b in self.bfmi))
        lines += [f"WARNING: {p}" for p in self.problems] or ["all convergence checks passed"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_string()


def diagnostics(
    idata: Any,
    var_names: Sequence[str] | None = None,
    *,
    rhat_max: float = 1.01,
    ess_min: float = 400.0,
    bfmi_min: float = 0.3,
    warn: bool = True,
) -> Diagnostics:
    """Convergence summary of an InferenceData, warning on failed checks.

    Parameters
    ----------
    idata
        ArviZ InferenceData with a ``posterior`` (and ideally ``sample_stats`` with
        ``diverging`` and ``energy``).
    var_names
        Variables to check; default every scalar posterior variable (the lens and placement
        parameters; the latent vector ``z`` and images are left out -- pass them explicitly).
    rhat_max, ess_min, bfmi_min
        Thresholds of the checks (R-hat needs at least two chains).
    warn
        Emit one :class:`ConvergenceWarning` listing every failed check.

    Returns
    -------
    Diagnostics
    """
    names = list(var_names) if var_names is not None else scalar_variables(idata)
    if not names:
        raise ValueError("no variables to diagnose")
    summary = az.summary(idata, var_names=names, kind="all", round_to="none")
    post = idata.posterior
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    problems: list[str] = []
    if n_chains > 1:
        bad = summary.index[summary["r_hat"] > rhat_max].tolist()
        if bad:
            worst = summary["r_hat"].max()
            problems.append(
                f"R-hat > {rhat_max} for {len(bad)} parameter(s) ({', '.join(bad[:8])}); "
                f"max R-hat = {worst:.3f}: the chains have not mixed"
            )
    for col in ("ess_bulk", "ess_tail"):
        bad = summary.index[summary[col] < ess_min].tolist()
        if bad:
            problems.append(
                f"{col} < {ess_min:.0f} for {len(bad)} parameter(s) ({', '.join(bad[:8])}); "
                f"min = {summary[col].min():.0f}: run longer chains"
            )
    num_div = 0
    bfmi = np.zeros(0)
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        num_div = int(np.asarray(stats["diverging"]).sum())
        if num_div:
            problems.append(
                f"{num_div} divergent transition(s) after warm-up: the posterior geometry is "
                "not sampled reliably (increase target_accept_prob or reparameterise)"
            )
    if stats is not None and "energy" in stats:
        bfmi = np.atleast_1d(np.asarray(az.bfmi(idata)))
        low = np.flatnonzero(bfmi < bfmi_min)
        if low.size:
            problems.append(
                f"E-BFMI < {bfmi_min} in chain(s) {low.tolist()}: poor exploration of the "
                "energy distribution (adapt the mass matrix longer)"
            )
    if warn and problems:
        warnings.warn(
            "MCMC convergence checks failed:\n  " + "\n  ".join(problems),
            ConvergenceWarning,
            stacklevel=2,
        )
    return Diagnostics(
        summary=summary,
        num_divergent=num_div,
        num_draws=int(n_chains * n_draws),
        bfmi=bfmi,
        problems=tuple(problems),
    )
