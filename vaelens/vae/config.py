"""Configuration of the convolutional beta-VAE.

A :class:`VAEConfig` fixes the architecture (and the default training loss weights) of
:class:`vaelens.vae.VAE`. It is a frozen dataclass, so it can be printed, compared, hashed,
stored in the JSON model card and rebuilt from it (:meth:`VAEConfig.to_dict`,
:meth:`VAEConfig.from_dict`).
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture and loss settings of the galaxy VAE.

    Parameters
    ----------
    image_size
        Side of the square images in pixels (64; the decoder's upsampling stages assume
        ``image_size == base_size * 2**len(decoder_channels) * pixel_shuffle``).
    latent_dim
        Number of latent parameters ``z`` (64).
    encoder_channels
        Output channels of the encoder's stride-2 convolution stages (64 -> 32 -> 16 -> 8 px).
    encoder_extra_convs
        If True each encoder stage adds a stride-1 3x3 convolution after its stride-2 one.
    encoder_dense
        Width of the dense layer between the encoder's feature map and ``(mean, log_var)``.
    base_size
        Side of the decoder's first feature map, produced by a dense layer from ``z``.
    base_channels
        Channels of that first feature map.
    base_convs
        Number of 3x3 convolutions applied at the base resolution before upsampling.
    decoder_channels
        Output channels of the decoder's (nearest 2x upsample + 3x3 conv) stages.
    pixel_shuffle
        Factor of the final sub-pixel (pixel-shuffle) output layer: the last convolution runs at
        ``image_size / pixel_shuffle`` px with ``pixel_shuffle**2`` output channels.
    intensity_scale
        Internal multiplier of the unit-flux images (pixel values ~1e-3) so that the network sees
        values of order one; hidden inside ``encode`` / ``decode``.
    normalize_flux
        If True the decoded image is divided by its pixel sum, so every decoded image has total
        flux exactly 1 (flux is then carried by an amplitude outside the network).
    beta
        Weight of the KL divergence in the beta-VAE loss.
    sigma_floor
        Noise floor (standard deviation, in units of ``intensity_scale`` x unit-flux pixel values)
        added in quadrature to the per-pixel noise of the training images in the Gaussian
        likelihood; it is the whole noise of noise-free synthetic images.
    pixel_scale
        Pixel scale of the training images in arcsec, i.e. of the decoded images; None when
        unknown. :func:`vaelens.vae.load_weights` fills it from the model card's ``data``
        section when the card's config does not record it.
    """

    image_size: int = 64
    latent_dim: int = 64
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    encoder_dense: int = 256
    encoder_extra_convs: bool = True
    base_size: int = 8
    base_channels: int = 32
    base_convs: int = 1
    decoder_channels: tuple[int, ...] = (32,)
    pixel_shuffle: int = 4
    intensity_scale: float = 1000.0
    normalize_flux: bool = True
    beta: float = 1.0
    sigma_floor: float = 0.05
    pixel_scale: float | None = None

    def __post_init__(self) -> None:
        expected = self.base_size * 2 ** len(self.decoder_channels) * self.pixel_shuffle
        if expected != self.image_size:
            raise ValueError(
                f"decoder geometry gives {expected} px (base_size * 2**len(decoder_channels) * "
                f"pixel_shuffle) but image_size is {self.image_size}"
            )
        if self.image_size % 2 ** len(self.encoder_channels):
            raise ValueError("image_size must be divisible by 2**len(encoder_channels)")
        if self.latent_dim < 1 or self.intensity_scale <= 0 or self.sigma_floor <= 0:
            raise ValueError("latent_dim, intensity_scale and sigma_floor must be positive")
        if self.pixel_scale is not None and not self.pixel_scale > 0:
            raise ValueError(
                f"pixel_scale must be positive (arcsec) or None, got {self.pixel_scale}"
            )

    @classmethod
    def default(cls) -> VAEConfig:
        """Configuration of the shipped pretrained model (fast decoder, 64 latents)."""
        return cls()

    @classmethod
    def tiny(cls) -> VAEConfig:
        """Very small network for unit tests (same image size and latent dimension)."""
        return cls(
            encoder_channels=(4, 8, 8),
            encoder_extra_convs=False,
            encoder_dense=32,
            base_size=8,
            base_channels=8,
            base_convs=0,
            decoder_channels=(8,),
            pixel_shuffle=4,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary of the fields."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
