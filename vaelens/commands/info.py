"""``vaelens info``: package versions, the pretrained model card and the JAX devices.

File-system paths inside the card's text (a training command's ``--catalog`` or ``--out``, say)
are shown by their last component only: they name folders of the machine the weights were
trained on, which mean nothing elsewhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from vaelens.infer.convert import package_versions

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


#: A path token: ``/a/b``, ``~/a``, ``./a`` or ``../a/b`` (also Windows ``C:\a``), not preceded
#: by a word character, so that units such as ``arcsec/px`` or ``galaxies/s`` are left alone.
_PATH = re.compile(r"(?<![\w./~\\-])(?:~|\.{1,2}|[A-Za-z]:)?[/\\][^\s\"',;()\[\]{}]+")


def strip_paths(text: str) -> str:
    """``text`` with every absolute or ``./``, ``../``, ``~/`` path cut to its last component.

    >>> strip_paths("--catalog /data/cosmos/cat.fits --out ../runs/vae_run/")
    '--catalog cat.fits --out vae_run'
    """

    def last(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", match.group(0)) if p not in ("", ".", "..", "~")]
        return parts[-1] if parts else ""

    return _PATH.sub(last, text)


def _card_lines(card: dict[str, Any] | None) -> list[str]:
    if card is None:
        return ["  (no pretrained weights installed: a random-weight decoder is used)"]
    return _dict_lines(card, indent=2)


def _dict_lines(block: dict[str, Any], indent: int, depth: int = 0) -> list[str]:
    """Nested dicts as indented lines, three levels deep; deeper values as one short JSON line."""
    pad = " " * indent
    lines = []
    for key, value in block.items():
        if key == "history" and isinstance(value, list):
            lines.append(f"{pad}history: {len(value)} epochs (per-epoch metrics, in the card file)")
        elif isinstance(value, dict) and depth < 2:
            lines.append(f"{pad}{key}:")
            lines += _dict_lines(value, indent + 2, depth + 1)
        elif isinstance(value, str):
            lines += textwrap.wrap(
                strip_paths(value),
                width=100,
                initial_indent=f"{pad}{key}: ",
                subsequent_indent=pad + "    ",
                break_on_hyphens=False,
            ) or [f"{pad}{key}: "]
        else:
            lines.append(f"{pad}{key}: {_short(value)}")
    return lines


def _short(value: Any, width: int = 90) -> str:
    text = strip_paths(json.dumps(value))
    return text if len(text) <= width else text[: width - 3] + "..."


def info_text() -> str:
    """The text printed by ``vaelens info``."""
    import jax

    lines = ["vaelens environment", ""]
    lines += [f"  {k:<11s} {v}" for k, v in package_versions(PACKAGES).items()]
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
