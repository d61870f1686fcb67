"""The default source decoder: the pretrained VAE, loaded once on first use."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

__all__ = ["Decoder", "default_decoder", "resolve_decoder"]

#: A decoder maps a latent vector ``z`` of shape ``(latent_dim,)`` to a non-negative unit-flux
#: ``(64, 64)`` image at the VAE's native pixel scale (0.03 arcsec/px).
Decoder = Callable[[jax.Array], jax.Array]


@functools.lru_cache(maxsize=1)
def default_decoder() -> Decoder:
    """``load_pretrained().decoder_function()``, cached.

    Raises
    ------
    RuntimeError
        If the pretrained weights are not available (pass a decoder explicitly, e.g.
        ``VAE(VAEConfig.default(), rngs=nnx.Rngs(0)).decoder_function()``).
    """
    try:
        from vaelens.vae import load_pretrained

        return load_pretrained().decoder_function()
    except (ImportError, OSError, RuntimeError) as err:  # WeightsError is a RuntimeError
        raise RuntimeError(
            "no pretrained VAE decoder is available; pass decoder= explicitly "
            f"(e.g. VAE(VAEConfig.default(), rngs=nnx.Rngs(0)).decoder_function()): {err}"
        ) from err


def resolve_decoder(decoder: Decoder | None) -> Decoder:
    """``decoder`` itself, or the pretrained default when None."""
    return default_decoder() if decoder is None else decoder
