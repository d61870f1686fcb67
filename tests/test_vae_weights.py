"""Weights round trip, integrity checks and the quality of the shipped pretrained model."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaelens.vae import VAE, VAEConfig, WeightsError, load_pretrained, load_weights, save_weights
from vaelens.vae import weights as weights_mod


@pytest.fixture()
def saved(tmp_path):
    vae = VAE(VAEConfig.tiny(), rngs=nnx.Rngs(5))
    path = tmp_path / "m.safetensors"
    card = save_weights(vae, path, card={"data": {"note": "test"}})
    return vae, path, card


def test_round_trip(saved):
    vae, path, card = saved
    loaded = load_weights(path)
    assert loaded.config == vae.config
    z = jax.random.normal(jax.random.key(0), (2, 64), jnp.float32)
    np.testing.assert_array_equal(np.asarray(loaded.decode(z)), np.asarray(vae.decode(z)))
    on_disk = json.loads(path.with_suffix(".json").read_text())
    assert on_disk["sha256"] == card["sha256"] == weights_mod.file_sha256(path)
    assert on_disk["data"] == {"note": "test"}
    assert on_disk["n_parameters"] > 0


def test_corrupt_file_is_detected(saved):
    _, path, _ = saved
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(path)


def test_truncated_file_without_verification_gives_clear_error(saved):
    _, path, _ = saved
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(path, verify=False)


def test_missing_files(saved, tmp_path):
    _, path, _ = saved
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nothing.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match="model card not found"):
        load_weights(path)


def test_architecture_mismatch(saved):
    _, path, _ = saved
    card = json.loads(path.with_suffix(".json").read_text())
    card["config"]["base_channels"] = 16
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="shape"):
        load_weights(path)


def test_load_pretrained_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(weights_mod, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(WeightsError, match="pretrained weights .* not found"):
        load_pretrained()


def _pretrained_or_skip():
    if not (weights_mod.PRETRAINED_DIR / f"{weights_mod.PRETRAINED_NAME}.safetensors").is_file():
        pytest.skip("pretrained weights not present")
    return load_pretrained()


def test_pretrained_reconstructs_synthetic_galaxies():
    """Encoder reconstruction of unseen synthetic galaxies (stated quality).

    Residual flux fraction sum|x - x_hat| / sum|x| must have a median below 0.2 and the
    reconstruction must keep unit flux and non-negativity.
    """
    vae = _pretrained_or_skip()
    from vaelens.data.synthetic import make_synthetic_galaxies

    images, _ = make_synthetic_galaxies(987654, 16, size=64)
    mean, _ = vae.encode(images)
    recon = np.asarray(vae.decode(mean))
    assert np.all(recon >= 0)
    np.testing.assert_allclose(recon.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    frac = np.abs(recon - images).sum(axis=(1, 2)) / np.abs(images).sum(axis=(1, 2))
    assert np.median(frac) < 0.2, np.median(frac)


def test_pixel_scale_comes_from_the_model_card(tmp_path):
    vae = VAE(VAEConfig.tiny(), rngs=nnx.Rngs(1))
    assert vae.pixel_scale is None  # nothing known about untrained weights
    path = tmp_path / "scaled.safetensors"
    save_weights(vae, path, card={"data": {"synthetic": {"pixel_scale": 0.05}}})
    loaded = load_weights(path)
    assert loaded.pixel_scale == loaded.config.pixel_scale == 0.05
    # the shipped model: the scale of its training data, as recorded in its card
    card = weights_mod.load_model_card(
        weights_mod.PRETRAINED_DIR / f"{weights_mod.PRETRAINED_NAME}.safetensors"
    )
    assert weights_mod.pretrained_pixel_scale() == card["data"]["synthetic"]["pixel_scale"]
    # a card that contradicts itself is refused
    bad = {"config": {"pixel_scale": 0.03}, "data": {"real": {"pixel_scale": 0.05}}}
    with pytest.raises(WeightsError, match="different pixel scales"):
        weights_mod.card_pixel_scale(bad)
    assert weights_mod.card_pixel_scale({"data": {"note": "x"}}) is None
    with pytest.raises(ValueError, match="pixel_scale"):
        VAEConfig(pixel_scale=-1.0)
