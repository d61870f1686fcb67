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
        VAE source; ``model_image`` when the model was run with ``save_model_image=True``), per
        draw or as the ``posterior_moments`` a sampler accumulated.
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
    from vaelens.infer.chunked import image_moments

    post = idata.posterior
    mean, std = {}, {}
    n = int(post.sizes["chain"] * post.sizes["draw"])
    for name in var_names:
        moments = image_moments(idata, name)  # per-draw images or accumulated moments
        if moments is None:
            continue
        mean[name], sd, count = moments
        std[name] = sd * np.sqrt(count / (count - 1)) if count > 1 else np.zeros_like(sd)
    if not mean:
        raise ValueError(f"none of {list(var_names)} is in the posterior")
    return Reconstruction(mean, std, n)
