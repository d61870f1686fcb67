"""Source and model-image reconstructions with uncertainty from a posterior sample."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Reconstruction", "reconstruct"]


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """Posterior mean and standard deviation maps.

    Attributes
    ----------
    mean, std
        ``{name: (ny, nx) array}`` for every reconstructed image variable (``source``: the
        decoded source, flux per source pixel; ``model_image``: the noise-free model, flux per
        pixel).
    num_draws
        Draws averaged.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    num_draws: int

    def snr(self, name: str = "source") -> np.ndarray:
        """Pixel-wise ``mean / std`` (inf where the std vanishes)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.mean[name] / self.std[name]


def reconstruct(idata: Any, var_names: Sequence[str] = ("source", "model_image")) -> Reconstruction:
    """Mean and standard deviation over all chains and draws of image-valued variables.

    Parameters
    ----------
    idata
        InferenceData whose posterior holds the deterministic images (``source`` always for a
        VAE source; ``model_image`` when the model was run with ``save_model_image=True``).
    var_names
        Variables to reconstruct; missing ones are skipped, but at least one must exist.

    Returns
    -------
    Reconstruction

    Raises
    ------
    ValueError
        If none of ``var_names`` is in the posterior.
    """
    post = idata.posterior
    present = [n for n in var_names if n in post]
    if not present:
        raise ValueError(f"none of {list(var_names)} is in the posterior")
    mean, std = {}, {}
    for name in present:
        arr = np.asarray(post[name])
        flat = arr.reshape((-1, *arr.shape[2:]))
        mean[name] = flat.mean(axis=0)
        std[name] = flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else np.zeros_like(flat[0])
    n = int(post.sizes["chain"] * post.sizes["draw"])
    return Reconstruction(mean, std, n)
