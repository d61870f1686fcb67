"""Tests of vaelens.data.preprocess, split, augment and training_stamps."""

import jax
import numpy as np
import pytest

from vaelens.data import (
    add_noise,
    augment,
    crop_or_pad,
    dihedral,
    fourier_shift,
    light_centroid,
    load_training_stamps,
    make_synthetic_galaxies,
    prepare_stamp,
    random_dihedral,
    random_shift_jax,
    split_by_id,
)

COSMOS = "cosmos_btk/real_galaxy_catalog_26_extension_example.fits"


def gaussian_blob(shape, row, col, sigma=3.0, flux=100.0, q=1.0, angle=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dx, dy = xx - col, yy - row
    c, s = np.cos(angle), np.sin(angle)
    xr, yr = dx * c + dy * s, -dx * s + dy * c
    img = np.exp(-0.5 * (xr**2 + (yr / q) ** 2) / sigma**2)
    return flux * img / img.sum()


@pytest.mark.parametrize("shape", [(40, 40), (100, 100), (64, 64), (30, 50)])
def test_prepare_stamp_centres_and_normalises(shape):
    rng = np.random.default_rng(0)
    true = (shape[0] / 2 - 3.3, shape[1] / 2 + 2.7)
    var = 0.01**2
    img = gaussian_blob(shape, *true) + rng.normal(0, 0.01, shape)
    out = prepare_stamp(img, var, 64, rng=1)
    assert out.image.shape == (64, 64)
    assert out.image.sum() == pytest.approx(1.0, abs=5 * 64 * np.sqrt(out.noise_variance))
    assert out.flux == pytest.approx(100.0, rel=0.03)  # flux kept (crop / pad within noise)
    assert out.noise_variance == pytest.approx(var / out.flux**2)
    np.testing.assert_allclose(out.center, true, atol=0.1)
    yy, xx = np.mgrid[:64, :64]
    noiseless = prepare_stamp(gaussian_blob(shape, *true), 0.0, 64, rng=1).image
    assert (noiseless * yy).sum() == pytest.approx(31.5, abs=0.02)
    assert (noiseless * xx).sum() == pytest.approx(31.5, abs=0.02)


def test_padding_noise_has_stamp_variance_and_is_seeded():
    img = np.zeros((20, 20))
    a, residual = crop_or_pad(img, 64, (9.5, 9.5), 4.0, np.random.default_rng(5))
    b, _ = crop_or_pad(img, 64, (9.5, 9.5), 4.0, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert residual == (0.0, 0.0)
    assert a[22:42, 22:42].std() == 0.0  # the original pixels, centred
    pad = np.ones((64, 64), bool)
    pad[22:42, 22:42] = False
    assert a[pad].std() == pytest.approx(2.0, rel=0.05)


def test_crop_keeps_central_pixels():
    img = np.arange(100 * 100, dtype=float).reshape(100, 100)
    out, residual = crop_or_pad(img, 10, (50.2, 40.0), 0.0, 0)
    # stamp centre (4.5, 4.5) sits on input (50.5, 40.5): residual centre offset (-0.3, -0.5)
    assert residual == pytest.approx((-0.3, -0.5))
    np.testing.assert_array_equal(out, img[46:56, 36:46])


def test_centroid_ignores_neighbour_and_noise():
    rng = np.random.default_rng(2)
    img = gaussian_blob((64, 64), 30.0, 33.0) + gaussian_blob((64, 64), 5.0, 5.0, flux=300)
    img += rng.normal(0, 0.02, img.shape)
    row, col, seg = light_centroid(img, 0.02**2)
    assert (row, col) == pytest.approx((30.0, 33.0), abs=0.15)
    assert not seg[5, 5]


def test_resampling_conserves_flux_and_rescales_variance():
    rng = np.random.default_rng(3)
    img = gaussian_blob((90, 90), 44.5, 44.5, sigma=6.0)
    out = prepare_stamp(
        img, 1e-4, 32, rng=rng, pixel_scale=0.03, target_pixel_scale=0.06, normalize=False
    )
    assert out.pixel_scale == 0.06
    assert out.image.sum() == pytest.approx(100.0, rel=0.01)
    noise = rng.normal(0, 1.0, (90, 90))
    out_n = prepare_stamp(
        noise,
        1.0,
        32,
        rng=4,
        pixel_scale=0.03,
        target_pixel_scale=0.06,
        normalize=False,
        recenter=False,
    )
    # flux-conserving 2x coarser pixels: variance x16 times the interpolation factor, measured
    assert out_n.image.std() ** 2 == pytest.approx(out_n.noise_variance, rel=0.25)


def test_canonicalize_rotates_major_axis_and_fixes_size():
    img = gaussian_blob((64, 64), 31.5, 31.5, sigma=5.0, q=0.4, angle=0.7)
    out = prepare_stamp(img, 0.0, 64, rng=0, canonicalize=True, target_radius=4.0)
    # blob: sigma 5 px along angle 0.7 from +x, 2 px across
    assert out.angle == pytest.approx(0.7, abs=0.02)
    yy, xx = np.mgrid[:64, :64] - 31.5
    m = out.image
    mxx, myy, mxy = (m * xx * xx).sum(), (m * yy * yy).sum(), (m * xx * yy).sum()
    assert mxx > 4 * myy and abs(mxy) < 0.02 * mxx
    assert (mxx * myy - mxy**2) ** 0.25 == pytest.approx(4.0, rel=0.05)
    assert out.scale == pytest.approx(4.0 / np.sqrt(5.0 * 2.0), rel=0.05)


def test_prepare_stamp_errors():
    with pytest.raises(ValueError, match="2-d"):
        prepare_stamp(np.zeros(10), 1.0, rng=0)
    with pytest.raises(ValueError, match="noise_variance"):
        prepare_stamp(np.ones((8, 8)), np.nan, rng=0)
    with pytest.raises(ValueError, match="NaN"):
        prepare_stamp(np.full((8, 8), np.nan), 1.0, rng=0)
    with pytest.raises(ValueError, match="flux"):
        prepare_stamp(-np.ones((8, 8)), 0.0, 8, rng=0, recenter=False)
    with pytest.raises(TypeError, match="randomness"):
        prepare_stamp(np.ones((8, 8)), 1.0, rng=None)


def test_split_disjoint_deterministic_order_free():
    ids = np.arange(5000, 6000)
    train, val, test = split_by_id(ids, seed=3)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val, test])), ids)
    again = split_by_id(np.random.default_rng(0).permutation(ids), seed=3)
    for a, b in zip((train, val, test), again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = split_by_id(ids, seed=4)
    assert not np.array_equal(other[2], test)
    # adding galaxies keeps most of the held-out set held out
    grown = split_by_id(np.arange(5000, 6100), seed=3)
    assert len(set(test) & set(grown[2])) >= 95
    with pytest.raises(ValueError):
        split_by_id(ids, (0.5, 0.2, 0.2))
    with pytest.raises(TypeError):
        split_by_id(["a", "b"])


def test_augment_numpy_conserves_flux_and_is_seeded():
    images, _ = make_synthetic_galaxies(0, 6)
    a = augment(images, 7, rotate=True, max_shift=0.5)
    b = augment(images, np.random.default_rng(7), rotate=True, max_shift=0.5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum((1, 2)), 1.0, atol=1e-2)  # corners leave the stamp
    shifted = augment(images, 7, max_shift=0.5)
    np.testing.assert_allclose(shifted.sum((1, 2)), 1.0, atol=1e-5)
    d = augment(images, 1)
    # D4 only: each output equals one of the 8 symmetries of its input
    for i in range(6):
        assert any(np.array_equal(d[i], np.asarray(dihedral(images[i], k))) for k in range(8))
    noisy = add_noise(np.zeros((200, 8, 8)), 0.5, 0)
    assert noisy.std() == pytest.approx(0.5, rel=0.02)


def test_augment_jax():
    images = jax.numpy.asarray(make_synthetic_galaxies(1, 4, size=32)[0])
    key = jax.random.key(0)
    d = np.asarray(jax.jit(random_dihedral)(key, images)[0])
    for i in range(4):
        assert any(np.array_equal(d[i], np.asarray(dihedral(images[i], k))) for k in range(8))
    s = random_shift_jax(key, images, 0.5)
    np.testing.assert_allclose(np.asarray(s).sum((1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(random_shift_jax(key, images, 0.0)), images, atol=1e-6)


def test_load_training_stamps_cosmos(shared_data):
    path = shared_data / COSMOS
    splits = {s: load_training_stamps(path, s, seed=0) for s in ("train", "val", "test")}
    images, var, ids = splits["train"]
    assert images.shape == (80, 64, 64) and images.dtype == np.float32
    assert np.all(var > 0) and var.shape == ids.shape == (80,)
    # unit flux inside the original footprint; the padding adds only zero-mean noise
    excess = (images.sum((1, 2)) - 1.0) / np.sqrt(var * 64 * 64)
    assert np.all(np.abs(excess) < 5.0)
    all_ids = np.concatenate([splits[s][2] for s in splits])
    assert len(np.unique(all_ids)) == 100
    again = load_training_stamps(path, "test", seed=0)
    np.testing.assert_array_equal(again[0], splits["test"][0])
    yy, xx = np.mgrid[:64, :64]
    assert np.median((images * xx).sum((1, 2))) == pytest.approx(31.5, abs=1.0)
    assert np.median((images * yy).sum((1, 2))) == pytest.approx(31.5, abs=1.0)
    with pytest.raises(ValueError, match="split"):
        load_training_stamps(path, "training")


def test_dihedral_elements_are_distinct_and_form_the_group():
    img = np.random.default_rng(5).random((9, 9))
    outs = [np.asarray(dihedral(img, k)) for k in range(8)]
    assert len({o.tobytes() for o in outs}) == 8  # 8 distinct elements
    np.testing.assert_array_equal(outs[0], img)  # k = 0 is the identity
    np.testing.assert_array_equal(outs[0 + 1], np.rot90(img))  # k = 1: counter-clockwise turn
    np.testing.assert_array_equal(outs[4], img[:, ::-1])  # k = 4: left-right mirror
    # closure: every composition is one of the 8, and every element has an inverse
    index = {o.tobytes(): k for k, o in enumerate(outs)}
    table = np.array(
        [[index[np.asarray(dihedral(outs[b], a)).tobytes()] for b in range(8)] for a in range(8)]
    )
    for row in table:
        assert sorted(row) == list(range(8))  # a Latin square: closed, each product once
    assert all(0 in row for row in table)
    # traced element inside jit equals the static one
    k = jax.numpy.asarray(6)
    np.testing.assert_array_equal(np.asarray(jax.jit(dihedral)(img, k)), outs[6])


@pytest.mark.parametrize("shift", [(3, -5), (-1, 2), (0, 7)])
def test_fourier_shift_integer_equals_roll(shift):
    img = np.random.default_rng(6).random((2, 16, 12))
    out = np.asarray(fourier_shift(img, *shift))
    np.testing.assert_allclose(out, np.roll(img, shift, axis=(-2, -1)), atol=1e-12)


def test_fourier_shift_conserves_flux_and_moves_the_centroid():
    y, x = np.mgrid[:64, :64] - 31.5
    img = np.exp(-0.5 * (x**2 + y**2) / 9.0)
    out = np.asarray(fourier_shift(img, -0.6, 1.3))
    assert out.sum() == pytest.approx(img.sum(), rel=1e-12)
    np.testing.assert_allclose(
        [(out * y).sum() / out.sum(), (out * x).sum() / out.sum()], [-0.6, 1.3], atol=1e-6
    )
    # per-image shifts of a batch; shifting back restores the image
    batch = np.stack([img, img])
    moved = fourier_shift(batch, np.array([0.25, -0.4]), np.array([0.5, 0.1]))
    back = fourier_shift(moved, np.array([-0.25, 0.4]), np.array([-0.5, -0.1]))
    np.testing.assert_allclose(np.asarray(back), batch, atol=1e-10)
    # differentiable in the shift: d(centroid)/d(dx) = 1
    cen = lambda dx: (fourier_shift(img, 0.0, dx) * x).sum() / img.sum()  # noqa: E731
    assert float(jax.grad(cen)(0.3)) == pytest.approx(1.0, rel=1e-6)
