"""Interface shared by the light profiles."""

from __future__ import annotations

__all__ = ["LightProfile"]


class LightProfile:
    """Mixin for light profiles: ``surface_brightness(x, y)`` in flux per arcsec^2."""

    def surface_brightness(self, x, y):  # pragma: no cover - interface
        """Surface brightness at ``(x, y)`` (arcsec), in amplitude units per arcsec^2."""
        raise NotImplementedError

    def __call__(self, x, y):
        return self.surface_brightness(x, y)
