"""Light profiles (pytrees) with ``surface_brightness(x, y)``."""

from ._base import LightProfile
from .gaussian import Gaussian
from .pixelated import PixelatedSource
from .sersic import Sersic
from .shapelets import Shapelets, shapelet_design_matrix

__all__ = [
    "Gaussian",
    "LightProfile",
    "PixelatedSource",
    "Sersic",
    "Shapelets",
    "shapelet_design_matrix",
]
