"""Galaxy data: real-galaxy catalogues, preprocessing to training stamps, synthetic galaxies.

This is the bottom layer of vaelens: it depends on numpy, scipy, astropy and jax, on
:mod:`vaelens.lensing` only inside functions that need it (the pixel grid of
:class:`ImageData`, the Sersic ``b_n`` of the synthetic galaxies), never on :mod:`vaelens.vae`,
numpyro or flax.
"""

from vaelens.data.augment import (
    add_noise,
    augment,
    dihedral,
    random_dihedral,
    random_shift_jax,
)
from vaelens.data.catalog import (
    CatalogError,
    GalaxyStamp,
    RealGalaxyCatalog,
    load_real_galaxy_catalog,
)
from vaelens.data.preprocess import (
    PreparedStamp,
    crop_or_pad,
    fourier_shift,
    light_centroid,
    prepare_stamp,
)
from vaelens.data.split import split_by_id
from vaelens.data.synthetic import GALAXY_CLASSES, hst_like_psf, make_synthetic_galaxies
from vaelens.data.training_stamps import load_training_stamps

__all__ = [
    "GALAXY_CLASSES",
    "CatalogError",
    "GalaxyStamp",
    "PreparedStamp",
    "RealGalaxyCatalog",
    "add_noise",
    "augment",
    "crop_or_pad",
    "dihedral",
    "fourier_shift",
    "hst_like_psf",
    "light_centroid",
    "load_real_galaxy_catalog",
    "load_training_stamps",
    "make_synthetic_galaxies",
    "prepare_stamp",
    "random_dihedral",
    "random_shift_jax",
    "split_by_id",
]
from vaelens.data.image_data import ImageData  # noqa: E402
from vaelens.data.multiband import MultiBandData, as_multiband  # noqa: E402

__all__ += ["ImageData", "MultiBandData", "as_multiband"]
