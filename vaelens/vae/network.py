"""Convolutional beta-VAE for 64x64 galaxy stamps (Flax nnx).

The decoder is the source-galaxy model of the lens code, evaluated at every optimiser and sampler
step, so it is built for speed: a dense layer maps ``z`` to a small ``8 x 8 x 32`` feature map
(with one 3x3 convolution there), one (nearest-neighbour 2x upsample + 3x3 convolution) stage
brings it to ``16 x 16`` and a sub-pixel convolution (16 channels, pixel shuffle x4; Shi et al.
2016, arXiv:1609.05158) produces the ``64 x 64`` image. The decoder's convolutions are evaluated
as sums of per-tap matmuls (:func:`conv3x3_same`; the upsample + convolution stage at the low
resolution, :func:`upsample_conv3x3_same`), which keeps them and their gradients fast inside
``lax.while_loop`` / ``lax.scan`` bodies (optimisers, samplers) on CPU, for one image and for
batches (batch folded into the matmul rows).
A softplus keeps the image non-negative and, by default, the image is divided by its pixel sum.

Image convention (both directions): images are normalised like the training stamps -- centred on
the light, total flux (pixel sum) ~= 1, at the pixel scale of the training data
(:attr:`VAE.pixel_scale`, read from the model card; COSMOS for the shipped model). The internal
intensity scaling is hidden here.

References
----------
Kingma & Welling (2014), arXiv:1312.6114 (VAE); Higgins et al. (2017), ICLR (beta-VAE);
Lanusse et al. (2021), MNRAS 504, 5543 (deep generative models of galaxy images).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vaelens.vae.config import VAEConfig

__all__ = [
    "VAE",
    "Decoder",
    "Encoder",
    "conv3x3_same",
    "pixel_shuffle",
    "upsample_conv3x3_same",
    "upsample_nearest",
]


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of a ``(B, H, W, C)`` feature map by an integer factor."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, factor, w, factor, c))
    return x.reshape(b, h * factor, w * factor, c)


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Rearrange ``(B, H, W, factor**2)`` into a ``(B, H*factor, W*factor)`` image.

    Channel ``i * factor + j`` of input pixel ``(h, w)`` becomes output pixel
    ``(h * factor + i, w * factor + j)`` (sub-pixel convolution, arXiv:1609.05158).
    """
    b, h, w, _ = x.shape
    x = x.reshape(b, h, w, factor, factor)
    return x.transpose(0, 1, 3, 2, 4).reshape(b, h * factor, w * factor)


def _shifted(xp: jax.Array, di: int, dj: int, h: int, w: int) -> jax.Array:
    """``x[:, r + di, c + dj, :]`` for all ``(r, c)`` of an ``h x w`` map, from ``x`` zero-padded
    by one pixel on each side (``xp``)."""
    return xp[:, 1 + di : 1 + di + h, 1 + dj : 1 + dj + w, :]


def conv3x3_same(x: jax.Array, conv: nnx.Conv) -> jax.Array:
    """3x3 'SAME' convolution of ``(B, H, W, C)`` with the weights of ``conv``, as 9 matmuls.

    Numerically the cross-correlation of ``nnx.Conv`` (``lax.conv_general_dilated``) up to
    float round-off, written as the sum over the 9 taps of (shifted input, batch and pixels
    folded into the rows) @ (``C x C_out`` kernel slice). On CPU XLA's native convolution and its
    gradient are 5-10x slower inside ``lax.while_loop`` / ``lax.scan`` bodies (optimisers,
    NUTS), and an im2col concatenation becomes memory bound for batches; these plain matmuls
    stay fast for one image and for large batches alike.
    """
    kernel = conv.kernel[...].astype(x.dtype)
    kh, kw, c_in, c_out = kernel.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"conv3x3_same needs a 3x3 kernel, got {kh}x{kw}")
    b, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(
        _shifted(xp, i - 1, j - 1, h, w).reshape(-1, c_in) @ kernel[i, j]
        for i in range(3)
        for j in range(3)
    )
    out = out.reshape(b, h, w, c_out)
    if conv.bias is not None:
        out = out + conv.bias[...][None, None, None, :]
    return out


