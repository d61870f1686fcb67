"""NumPyro models joining the lensing physics and the VAE decoder.

- :func:`lens_model` -- a lens image (EPL/SIE + shear, optional Sersic lens light, VAE or Sersic
  source), configured by a frozen :class:`LensSpec` holding the prior configs;
- :func:`multiband_lens_model` -- the same lens in several bands (one mass and source shape,
  per-band amplitudes: the colours), with :func:`simulate_multiband` for mocks;
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
from vaelens.models.multiband import (
    BandSetup,
    band_parameter_names,
    band_params,
    model_for,
    multiband_lens_model,
    simulate_multiband,
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
    "BandSetup",
    "Decoder",
    "GalaxyPriors",
    "LensComponents",
    "LensLightPriors",
    "LensPriors",
    "LensSpec",
    "SersicPriors",
    "SourcePriors",
    "band_parameter_names",
    "band_params",
    "blob_decoder",
    "default_decoder",
    "default_truth",
    "ellipticity_from_raw",
    "galaxy_model",
    "lens_components",
    "lens_model",
    "model_for",
    "multiband_lens_model",
    "raw_from_ellipticity",
    "render_lens",
    "resolve_decoder",
    "sample_lens_params",
    "simulate_lens",
    "simulate_multiband",
]
