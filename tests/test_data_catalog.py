"""Tests of vaelens.data.catalog: the lazy GalSim RealGalaxyCatalog reader."""

import numpy as np
import pytest
from astropy.io import fits

from vaelens.data import CatalogError, GalaxyStamp, load_real_galaxy_catalog

COSMOS = "cosmos_btk/real_galaxy_catalog_26_extension_example.fits"


def write_catalog(folder, n=5, *, drop=(), gal_hdu=None, psf=True, shapes=None):
    """Write a tiny RealGalaxyCatalog (catalogue + image file + PSF file) like GalSim's."""
    rng = np.random.default_rng(0)
    shapes = shapes or [(10 + 2 * i, 10 + 2 * i) for i in range(n)]
    images = [rng.normal(size=s) + 5.0 * i for i, s in enumerate(shapes)]
    hdus = [fits.PrimaryHDU(images[0].astype(">f8"))]
    hdus += [fits.ImageHDU(im.astype(">f8")) for im in images[1:]]
    fits.HDUList(hdus).writeto(folder / "gal.fits")
    psf_img = np.outer(np.hanning(9), np.hanning(9))
    fits.HDUList(
        [fits.PrimaryHDU(psf_img)] + [fits.ImageHDU(psf_img * (i + 1)) for i in range(1, n)]
    ).writeto(folder / "psf.fits")
    cols = {
        "IDENT": ("J", 1000 + np.arange(n)),
        "MAG": ("D", 22.0 + np.arange(n) / 10),
        "GAL_FILENAME": ("20A", ["gal.fits"] * n),
        "GAL_HDU": ("J", np.arange(n) if gal_hdu is None else gal_hdu),
        "PIXEL_SCALE": ("D", np.full(n, 0.03)),
        "NOISE_VARIANCE": ("D", np.linspace(1.0, 2.0, n)),
    }
    if psf:
        cols["PSF_FILENAME"] = ("20A", ["psf.fits"] * n)
        cols["PSF_HDU"] = ("J", np.arange(n))
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format=f, array=a) for k, (f, a) in cols.items() if k not in drop]
    )
    path = folder / "catalog.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path, images


def test_tiny_catalog_roundtrip(tmp_path):
    path, images = write_catalog(tmp_path)
    with load_real_galaxy_catalog(path) as cat:
        assert len(cat) == 5
        stamp = cat[3]
        assert isinstance(stamp, GalaxyStamp)
        np.testing.assert_array_equal(stamp.image, images[3])
        assert stamp.image.dtype == np.float64 and stamp.image.dtype.isnative
        assert not stamp.image.flags.writeable
        assert stamp.noise_variance == pytest.approx(1.75)
        assert stamp.pixel_scale == 0.03 and stamp.ident == 1003 and stamp.index == 3
        assert stamp.mag == pytest.approx(22.3)
        np.testing.assert_allclose(stamp.psf, 4 * np.outer(np.hanning(9), np.hanning(9)))
        assert cat[-1].ident == 1004
        assert [s.ident for s in cat[1:3]] == [1001, 1002]
        assert [s.ident for s in cat[np.array([4, 0])]] == [1004, 1000]
        assert [s.index for s in cat] == list(range(5))
        assert cat.index_of(1002) == 2
        with pytest.raises(IndexError):
            cat[5]
        with pytest.raises(KeyError):
            cat.index_of(7)
    assert not cat._open  # closed by the context manager


def test_image_dir_and_no_psf(tmp_path):
    sub = tmp_path / "imgs"
    sub.mkdir()
    path, images = write_catalog(sub, psf=False)
    moved = tmp_path / "cat.fits"
    path.rename(moved)
    with pytest.raises(CatalogError, match="gal.fits"):
        load_real_galaxy_catalog(moved)
    cat = load_real_galaxy_catalog(moved, image_dir=sub)
    assert cat[0].psf is None
    np.testing.assert_array_equal(cat[2].image, images[2])
    cat.close()


def test_lru_cache_of_open_files(tmp_path):
    path, _ = write_catalog(tmp_path)
    cat = load_real_galaxy_catalog(path, max_open_files=1)
    cat[0]
    assert len(cat._open) == 1
    cat.close()
    assert not cat._open


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="nope.fits"):
        load_real_galaxy_catalog(tmp_path / "nope.fits")


@pytest.mark.parametrize("column", ["GAL_HDU", "NOISE_VARIANCE", "IDENT"])
def test_missing_column(tmp_path, column):
    path, _ = write_catalog(tmp_path, drop=(column,))
    with pytest.raises(CatalogError, match=column) as err:
        load_real_galaxy_catalog(path)
    assert "catalog.fits" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_image_file(tmp_path):
    path, _ = write_catalog(tmp_path)
    (tmp_path / "psf.fits").unlink()
    with pytest.raises(CatalogError, match="psf.fits"):
        load_real_galaxy_catalog(path)
    cat = load_real_galaxy_catalog(path, load_psf=False)  # PSFs not needed
    assert cat[0].psf is None


def test_bad_hdu_index(tmp_path):
    path, _ = write_catalog(tmp_path, gal_hdu=np.array([0, 1, 2, 3, 17]))
    cat = load_real_galaxy_catalog(path)
    assert cat[3].ident == 1003  # lazy: good rows still readable
    with pytest.raises(CatalogError, match=r"HDU index 17 .*gal\.fits"):
        cat[4]
    cat.close()


def test_not_a_catalog(tmp_path):
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(tmp_path / "img.fits")
    with pytest.raises(CatalogError, match="HDU 1"):
        load_real_galaxy_catalog(tmp_path / "img.fits")
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all")
    with pytest.raises(CatalogError, match="junk.fits"):
        load_real_galaxy_catalog(tmp_path / "junk.fits")


def test_cosmos_example(shared_data):
    with load_real_galaxy_catalog(shared_data / COSMOS) as cat:
        assert len(cat) == 100
        sizes, ratios = [], []
        for stamp in cat:
            assert stamp.image.ndim == 2 and stamp.image.shape[0] == stamp.image.shape[1]
            assert stamp.image.dtype.isnative and np.all(np.isfinite(stamp.image))
            assert stamp.pixel_scale == pytest.approx(0.03)
            assert stamp.noise_variance > 0
            assert 0.9 < stamp.psf.sum() < 1.05
            sizes.append(stamp.image.shape[0])
            # the stamp border is mostly sky: its scatter matches NOISE_VARIANCE
            border = np.concatenate([stamp.image[:2].ravel(), stamp.image[-2:].ravel()])
            ratios.append(border.std() / np.sqrt(stamp.noise_variance))
        assert min(sizes) >= 16 and max(sizes) <= 190
        assert 30 <= np.median(sizes) <= 60
        assert 0.85 < np.median(ratios) < 1.2
        assert 20.0 < np.nanmin(cat.mag) and np.nanmax(cat.mag) < 26.5
