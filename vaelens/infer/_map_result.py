"""The result of a multi-start MAP fit and its Laplace draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from vaelens.infer.flat import FlatModel, summary_vector

__all__ = ["MAPResult"]


@dataclasses.dataclass(frozen=True, eq=False)
class MAPResult:
    """Result of :func:`vaelens.infer.map_fit` (frozen).

    Attributes
    ----------
    params
        Constrained sample sites and deterministic sites (e.g. ``e1``, ``source``) at the best
        start.
    unconstrained
        The best point as a dictionary of unconstrained site values.
    x
        The best point as the flat unconstrained vector.
    loss
        ``U(x*)``, the negative log joint density at the best point.
    losses, converged, num_iterations
        Final loss, convergence flag and iteration count of every start (``(num_starts,)``).
    final_points
        ``(num_starts, dim)`` final unconstrained points of all starts.
    cov_unconstrained
        Laplace covariance ``H^-1`` of the flat unconstrained parameters.
    labels, cov
        Labels (``theta_E``, ``z[3]``...) and Laplace covariance of the constrained and derived
        summary parameters (delta method).
    chi2, num_pixels
        chi^2 of the best fit over the unmasked pixels and their number.
    method, timings
        Optimiser name; wall times in seconds (``compile``, ``optimize``, ``laplace``,
        ``total``).
    """

    params: dict[str, np.ndarray]
    unconstrained: dict[str, np.ndarray]
    x: np.ndarray
    loss: float
    losses: np.ndarray
    converged: np.ndarray
    num_iterations: np.ndarray
    final_points: np.ndarray
    cov_unconstrained: np.ndarray
    labels: tuple[str, ...]
    cov: np.ndarray
    chi2: float
    num_pixels: int
    method: str
    timings: dict[str, float]
    flat_model: FlatModel = dataclasses.field(repr=False)
    model: Callable = dataclasses.field(repr=False)
    model_args: tuple = dataclasses.field(repr=False, default=())
    model_kwargs: dict = dataclasses.field(repr=False, default_factory=dict)

    @property
    def sigma(self) -> dict[str, float]:
        """Laplace standard deviation of every summary parameter label."""
        sd = np.sqrt(np.clip(np.diag(self.cov), 0.0, None))
        return dict(zip(self.labels, sd.tolist(), strict=True))

    @property
    def sigma_unconstrained(self) -> np.ndarray:
        """Laplace standard deviations of the flat unconstrained parameters."""
        return np.sqrt(np.diag(self.cov_unconstrained))

    def summary_values(self) -> dict[str, float]:
        """Best-fit value of every summary parameter label."""
        vec = np.asarray(summary_vector(self.params))
        return dict(zip(self.labels, vec.tolist(), strict=True))

    def laplace_draws(self, key: jax.Array, num_samples: int) -> dict[str, np.ndarray]:
        """Constrained latent-site draws ``(num_samples, ...)`` from the Laplace approximation."""
        w, v = np.linalg.eigh(0.5 * (self.cov_unconstrained + self.cov_unconstrained.T))
        chol = v * np.sqrt(np.clip(w, 0.0, None))
        eps = np.asarray(jax.random.normal(key, (num_samples, len(self.x))), dtype=np.float64)
        flat = self.x[None, :] + eps @ chol.T
        fm = self.flat_model
        latent_names = list(self.unconstrained)

        def one(xi, arrays):
            out = fm.constrain_with(fm.unravel(xi), arrays)
            return {k: out[k] for k in latent_names}

        flat = np.asarray(flat, dtype=np.asarray(self.x).dtype)
        return jax.device_get(jax.jit(jax.vmap(one, in_axes=(0, None)))(flat, fm.arrays))

    def to_inference_data(
        self,
        key: jax.Array | None = None,
        *,
        num_samples: int = 0,
        num_chains: int = 1,
        log_likelihood: bool = True,
        posterior_predictive: bool = False,
    ):
        """ArviZ InferenceData of the fit.

        With ``num_samples=0`` the posterior group holds the MAP point alone (one chain, one
        draw); otherwise ``num_samples`` independent draws of the Laplace approximation
        (needs ``key``), reshaped to ``num_chains`` chains of ``num_samples // num_chains``
        draws. A poorly constrained direction can throw the raw ellipticities of a draw
        (``e1_raw, e2_raw`` and their prefixed versions) far out, where ``tanh(|u|)`` rounds
        to ``|e| = 1`` in float32 and the profiles reject it, so ``|u|`` is capped at 3
        (``|e| <= 0.995``; the capped pair is stored in float64).

        ``attrs`` hold the method (``map_<optimiser>`` or ``map_<optimiser>_laplace``), the
        MAP loss and chi^2, the number of starts and the timings.
        """
        from vaelens.infer.convert import to_inference_data

        if num_chains < 1:
            raise ValueError(f"num_chains must be positive, got {num_chains}")
        if num_samples < 0 or num_samples % num_chains:
            raise ValueError(
                f"num_samples ({num_samples}) must be a non-negative multiple of num_chains "
                f"({num_chains})"
            )
        key = jax.random.PRNGKey(0) if key is None else key
        k_draw, k_eval = jax.random.split(key)
        latent_names = list(self.unconstrained)
        if num_samples > 0:
            draws = _cap_raw_ellipticities(dict(self.laplace_draws(k_draw, num_samples)))
            samples = {
                k: np.asarray(v).reshape(num_chains, num_samples // num_chains, *np.shape(v)[1:])
                for k, v in draws.items()
            }
        else:
            samples = {k: np.asarray(self.params[k])[None, None] for k in latent_names}
        attrs = {
            "method": f"map_{self.method}" + ("_laplace" if num_samples else ""),
            "map_loss": self.loss,
            "map_chi2": self.chi2,
            "num_starts": len(self.losses),
            "timing": self.timings,
        }
        return to_inference_data(
            self.model,
            self.model_args,
            self.model_kwargs,
            samples,
            key=k_eval,
            log_likelihood=log_likelihood,
            posterior_predictive=posterior_predictive,
            attrs=attrs,
        )


def _cap_raw_ellipticities(draws: dict, max_norm: float = 3.0) -> dict:
    """Scale every raw ellipticity pair ``(*e1_raw, *e2_raw)`` to ``|u| <= max_norm``."""
    for name in [k for k in draws if k.endswith("e1_raw")]:
        other = name.replace("e1_raw", "e2_raw")
        if other not in draws:
            continue
        u1, u2 = np.asarray(draws[name], float), np.asarray(draws[other], float)
        scale = np.minimum(1.0, max_norm / np.maximum(np.hypot(u1, u2), 1e-30))
        draws[name], draws[other] = u1 * scale, u2 * scale
    return draws
