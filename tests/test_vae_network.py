"""Shapes, non-negativity, flux normalisation and purity of the VAE network."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaelens.data.augment import dihedral, random_dihedral
from vaelens.vae import VAE, VAEConfig
from vaelens.vae.network import (
    conv3x3_same,
    pixel_shuffle,
    upsample_conv3x3_same,
    upsample_nearest,
)


@pytest.fixture(scope="module")
def tiny_vae():
    return VAE(VAEConfig.tiny(), rngs=nnx.Rngs(0))


def test_encode_decode_shapes_nonnegative_unit_flux(tiny_vae):
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 64, 64)).astype(np.float32)
    images /= images.sum(axis=(-2, -1), keepdims=True)
    mean, log_var = tiny_vae.encode(images)
    assert mean.shape == log_var.shape == (2, 3, 64)
    assert tiny_vae.encode(images[0, 0])[0].shape == (64,)
    z = jax.random.normal(jax.random.key(1), (2, 5, 64)) * 3.0
    out = tiny_vae.decode(z)
    assert out.shape == (2, 5, 64, 64)
    assert bool(jnp.all(out >= 0))
    np.testing.assert_allclose(np.asarray(out.sum(axis=(-2, -1))), 1.0, rtol=1e-5)
    assert tiny_vae.decode(z[0, 0]).shape == (64, 64)


def test_call_reparameterisation(tiny_vae):
    images = jnp.full((4, 64, 64), 1.0 / 4096, jnp.float32)
    recon, mean, log_var = tiny_vae(images, jax.random.key(0))
    assert recon.shape == images.shape and mean.shape == (4, 64)
    recon2, _, _ = tiny_vae(images, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(recon), np.asarray(recon2))


def test_decoder_function_is_pure_and_equals_decode(tiny_vae):
    dec = tiny_vae.decoder_function()
    z = jax.random.normal(jax.random.key(2), (3, 64), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(jax.jit(dec)(z)), np.asarray(tiny_vae.decode(z)), rtol=1e-5, atol=1e-9
    )
    np.testing.assert_allclose(
        np.asarray(jax.vmap(dec)(z)), np.asarray(tiny_vae.decode(z)), rtol=1e-5, atol=1e-9
    )
    # gradient against central finite differences (float64 computation)
    z0 = z[0].astype(jnp.float64)
    target = tiny_vae.decode(z[1]).astype(jnp.float64)

    def loss(zz):
        return jnp.sum((dec(zz) - target) ** 2) * 1e6

    g = jax.grad(loss)(z0)
    e = jnp.zeros(64).at[7].set(1e-4)
    fd = (loss(z0 + e) - loss(z0 - e)) / 2e-4
    np.testing.assert_allclose(float(g[7]), float(fd), rtol=1e-3, atol=1e-8)


def test_pixel_shuffle_layout():
    x = jnp.arange(2 * 3 * 4 * 4, dtype=jnp.float32).reshape(2, 3, 4, 4)
    y = pixel_shuffle(x, 2)
    assert y.shape == (2, 6, 8)
    # output pixel (h*2+i, w*2+j) is channel i*2+j of input pixel (h, w)
    assert float(y[1, 2 * 2 + 1, 3 * 2 + 0]) == float(x[1, 2, 3, 1 * 2 + 0])


def test_config_validation_and_round_trip():
    cfg = VAEConfig.default()
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="decoder geometry"):
        dataclasses.replace(cfg, pixel_shuffle=2)
    with pytest.raises(ValueError, match="unknown"):
        VAEConfig.from_dict({"nonsense": 1})


def test_dihedral_group_exact_and_flux_preserving():
    img = jnp.asarray(np.random.default_rng(3).random((64, 64)), jnp.float32)
    outs = [np.asarray(dihedral(img, k)) for k in range(8)]
    assert len({o.tobytes() for o in outs}) == 8
    for o in outs:
        assert np.isclose(o.sum(), float(img.sum()), rtol=1e-6)
    batch = jnp.stack([img] * 5)
    var = jnp.stack([img] * 5)
    aug, var_aug = random_dihedral(jax.random.key(0), batch, var)
    np.testing.assert_array_equal(np.asarray(aug), np.asarray(var_aug))


def test_matmul_convolutions_equal_native_convolution():
    conv = nnx.Conv(5, 7, (3, 3), rngs=nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(4), (2, 6, 8, 5), jnp.float32)
    ref = conv(x)  # lax.conv_general_dilated, 'SAME'
    np.testing.assert_allclose(
        np.asarray(conv3x3_same(x, conv)), np.asarray(ref), rtol=1e-5, atol=1e-5
    )
    up_ref = conv(upsample_nearest(x))
    up = upsample_conv3x3_same(x, conv)
    assert up.shape == (2, 12, 16, 7)
    np.testing.assert_allclose(np.asarray(up), np.asarray(up_ref), rtol=1e-5, atol=1e-5)
    # gradients with respect to the input agree too
    g_ref = jax.grad(lambda v: jnp.sum(jnp.sin(conv(upsample_nearest(v)))))(x)
    g = jax.grad(lambda v: jnp.sum(jnp.sin(upsample_conv3x3_same(v, conv))))(x)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=1e-4)
