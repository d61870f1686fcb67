"""vaelens: strong-lens modelling with a pretrained VAE as the source-galaxy model.

Subpackages (imports point downwards only):

- :mod:`vaelens.lensing` -- pure JAX ray tracing, light profiles, PSF, noise, forward model;
- :mod:`vaelens.vae` -- Flax nnx beta-VAE, training, pretrained weights;
- :mod:`vaelens.data` -- FITS I/O, galaxy catalogues, synthetic galaxies;
- :mod:`vaelens.models` -- NumPyro models joining the lensing physics and the decoder;
- :mod:`vaelens.infer` -- MAP (BFGS), SVI, NUTS/HMC, ArviZ conversion, diagnostics.
"""

__version__ = "0.1.0"
