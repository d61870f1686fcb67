"""Convergence diagnostics of MCMC output, with explicit warnings, and the reduced chi^2.

:func:`diagnostics` summarises the rank-normalised split R-hat, bulk and tail effective sample
sizes (Vehtari et al. 2021, Bayesian Analysis 16, 667), the number of divergent transitions and
the energy Bayesian fraction of missing information (E-BFMI, Betancourt 2016,
arXiv:1604.00695), and warns (:class:`ConvergenceWarning`) when R-hat > 1.01, a bulk or tail
ESS < 400, any transition diverged, or E-BFMI < 0.3.

Draws that are independent by construction -- those of an SVI guide (``idata.attrs["method"]``
``"svi_*"``) or of the Laplace approximation at the MAP (``"map_*"``) -- are not a Markov chain:
R-hat and ESS do not apply to them, so they are neither computed nor checked.

:func:`reduced_chi2` is the one definition of the reduced chi^2 used by the figures and the
text summaries: chi^2 / (N_pix - N_par) over the unmasked pixels.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

__all__ = [
    "ConvergenceWarning",
    "Diagnostics",
    "diagnostics",
    "independent_draws",
    "reduced_chi2",
    "scalar_variables",
]

#: Prefixes of ``idata.attrs["method"]`` whose draws are independent (not a Markov chain).
INDEPENDENT_METHODS: tuple[str, ...] = ("svi_", "map_")


class ConvergenceWarning(UserWarning):
    """An MCMC run failed a convergence check (R-hat, ESS, divergences, E-BFMI)."""


def scalar_variables(idata: Any, group: str = "posterior") -> list[str]:
    """Names of the scalar (per draw) variables of a group, in storage order."""
    ds = getattr(idata, group)
    return [name for name, da in ds.data_vars.items() if set(da.dims) <= {"chain", "draw"}]


def independent_draws(idata: Any) -> bool:
    """True when the posterior draws of ``idata`` are independent by construction.

    That is the case for the draws of an SVI guide (``attrs["method"]`` ``"svi_<guide>"``, set by
    :func:`vaelens.infer.svi`) and of the Laplace approximation at the MAP (``"map_<solver>"``
    or ``"map_<solver>_laplace"``, set by :meth:`vaelens.infer.MAPResult.to_inference_data`).
    MCMC output (``"nuts"``, ``"hmc"``) and InferenceData without a method are treated as
    Markov chains.
    """
    method = str(getattr(idata, "attrs", {}).get("method", ""))
    return method.startswith(INDEPENDENT_METHODS)


def reduced_chi2(
    data: Any,
    model: Any,
    sigma: Any,
    mask: Any = None,
    *,
    num_parameters: int = 0,
) -> tuple[float, int, float]:
    """chi^2 of a model image and its reduced value chi^2 / (N_pix - N_par).

    Parameters
    ----------
    data, model
        (ny, nx) observed and model images, same units.
    sigma
        (ny, nx) or scalar noise standard deviation per pixel, same units.
    mask
        (ny, nx) boolean, True where the pixel enters the likelihood; all pixels when None.
    num_parameters
        N_par, the number of fitted parameters (0 gives chi^2 per pixel).

    Returns
    -------
    chi2, num_pixels, reduced
        sum over unmasked pixels of ((data - model) / sigma)^2, N_pix, and
        chi2 / (N_pix - N_par) (NaN when N_pix <= N_par: no degrees of freedom are left).
    """
    data = np.asarray(data, dtype=float)
    model = np.asarray(model, dtype=float)
    if data.shape != model.shape:
        raise ValueError(f"data {data.shape} and model {model.shape} differ in shape")
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), data.shape)
    inside = np.ones(data.shape, bool) if mask is None else np.asarray(mask, bool)
    if inside.shape != data.shape:
        raise ValueError(f"mask {inside.shape} and data {data.shape} differ in shape")
    if num_parameters < 0:
        raise ValueError(f"num_parameters must be >= 0, got {num_parameters}")
    resid = (data[inside] - model[inside]) / sigma[inside]
    chi2 = float(np.sum(resid**2))
    n_pix = int(inside.sum())
    dof = n_pix - int(num_parameters)
    return chi2, n_pix, (chi2 / dof if dof > 0 else float("nan"))


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Summary of a run's convergence.

    Attributes
    ----------
    summary
        Per parameter: mean, sd, HDI, MCSE, ``ess_bulk``, ``ess_tail``, ``r_hat``; for
        independent draws only mean, sd and HDI.
    num_divergent, num_draws
        Divergent transitions after warm-up, and total draws.
    bfmi
        E-BFMI per chain (empty without energies).
    problems
        Human-readable failed checks (empty when all pass).
    independent
        True when the draws are independent by construction (SVI guide or Laplace draws, see
        :func:`independent_draws`): R-hat and ESS were not computed.
    method
        ``idata.attrs["method"]`` (empty when unset).
    """

    summary: pd.DataFrame
    num_divergent: int
    num_draws: int
    bfmi: np.ndarray
    problems: tuple[str, ...]
    independent: bool = False
    method: str = ""

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def to_string(self) -> str:
        """The summary table followed by the checks."""
        lines = [self.summary.to_string()]
        if self.independent:
            lines.append(
                f"{self.num_draws} independent draws ({self.method}): R-hat and ESS do not apply"
            )
            return "\n".join(lines)
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
        ``diverging`` and ``energy``). When its draws are independent (``attrs["method"]``
        starting with ``"svi_"`` or ``"map_"``) the result holds the summary statistics alone,
        marked ``independent``, and no check is run.
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
    post = idata.posterior
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    method = str(getattr(idata, "attrs", {}).get("method", ""))
    if independent_draws(idata):
        summary = az.summary(idata, var_names=names, kind="stats", round_to="none")
        return Diagnostics(
            summary=summary,
            num_divergent=0,
            num_draws=int(n_chains * n_draws),
            bfmi=np.zeros(0),
            problems=(),
            independent=True,
            method=method,
        )
    summary = az.summary(idata, var_names=names, kind="all", round_to="none")
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
        method=method,
    )
