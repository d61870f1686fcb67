"""The decoder fit recovers a decoded galaxy (z, flux, centre) down to the noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaelens.data.preprocess import fourier_shift
from vaelens.galaxy import fit_galaxies, fit_galaxy
from vaelens.vae import VAE, VAEConfig
from vaelens.vae import weights as weights_mod


@pytest.fixture(scope="module")
def decoder():
    path = weights_mod.PRETRAINED_DIR / f"{weights_mod.PRETRAINED_NAME}.safetensors"
    vae = (
        weights_mod.load_pretrained()
        if path.is_file()
        else VAE(VAEConfig.default(), rngs=nnx.Rngs(0))
    )
    return vae.decoder_function()


def test_decoder_fit_recovers_truth_down_to_noise(decoder):
    rng = np.random.default_rng(0)
    z_true = jnp.asarray(rng.normal(size=64) * 0.7)
    flux, dx, dy = 500.0, 0.4, -0.3
    clean = flux * fourier_shift(decoder(z_true), dy, dx)
    sigma = float(jnp.max(clean)) / 50.0  # peak S/N 50
    data = clean + sigma * jnp.asarray(rng.normal(size=(64, 64)))
    res = fit_galaxy(
        decoder, data, sigma**2, z_init=z_true + 0.3 * jnp.asarray(rng.normal(size=64))
    )
    chi2_truth = float(jnp.sum((data - clean) ** 2) / sigma**2)
    # best fit at least as good as the truth (up to the prior term), and noise-limited
    assert float(res.chi2) <= chi2_truth + 5.0
    assert 0.85 < float(res.reduced_chi2) < 1.1
    assert abs(float(res.flux) / flux - 1) < 0.02
    np.testing.assert_allclose(np.asarray(res.shift), [dx, dy], atol=0.1)
    resid = np.asarray(res.model - clean)
    assert np.sqrt(np.mean(resid**2)) < 0.3 * sigma


def test_batched_fit_matches_single_fits(decoder):
    rng = np.random.default_rng(1)
    zs = jnp.asarray(rng.normal(size=(3, 64)) * 0.5)
    clean = 100.0 * jax.vmap(decoder)(zs)
    sigma = float(jnp.max(clean)) / 30.0
    data = clean + sigma * jnp.asarray(rng.normal(size=clean.shape))
    z0 = zs + 0.3 * jnp.asarray(rng.normal(size=zs.shape))
    batch = fit_galaxies(decoder, data, jnp.full(3, sigma**2), z_init=z0, chunk_size=3)
    assert batch.z.shape == (3, 64) and batch.model.shape == (3, 64, 64)
    for i in range(3):
        # lock-step batched L-BFGS and the single-stamp while-loop L-BFGS reach the same optimum
        one = fit_galaxy(decoder, data[i], sigma**2, z_init=z0[i])
        assert 0.99 * float(one.objective) < float(batch.objective[i]) < float(one.objective) + 2
        np.testing.assert_allclose(np.asarray(batch.shift[i]), np.asarray(one.shift), atol=0.05)
    assert np.all(np.asarray(batch.reduced_chi2) < 1.2)
    # each galaxy's fit is independent of the others in its chunk (last chunk padded)
    chunked = fit_galaxies(decoder, data, jnp.full(3, sigma**2), z_init=z0, chunk_size=2)
    np.testing.assert_allclose(
        np.asarray(chunked.objective), np.asarray(batch.objective), rtol=1e-4
    )


def test_fit_rejects_bad_input(decoder):
    with pytest.raises(ValueError, match="noise_variance must be positive"):
        fit_galaxy(decoder, jnp.ones((64, 64)), 0.0)
    with pytest.raises(ValueError, match=r"\(B, ny, nx\) batch"):
        fit_galaxies(decoder, jnp.ones((64, 64)), 1.0)