# Nearest 2x upsampling then a 3x3 convolution: output row 2r + a sees upsampled rows
# 2r + a - 1, 2r + a, 2r + a + 1, i.e. input rows r + offset with these kernel rows summed.
_UPSAMPLE_TAPS = {0: {-1: (0,), 0: (1, 2)}, 1: {0: (0, 1), 1: (2,)}}


def upsample_conv3x3_same(x: jax.Array, conv: nnx.Conv) -> jax.Array:
    """``conv3x3_same(upsample_nearest(x, 2), conv)`` computed at the input resolution.

    Each of the four output phases ``(a, b)`` (output pixel ``(2r + a, 2c + b)``) is a 2x2
    convolution of the input ``(B, H, W, C)`` whose taps are sums of the 3x3 kernel taps, so the
    result equals the upsample-then-convolve form up to float round-off with 16 instead of 36
    ``C x C_out`` matmuls per input pixel and no upsampled copy.
    """
    kernel = conv.kernel[...].astype(x.dtype)
    kh, kw, c_in, c_out = kernel.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"upsample_conv3x3_same needs a 3x3 kernel, got {kh}x{kw}")
    b, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = []
    for a in (0, 1):
        for bb in (0, 1):
            out = 0
            for di, rows in _UPSAMPLE_TAPS[a].items():
                for dj, cols in _UPSAMPLE_TAPS[bb].items():
                    k = sum(kernel[i, j] for i in rows for j in cols)
                    out = out + _shifted(xp, di, dj, h, w).reshape(-1, c_in) @ k
            phases.append(out)
    out = jnp.stack(phases, axis=1).reshape(b, h, w, 2, 2, c_out)
    out = out.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c_out)
    if conv.bias is not None:
        out = out + conv.bias[...][None, None, None, :]
    return out


def _flatten_batch(x: jax.Array, n_core: int) -> tuple[jax.Array, tuple[int, ...]]:
    batch_shape = x.shape[: x.ndim - n_core]
    return x.reshape((-1, *x.shape[x.ndim - n_core :])), batch_shape


class Encoder(nnx.Module):
    """Stride-2 convolutions + dense head: ``(B, 64, 64)`` images -> ``(mean, log_var)``."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        self.intensity_scale = config.intensity_scale
        convs = []
        c_in = 1
        for c_out in config.encoder_channels:
            convs.append(nnx.Conv(c_in, c_out, (4, 4), strides=(2, 2), rngs=rngs))
            if config.encoder_extra_convs:
                convs.append(nnx.Conv(c_out, c_out, (3, 3), rngs=rngs))
            c_in = c_out
        self.convs = nnx.List(convs)
        side = config.image_size // 2 ** len(config.encoder_channels)
        self.dense = nnx.Linear(side * side * c_in, config.encoder_dense, rngs=rngs)
        self.mean = nnx.Linear(config.encoder_dense, config.latent_dim, rngs=rngs)
        self.log_var = nnx.Linear(
            config.encoder_dense,
            config.latent_dim,
            kernel_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )

    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        # asinh compresses the large dynamic range of galaxy light (encoder input only).
        x = jnp.arcsinh(images * self.intensity_scale)[..., None]
        for conv in self.convs:
            x = nnx.silu(conv(x))
        x = nnx.silu(self.dense(x.reshape(x.shape[0], -1)))
        return self.mean(x), self.log_var(x)


class Decoder(nnx.Module):
    """Dense -> 8x8 map -> (upsample + conv) stages -> pixel shuffle: ``(B, 64)`` -> images."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        self.base_size = config.base_size
        self.base_channels = config.base_channels
        self.factor = config.pixel_shuffle
        self.normalize_flux = config.normalize_flux
        self.intensity_scale = config.intensity_scale
        n_base = config.base_size**2 * config.base_channels
        self.dense = nnx.Linear(config.latent_dim, n_base, rngs=rngs)
        c_in = config.base_channels
        self.base_convs = nnx.List(
            [nnx.Conv(c_in, c_in, (3, 3), rngs=rngs) for _ in range(config.base_convs)]
        )
        convs = []
        for c_out in config.decoder_channels:
            convs.append(nnx.Conv(c_in, c_out, (3, 3), rngs=rngs))
            c_in = c_out
        self.convs = nnx.List(convs)
        # Start from a faint, nearly uniform image: softplus(-4) ~ 0.018.
        self.out = nnx.Conv(
            c_in,
            config.pixel_shuffle**2,
            (3, 3),
            bias_init=nnx.initializers.constant(-4.0),
            rngs=rngs,
        )

    def __call__(self, z: jax.Array) -> jax.Array:
        x = nnx.silu(self.dense(z))
        x = x.reshape(z.shape[0], self.base_size, self.base_size, self.base_channels)
        for conv in self.base_convs:
            x = nnx.silu(conv3x3_same(x, conv))
        for conv in self.convs:
            x = nnx.silu(upsample_conv3x3_same(x, conv))
        # softplus and the flux sum before the pixel shuffle (elementwise / order-free, so the
        # same image); fused with the shuffle's transpose they are several times slower on CPU
        x = jax.nn.softplus(conv3x3_same(x, self.out))
        if self.normalize_flux:
            x = x / jnp.sum(x, axis=(-3, -2, -1), keepdims=True)
        else:
            x = x / self.intensity_scale
        return pixel_shuffle(x, self.factor)


