"""NumPyro models joining the lensing physics and the VAE decoder.

- :func:`lens_model` -- a lens image (EPL/SIE + shear, optional Sersic lens light, VAE or Sersic
  source), configured by a frozen :class:`LensSpec` holding the prior configs;
- :func:`galaxy_model` -- a single galaxy stamp fitted by the decoder;
- :func:`simulate_lens` -- mock data with known truth.
"""

from vaelens.models.decoder import Decoder, default_decoder, resolve_decoder
from vaelens.models.galaxy import galaxy_model
from vaelens.models.lens import (
    LensComponents,
    lens_components,
    lens_model,
    render_lens,
    sample_lens_params,
)
from vaelens.models.priors import (
    GalaxyPriors,
    LensLightPriors,
    LensPriors,
    SersicPriors,
    SourcePriors,
    ellipticity_from_raw,
    raw_from_ellipticity,
)
from vaelens.models.simulate import default_truth, simulate_lens
from vaelens.models.spec import LensSpec
from vaelens.models.toy import blob_decoder

__all__ = [
    "Decoder",
    "GalaxyPriors",
    "LensComponents",
    "LensLightPriors",
    "LensPriors",
    "LensSpec",
    "SersicPriors",
    "SourcePriors",
    "blob_decoder",
    "default_decoder",
    "default_truth",
    "ellipticity_from_raw",
    "galaxy_model",
    "lens_components",
    "lens_model",
    "raw_from_ellipticity",
    "render_lens",
    "resolve_decoder",
    "sample_lens_params",
    "simulate_lens",
]
