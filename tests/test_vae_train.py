"""A two-epoch run of the tiny config lowers the loss and resumes bit-for-bit."""

import jax
import numpy as np
import pytest
from flax import nnx

from vaelens.vae import VAE, VAEConfig, train
from vaelens.vae.train import evaluate


def _blobs(seed, n):
    """Elliptical Gaussian galaxies with unit flux (independent of the data package)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64] - 31.5
    s = rng.uniform(2.0, 8.0, (n, 1, 1))
    q = rng.uniform(0.4, 1.0, (n, 1, 1))
    phi = rng.uniform(0, np.pi, (n, 1, 1))
    xr = x * np.cos(phi) + y * np.sin(phi)
    yr = -x * np.sin(phi) + y * np.cos(phi)
    img = np.exp(-0.5 * (xr**2 * q + yr**2 / q) / s**2)
    return (img / img.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return _blobs(0, 160), _blobs(1, 32)


KW = dict(epochs=2, batch_size=16, lr=1e-2, warmup=2, seed=3, progress=False)


def test_two_epochs_lower_loss_and_resume(tmp_path, data):
    train_images, val_images = data
    cfg = VAEConfig.tiny()
    before = evaluate(VAE(cfg, rngs=nnx.Rngs(3)), val_images, seed=4)["loss"]
    full = train(cfg, train_images, val_images, checkpoint_dir=tmp_path / "a", **KW)
    assert len(full.history) == 2
    assert full.history[-1]["val_loss"] < 0.5 * before
    assert full.history[1]["train_loss"] < full.history[0]["train_loss"]

    # interrupted after one epoch, then resumed from the checkpoint: same weights
    part = train(
        cfg, train_images, val_images, checkpoint_dir=tmp_path / "b", stop_after_epoch=1, **KW
    )
    assert len(part.history) == 1
    resumed = train(cfg, train_images, val_images, checkpoint_dir=tmp_path / "b", **KW)
    assert len(resumed.history) == 2
    assert resumed.history[0] == part.history[0]
    a = jax.tree.leaves(nnx.state(full.model, nnx.Param))
    b = jax.tree.leaves(nnx.state(resumed.model, nnx.Param))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        resumed.history[1]["val_loss"], full.history[1]["val_loss"], rtol=1e-4
    )


def test_resume_with_other_settings_is_refused(tmp_path, data):
    train_images, val_images = data
    cfg = VAEConfig.tiny()
    kw = {**KW, "epochs": 1}
    train(cfg, train_images[:16], val_images, checkpoint_dir=tmp_path, **kw)
    with pytest.raises(ValueError, match="other settings"):
        train(cfg, train_images[:16], val_images, checkpoint_dir=tmp_path, **{**kw, "lr": 5e-3})


def test_bad_inputs(data):
    train_images, val_images = data
    with pytest.raises(ValueError, match="batch_size"):
        train(VAEConfig.tiny(), train_images[:8], val_images, **{**KW, "batch_size": 32})
    with pytest.raises(ValueError, match="variances"):
        train(
            VAEConfig.tiny(),
            train_images,
            val_images,
            train_variances=np.ones(3),
            **KW,
        )