class VAE(nnx.Module):
    """Convolutional beta-VAE of 64x64 unit-flux galaxy images.

    Parameters
    ----------
    config
        Architecture, see :class:`VAEConfig`.
    rngs
        Random stream of the weight initialisation (``nnx.Rngs(seed)``).

    Examples
    --------
    >>> from flax import nnx
    >>> vae = VAE(VAEConfig.tiny(), rngs=nnx.Rngs(0))
    >>> vae.decode(jnp.zeros(64)).shape
    (64, 64)
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)

    @property
    def pixel_scale(self) -> float | None:
        """Pixel scale of the decoded images in arcsec (``config.pixel_scale``; None if unknown)."""
        return self.config.pixel_scale

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior parameters of ``z`` for images of shape ``(..., 64, 64)``.

        Returns ``(mean, log_var)``, each of shape ``(..., latent_dim)``.
        """
        x, batch_shape = _flatten_batch(jnp.asarray(images), 2)
        mean, log_var = self.encoder(x)
        return mean.reshape(*batch_shape, -1), log_var.reshape(*batch_shape, -1)

    def decode(self, z: jax.Array) -> jax.Array:
        """Non-negative unit-flux images ``(..., 64, 64)`` from latents ``(..., latent_dim)``."""
        zz, batch_shape = _flatten_batch(jnp.asarray(z), 1)
        img = self.decoder(zz)
        return img.reshape(*batch_shape, *img.shape[1:])

    def __call__(self, images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encode, draw ``z`` by reparameterisation and decode.

        Parameters
        ----------
        images
            ``(..., 64, 64)`` unit-flux images.
        key
            ``jax.random`` key of the reparameterisation draw ``z = mean + sigma * eps``.

        Returns
        -------
        reconstruction, mean, log_var
        """
        mean, log_var = self.encode(images)
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        z = mean + jnp.exp(0.5 * log_var) * eps
        return self.decode(z), mean, log_var

    def decoder_function(self) -> Callable[[jax.Array], jax.Array]:
        """Pure function ``z -> image`` closing over a snapshot of the decoder weights.

        The function has no Python side effects, so it can be wrapped in ``jax.jit``,
        ``jax.vmap`` and ``jax.grad`` (and used inside NumPyro models). It works on a single
        ``(latent_dim,)`` vector or a batch ``(..., latent_dim)``. Later training of this VAE does
        not change an already returned function.
        """
        graphdef, state = nnx.split(self.decoder)

        def decode(z: jax.Array) -> jax.Array:
            decoder = nnx.merge(graphdef, state)
            zz, batch_shape = _flatten_batch(jnp.asarray(z), 1)
            img = decoder(zz)
            return img.reshape(*batch_shape, *img.shape[1:])

        return decode
