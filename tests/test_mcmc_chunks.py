"""Chunked NUTS sampling: checkpoints, resume, accumulated source moments (small problem).

One tiny simulated lens (toy decoder, 24 x 24 pixels) and one MAP are shared; the sampler runs
a few short chunks (tree depth <= 4), and every assertion compares two runs of the same seed or
the accumulated moments with the stored draws.
"""

import json
import shutil

import jax
import numpy as np
import pytest

from vaelens.infer import map_fit, nuts
from vaelens.infer.chunked import (
    MOMENTS_GROUP,
    ResumeError,
    RunningMoments,
    SamplingInterrupted,
    image_moments,
)
from vaelens.models import (
    LensPriors,
    LensSpec,
    SourcePriors,
    blob_decoder,
    lens_model,
    simulate_lens,
)

pytestmark = pytest.mark.slow

SETTINGS = {"num_warmup": 20, "num_samples": 12, "num_chains": 2, "max_tree_depth": 4,
            "progress_bar": False, "log_likelihood": False, "chain_method": "vectorized"}


@pytest.fixture(scope="module")
def problem():
    decoder = blob_decoder(num_blobs=3, mobile=False)
    spec = LensSpec(
        lens=LensPriors(theta_E=0.72, theta_E_scale=0.1),
        source=SourcePriors(size=1.0, amp=20.0, center_x=0.08, center_y=-0.05,
                            center_scale=0.05),
        supersampling=1,
        include_lens_light=False,
    )
    data, _ = simulate_lens(jax.random.PRNGKey(1), spec, decoder=decoder, shape=(24, 24),
                            pixel_scale=0.08)
    res = map_fit(lens_model, data, spec, decoder, key=jax.random.PRNGKey(2), num_starts=2,
                  max_iter=200)
    return (lens_model, data, spec, decoder), res


def _nuts(problem, **kw):
    args, res = problem
    return nuts(*args, key=jax.random.PRNGKey(5), init=res, **{**SETTINGS, **kw})


@pytest.fixture(scope="module")
def reference(problem):
    """Uninterrupted run in chunks of 4 draws, source draws kept."""
    return _nuts(problem, chunk_size=4, keep_draws=("source",))


def _stop_after_two(chunks, draws):
    if chunks == 2:
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def interrupted(problem, tmp_path_factory):
    """Checkpoint folder of the same run stopped (as by Ctrl-C) after two of three chunks."""
    folder = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(SamplingInterrupted, match="8 of 12 draws") as info:
        _nuts(problem, chunk_size=4, keep_draws=("source",), checkpoint=folder,
              on_chunk=_stop_after_two)
    assert info.value.draws_done == 8 and info.value.folder == folder.absolute()
    return folder


def test_running_moments_match_numpy():
    x = np.random.default_rng(0).normal(size=(37, 3, 2)) * 5 + 2
    m = RunningMoments((3, 2))
    for part in np.array_split(x, [1, 2, 20, 20, 30]):
        m.update(part)
    assert m.count == 37
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.std, x.std(0), rtol=1e-12)


def test_one_chunk_gives_the_same_draws_and_the_moments_of_the_source_draws(problem, reference):
    one = _nuts(problem, chunk_size=12)  # no source draws: accumulated moments instead
    for k in ("theta_E", "z", "gamma"):
        np.testing.assert_array_equal(one.posterior[k].values, reference.posterior[k].values)
    np.testing.assert_array_equal(one.sample_stats["n_steps"].values,
                                  reference.sample_stats["n_steps"].values)
    assert "source" not in one.posterior and MOMENTS_GROUP in one.groups()
    assert "source" in reference.posterior
    mean, std, n = image_moments(one, "source")
    draws = reference.posterior["source"].values.reshape(-1, *mean.shape)
    assert n == draws.shape[0] == 24
    np.testing.assert_allclose(mean, draws.mean(0), rtol=1e-6, atol=1e-9 * np.abs(mean).max())
    np.testing.assert_allclose(std, draws.std(0), rtol=1e-5, atol=1e-8 * np.abs(std).max())


def test_resume_after_interruption_gives_the_same_draws(problem, reference, interrupted,
                                                        tmp_path):
    folder = tmp_path / "fit"
    shutil.copytree(interrupted, folder)
    assert sorted(p.name for p in (folder / "sampling").glob("chunk_*.npz")) == [
        "chunk_00000.npz", "chunk_00001.npz"]
    resumed = _nuts(problem, chunk_size=4, keep_draws=("source",), checkpoint=folder,
                    resume=True)
    assert resumed.attrs["resumed"] == 1
    for k in ("theta_E", "z", "source"):
        np.testing.assert_array_equal(resumed.posterior[k].values, reference.posterior[k].values)


def test_bad_or_mismatched_checkpoint_is_a_clear_error(problem, interrupted, tmp_path):
    with pytest.raises(ResumeError, match="holds no interrupted sampling run"):
        _nuts(problem, checkpoint=tmp_path, resume=True)
    folder = tmp_path / "fit"
    shutil.copytree(interrupted, folder)
    with pytest.raises(ResumeError, match="num_chains: 2 in the checkpoint, 1 now"):
        _nuts(problem, num_chains=1, checkpoint=folder, resume=True)
    settings = folder / "sampling" / "settings.json"
    good = settings.read_text()
    settings.write_text(json.dumps({**json.loads(good), "dim": 3}))
    with pytest.raises(ResumeError, match="dim: 3 in the checkpoint"):
        _nuts(problem, checkpoint=folder, resume=True)
    settings.write_text(good[:-20])
    with pytest.raises(ResumeError, match="corrupt"):
        _nuts(problem, checkpoint=folder, resume=True)
    settings.write_text(good)
    (folder / "sampling" / "state.npz").write_bytes(b"not a numpy file")
    with pytest.raises(ResumeError, match="corrupt"):
        _nuts(problem, checkpoint=folder, resume=True)
    with pytest.raises(ValueError, match="keep_draws"):
        _nuts(problem, keep_draws=("nope",))
