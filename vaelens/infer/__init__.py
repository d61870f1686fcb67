"""Inference over NumPyro models: MAP (BFGS / L-BFGS + Laplace), SVI, NUTS / HMC.

:func:`fit_lens` is the lens-fitting recipe (what ``vaelens fit`` runs): staged multi-start
MAP, the capped Laplace covariance, then the posterior by the chosen method, as a
:class:`LensFit` that writes the usual output folder.

Every method works on the model's unconstrained parameters, starts from (or is) the multi-start
MAP, and returns ArviZ InferenceData (:func:`svi`, :func:`nuts`, :func:`hmc`) or a frozen
:class:`MAPResult` convertible to it (:func:`cap_covariance` regularises its Laplace
covariance for use as a sampler metric). :func:`diagnostics` checks convergence and warns,
:func:`compare_fits` sets the BFGS answer beside the posterior, :func:`reconstruct` gives mean
and standard-deviation maps of the source and model image.
"""

from vaelens.infer._laplace import cap_covariance, hessian_fd, laplace_covariance
from vaelens.infer._map_result import MAPResult
from vaelens.infer._solvers import bfgs_solver, lbfgs_solver
from vaelens.infer.compare import FitComparison, compare_fits
from vaelens.infer.convert import package_versions, to_inference_data
from vaelens.infer.diagnostics import ConvergenceWarning, Diagnostics, diagnostics
from vaelens.infer.fit_lens import LensFit, fit_lens
from vaelens.infer.flat import FlatModel, flatten_model
from vaelens.infer.map import map_fit, staged_map_fit
from vaelens.infer.mcmc import gauss_newton_covariance, hmc, nuts
from vaelens.infer.reconstruction import Reconstruction, reconstruct
from vaelens.infer.svi import svi
from vaelens.optim import BFGSState, bfgs_minimize

__all__ = [
    "BFGSState",
    "ConvergenceWarning",
    "Diagnostics",
    "FitComparison",
    "FlatModel",
    "LensFit",
    "MAPResult",
    "Reconstruction",
    "bfgs_minimize",
    "bfgs_solver",
    "cap_covariance",
    "compare_fits",
    "diagnostics",
    "fit_lens",
    "flatten_model",
    "gauss_newton_covariance",
    "hessian_fd",
    "hmc",
    "laplace_covariance",
    "lbfgs_solver",
    "map_fit",
    "nuts",
    "package_versions",
    "reconstruct",
    "staged_map_fit",
    "svi",
    "to_inference_data",
]
