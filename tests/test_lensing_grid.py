"""PixelGrid: coordinates, FITS headers, supersampling and block averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaelens.lensing import PixelGrid


def test_default_grid_is_centred_with_x_along_columns():
    grid = PixelGrid((4, 6), 0.1)
    x, y = grid.coordinates()
    assert x.shape == (4, 6) and y.shape == (4, 6)
    np.testing.assert_allclose(float(x.mean()), 0.0, atol=1e-15)
    np.testing.assert_allclose(float(y.mean()), 0.0, atol=1e-15)
    np.testing.assert_allclose(np.diff(np.asarray(x), axis=1), 0.1)
    np.testing.assert_allclose(np.diff(np.asarray(y), axis=0), 0.1)
    np.testing.assert_allclose(np.diff(np.asarray(x), axis=0), 0.0)
    assert grid.pixel_area == pytest.approx(0.01)
    assert grid.extent == pytest.approx((-0.3, 0.3, -0.2, 0.2))


def test_matches_lenstronomy_pixel_grid():
    from lenstronomy.Data.pixel_grid import PixelGrid as LtGrid

    t = np.array([[-0.05, 0.01], [0.02, 0.04]])
    grid = PixelGrid((5, 7), 0.05, ra_at_xy_0=1.3, dec_at_xy_0=-0.7, transform_pix2angle=t)
    ref = LtGrid(nx=7, ny=5, transform_pix2angle=t, ra_at_xy_0=1.3, dec_at_xy_0=-0.7)
    x_ref, y_ref = ref.pixel_coordinates
    x, y = grid.coordinates()
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-14)
    assert grid.pixel_scale == pytest.approx(np.sqrt(abs(np.linalg.det(t))))


def test_from_fits_header_cd_matrix_ra_grows_to_the_left():
    from astropy.io import fits

    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"] = 8
    header["NAXIS2"] = 6
    header["CD1_1"] = -0.04 / 3600
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = 0.04 / 3600
    header["RA0"] = 0.5
    header["DEC0"] = -0.3
    grid = PixelGrid.from_fits_header(header)
    assert grid.shape == (6, 8)
    assert grid.pixel_scale == pytest.approx(0.04)
    x, y = grid.coordinates()
    assert float(x[0, 0]) == pytest.approx(0.5) and float(y[0, 0]) == pytest.approx(-0.3)
    assert float(x[0, 1] - x[0, 0]) == pytest.approx(-0.04)  # x (RA) decreases with column
    assert float(y[1, 0] - y[0, 0]) == pytest.approx(0.04)


def test_from_fits_header_pixscale_centred_and_cdelt():
    grid = PixelGrid.from_fits_header({"PIXSCALE": 0.08}, shape=(10, 10))
    assert grid == PixelGrid((10, 10), 0.08)
    grid2 = PixelGrid.from_fits_header({"NAXIS1": 4, "NAXIS2": 4, "CDELT1": -1e-5, "CDELT2": 1e-5})
    np.testing.assert_allclose(grid2.transform, np.diag([-0.036, 0.036]))
    with pytest.raises(ValueError, match="PIXSCALE"):
        PixelGrid.from_fits_header({"NAXIS1": 4, "NAXIS2": 4})


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_supersampled_coordinates_average_to_pixel_centres(factor):
    grid = PixelGrid((5, 4), 0.1, transform_pix2angle=[[0.1, 0.02], [-0.01, 0.09]])
    xs, ys = grid.supersampled_coordinates(factor)
    assert xs.shape == (5 * factor, 4 * factor)
    x, y = grid.coordinates()
    np.testing.assert_allclose(grid.downsample(xs, factor), x, atol=1e-14)
    np.testing.assert_allclose(grid.downsample(ys, factor), y, atol=1e-14)
    if factor > 1:  # sub-pixel spacing is pixel / factor
        np.testing.assert_allclose(np.diff(np.asarray(xs)[0, :factor]), 0.1 / factor)


def test_downsample_is_block_average_and_conserves_mean():
    grid = PixelGrid((2, 3), 1.0)
    img = jnp.arange(36.0).reshape(4, 9)[:, :6]
    out = grid.downsample(img, 2)
    expected = np.asarray(img).reshape(2, 2, 3, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected)
    with pytest.raises(ValueError, match="does not match"):
        grid.downsample(jnp.zeros((5, 6)), 2)


def test_grid_is_hashable_and_static_under_jit():
    grid = PixelGrid((3, 3), 0.2)
    assert hash(grid) == hash(PixelGrid((3, 3), 0.2))

    @jax.jit
    def f(a):
        return a * 2.0

    g = jax.jit(lambda grid, a: grid.coordinates()[0] * a, static_argnums=0)
    np.testing.assert_allclose(g(grid, 2.0), 2.0 * np.asarray(grid.coordinates()[0]))
    assert f(1.0) == 2.0
