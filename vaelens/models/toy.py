"""An analytic stand-in for the VAE decoder (tests, demos, debugging without weights).

:func:`blob_decoder` returns a smooth, cheap map ``z -> (64, 64)`` unit-flux image with the same
interface as ``VAE.decoder_function()``: a fixed random linear projection of ``z`` sets the
offsets, widths and weights of a few circular Gaussian blobs around a central bulge, so images
are compact, structured (clumpy) galaxies that change smoothly with ``z``. It compiles in a
fraction of the time of a convolutional decoder, which keeps unit tests fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.models.decoder import Decoder

__all__ = ["blob_decoder"]


def blob_decoder(
    latent_dim: int = 64,
    num_blobs: int = 6,
    image_size: int = 64,
    seed: int = 0,
    mobile: bool = True,
) -> Decoder:
    """A toy decoder ``z -> (image_size, image_size)`` unit-flux image.

    Parameters
    ----------
    latent_dim
        Length of ``z``.
    num_blobs
        Number of clumps besides the central bulge.
    image_size
        Side of the output image in pixels.
    seed
        numpy seed of the fixed projection matrix (and of the blob positions if not mobile).
    mobile
        If True the blob offsets and widths depend on ``z`` (through ``tanh``: a richer but
        more non-linear family); if False they are fixed (drawn from ``seed``) and ``z`` only
        sets the log-weights of the blobs and the bulge, so the image is a smooth, nearly
        log-linear function of ``z`` and lens posteriors are close to Gaussian.

    Returns
    -------
    callable
        Pure function of ``z`` with shape ``(..., latent_dim)`` returning
        ``(..., image_size, image_size)`` non-negative images with pixel sum 1.
    """
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(4 * num_blobs + 2, latent_dim)) / np.sqrt(latent_dim)
    u = (np.arange(image_size) - 0.5 * (image_size - 1)) / image_size  # stamp widths
    uu, vv = np.meshgrid(u, u)
    proj_j, uu_j, vv_j = jnp.asarray(proj), jnp.asarray(uu), jnp.asarray(vv)
    fixed_c = rng.uniform(-0.15, 0.15, size=(2, num_blobs))
    fixed_s = 0.025 * np.exp(rng.uniform(-0.3, 0.3, size=num_blobs))
    blobs = np.exp(
        -0.5 * ((uu[None] - fixed_c[0][:, None, None]) ** 2
                + (vv[None] - fixed_c[1][:, None, None]) ** 2) / fixed_s[:, None, None] ** 2
    )
    bulge = np.exp(-0.5 * (uu**2 + vv**2) / 0.05**2)
    fixed = jnp.asarray(np.concatenate([bulge[None], blobs]))  # (num_blobs + 1, n, n)

    def decode_fixed(z: jax.Array) -> jax.Array:
        p = jnp.einsum("kl,...l->...k", proj_j.astype(jnp.result_type(z, float)), z)
        w = jnp.exp(0.3 * p[..., : num_blobs + 1])
        w = w * jnp.asarray([1.0] + [0.4] * num_blobs)
        img = jnp.einsum("...k,kij->...ij", w, fixed.astype(w.dtype))
        return img / jnp.sum(img, axis=(-2, -1), keepdims=True)

    def decode(z: jax.Array) -> jax.Array:
        p = jnp.einsum("kl,...l->...k", proj_j.astype(jnp.result_type(z, float)), z)
        bulge_size = 0.05 * jnp.exp(0.3 * jnp.tanh(p[..., 0]))
        bulge_w = jnp.exp(0.5 * jnp.tanh(p[..., 1]))
        q = p[..., 2:].reshape((*p.shape[:-1], num_blobs, 4))
        cx = 0.15 * jnp.tanh(q[..., 0])
        cy = 0.15 * jnp.tanh(q[..., 1])
        sig = 0.025 * jnp.exp(0.4 * jnp.tanh(q[..., 2]))
        w = 0.4 * jnp.exp(0.7 * jnp.tanh(q[..., 3]))
        img = bulge_w[..., None, None] * jnp.exp(
            -0.5 * (uu_j**2 + vv_j**2) / bulge_size[..., None, None] ** 2
        )
        for k in range(num_blobs):
            r2 = (uu_j - cx[..., k, None, None]) ** 2 + (vv_j - cy[..., k, None, None]) ** 2
            img = img + w[..., k, None, None] * jnp.exp(-0.5 * r2 / sig[..., k, None, None] ** 2)
        return img / jnp.sum(img, axis=(-2, -1), keepdims=True)

    return decode if mobile else decode_fixed
