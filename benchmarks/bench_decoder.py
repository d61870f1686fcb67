"""The decoder the inference benchmarks fit with (imported by them from this folder)."""

from __future__ import annotations

import logging

log = logging.getLogger("vaelens.benchmarks")

__all__ = ["get_decoder"]


def get_decoder():
    """The pretrained decoder if available, else a random-weight one; and its description."""
    try:
        from vaelens.vae import load_pretrained

        return load_pretrained().decoder_function(), "pretrained"
    except Exception as err:  # noqa: BLE001  (any failure -> documented fallback)
        from flax import nnx

        from vaelens.vae import VAE, VAEConfig

        log.warning("pretrained VAE unavailable (%s); using random weights", err)
        return VAE(VAEConfig.default(), rngs=nnx.Rngs(0)).decoder_function(), "random-weight"
