"""Flax nnx beta-VAE whose decoder is the source-galaxy model of vaelens.

Public names: :class:`VAE`, :class:`VAEConfig`, :func:`load_pretrained`, :func:`train`,
:func:`save_weights`, :func:`load_weights`. Images are 64x64, unit total flux, at the pixel
scale of the model card (:attr:`VAE.pixel_scale`).
"""

from vaelens.vae.config import VAEConfig
from vaelens.vae.network import VAE
from vaelens.vae.train import TrainResult, train
from vaelens.vae.weights import (
    WeightsError,
    load_model_card,
    load_pretrained,
    load_vae_file,
    load_weights,
    save_weights,
)

__all__ = [
    "VAE",
    "TrainResult",
    "VAEConfig",
    "WeightsError",
    "load_model_card",
    "load_pretrained",
    "load_vae_file",
    "load_weights",
    "save_weights",
    "train",
]
