"""``vaelens info``: package versions, the pretrained model card and the JAX devices."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "vaelens",
    "jax",
    "jaxlib",
    "numpyro",
    "flax",
    "optax",
    "arviz",
    "astropy",
    "numpy",
    "scipy",
    "matplotlib",
)


def package_versions() -> dict[str, str]:
    """Installed versions of vaelens and its main dependencies (``"missing"`` if absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def model_card() -> dict[str, Any] | None:
    """The JSON model card shipped with the pretrained VAE weights, or None if there is none."""
    folder = Path(__file__).resolve().parents[1] / "vae" / "pretrained"
    cards = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not cards:
        return None
    try:
        return json.loads(cards[0].read_text())
    except (OSError, json.JSONDecodeError) as err:
        return {"error": f"unreadable model card {cards[0].name}: {err}"}


def _card_lines(card: dict[str, Any] | None) -> list[str]:
    if card is None:
        return ["  (no pretrained weights installed: a random-weight decoder is used)"]
    lines = []
    for key, value in card.items():
        if isinstance(value, dict):
            lines.append(f"  {key}:")
            for k2, v2 in value.items():
                lines.append(f"    {k2}: {_short(v2)}")
        else:
            lines.append(f"  {key}: {_short(value)}")
    return lines


def _short(value: Any, width: int = 90) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."


def info_text() -> str:
    """The text printed by ``vaelens info``."""
    import jax

    lines = ["vaelens environment", ""]
    lines += [f"  {k:<11s} {v}" for k, v in package_versions().items()]
    lines += ["", "JAX devices"]
    lines += [f"  {d.platform}:{d.id} {getattr(d, 'device_kind', '')}" for d in jax.devices()]
    lines += [f"  x64 enabled: {bool(jax.config.jax_enable_x64)}"]
    lines += ["", "Pretrained VAE model card"]
    lines += _card_lines(model_card())
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print :func:`info_text`."""
    sys.stdout.write(info_text())
    return 0
