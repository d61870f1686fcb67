"""Saving and loading VAE weights: safetensors files plus a JSON model card.

Weights are stored with :mod:`safetensors` (a flat ``name -> array`` container; no pickle, so a
weights file cannot execute code). Next to every weights file ``NAME.safetensors`` lives a model
card ``NAME.json`` with the :class:`~vaelens.vae.config.VAEConfig`, the data and training settings,
metrics, the training time, package versions and the SHA-256 of the weights file, which
:func:`load_weights` / :func:`load_pretrained` verify before building the network.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import load_file, save_file

from vaelens.vae.config import VAEConfig
from vaelens.vae.network import VAE

__all__ = [
    "PRETRAINED_DIR",
    "PRETRAINED_NAME",
    "WeightsError",
    "card_path",
    "card_pixel_scale",
    "file_sha256",
    "load_model_card",
    "load_pretrained",
    "pretrained_pixel_scale",
    "load_state",
    "load_vae_file",
    "load_weights",
    "save_state",
    "save_weights",
]

#: Folder of the weights shipped with the package.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
#: File name (without suffix) of the shipped default model.
PRETRAINED_NAME = "vae_default"


class WeightsError(RuntimeError):
    """A weights file or its model card is missing, corrupt or does not match the network."""


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _flatten(state: Any) -> tuple[dict[str, np.ndarray], list[str], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    names = ["/".join(_key_name(k) for k in path) for path, _ in leaves]
    arrays = {n: np.asarray(v) for n, (_, v) in zip(names, leaves, strict=True)}
    return arrays, names, treedef


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 digest of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(weights_path: str | Path) -> Path:
    """Path of the JSON model card belonging to a ``.safetensors`` weights file."""
    return Path(weights_path).with_suffix(".json")


def save_state(path: str | Path, obj: nnx.Module | nnx.Optimizer, filter_: Any = ...) -> None:
    """Write the (filtered) nnx state of ``obj`` to a safetensors file.

    Parameters
    ----------
    path
        Output file; written to a temporary name first and renamed, so an interrupted write never
        leaves a truncated file under ``path``.
    obj
        An nnx object (a :class:`VAE`, an ``nnx.Optimizer``, ...).
    filter_
        nnx filter of the variables to store (default: all state).
    """
    state = nnx.state(obj, filter_) if filter_ is not ... else nnx.state(obj)
    arrays, _, _ = _flatten(state)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(
        {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in arrays.items()}, str(tmp)
    )
    tmp.replace(path)


def load_state(path: str | Path, obj: nnx.Module | nnx.Optimizer, filter_: Any = ...) -> None:
    """Load arrays written by :func:`save_state` into ``obj`` in place (``nnx.update``).

    Raises
    ------
    WeightsError
        If a variable is missing from the file or has another shape.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        stored = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise WeightsError(f"cannot read weights file {path}: {err}") from err
    state = nnx.state(obj, filter_) if filter_ is not ... else nnx.state(obj)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    new = []
    for key_path, leaf in leaves:
        name = "/".join(_key_name(k) for k in key_path)
        if name not in stored:
            raise WeightsError(f"{path}: variable {name!r} missing (architecture mismatch?)")
        arr = stored[name]
        shape = tuple(leaf.shape)  # works for arrays and abstract ShapeDtypeStructs
        if arr.size == 1 and int(np.prod(shape)) == 1:  # scalars (e.g. optimizer step counts)
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise WeightsError(
                f"{path}: variable {name!r} has shape {arr.shape}, network expects "
                f"{shape} (architecture mismatch?)"
            )
        new.append(jax.numpy.asarray(arr, dtype=leaf.dtype))
    nnx.update(obj, jax.tree_util.tree_unflatten(treedef, new))


def _versions() -> dict[str, str]:
    import flax
    import optax

    import vaelens

    return {
        "vaelens": vaelens.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_weights(
    model: VAE, path: str | Path, *, card: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Save the parameters of ``model`` to ``path`` (safetensors) and its model card (JSON).

    Parameters
    ----------
    model
        The VAE to save (only ``nnx.Param`` variables are stored).
    path
        Weights file, conventionally ``NAME.safetensors``; the card goes to ``NAME.json``.
    card
        Extra model-card entries (data used, metrics, training time, ...).

    Returns
    -------
    dict
        The model card as written, including ``sha256`` of the weights file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_state(path, model, nnx.Param)
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    full = {
        "name": path.stem,
        "format": "safetensors",
        "weights_file": path.name,
        "config": model.config.to_dict(),
        "n_parameters": n_params,
        "n_decoder_parameters": sum(
            int(np.size(x)) for x in jax.tree.leaves(nnx.state(model.decoder, nnx.Param))
        ),
        "image_convention": _image_convention(model.config),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    full.update(card or {})
    full["sha256"] = file_sha256(path)
    full["size_bytes"] = path.stat().st_size
    card_path(path).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return full


def _image_convention(config: VAEConfig) -> str:
    n = config.image_size
    scale = "" if config.pixel_scale is None else f", {config.pixel_scale:g} arcsec/px"
    return f"unit total flux (pixel sum 1), {n}x{n}{scale}"


def card_pixel_scale(card: dict[str, Any]) -> float | None:
    """Pixel scale (arcsec) of the decoded images recorded in a model card, or None.

    Read from ``card["config"]["pixel_scale"]`` if set, else from the ``pixel_scale`` entries of
    the card's ``data`` section (``data["pixel_scale"]`` or ``data[<set>]["pixel_scale"]``).

    Raises
    ------
    WeightsError
        If the card records different pixel scales.
    """
    found = {}
    config_scale = card.get("config", {}).get("pixel_scale")
    if config_scale is not None:
        found["config"] = float(config_scale)
    data = card.get("data", {})
    if isinstance(data, dict):
        if data.get("pixel_scale") is not None:
            found["data"] = float(data["pixel_scale"])
        for name, entry in data.items():
            if isinstance(entry, dict) and entry.get("pixel_scale") is not None:
                found[f"data.{name}"] = float(entry["pixel_scale"])
    if len(set(found.values())) > 1:
        raise WeightsError(f"model card records different pixel scales: {found}")
    return next(iter(found.values()), None)


def load_model_card(path: str | Path) -> dict[str, Any]:
    """Read the JSON model card of a weights file (``NAME.json`` next to ``NAME.safetensors``)."""
    cpath = card_path(path)
    if not cpath.is_file():
        raise WeightsError(f"model card not found: {cpath} (needed for the config and sha256)")
    try:
        return json.loads(cpath.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"model card {cpath} is not valid JSON: {err}") from err


def load_weights(path: str | Path, *, verify: bool = True) -> VAE:
    """Build a :class:`VAE` from a weights file and its model card.

    Parameters
    ----------
    path
        ``NAME.safetensors``; the card ``NAME.json`` must sit next to it.
    verify
        Check the file's SHA-256 against the card before loading (default True).

    Raises
    ------
    WeightsError
        Missing file or card, SHA-256 mismatch (corrupt or replaced file), architecture mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    card = load_model_card(path)
    if verify:
        expected = card.get("sha256")
        actual = file_sha256(path)
        if expected != actual:
            raise WeightsError(
                f"weights file {path} is corrupt or was modified: sha256 {actual} does not match "
                f"{expected} recorded in {card_path(path)}"
            )
    config = VAEConfig.from_dict(card["config"])
    config = dataclasses.replace(config, pixel_scale=card_pixel_scale(card))
    # abstract model (shapes only, no random initialisation), then fill in the stored arrays
    model = nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0)))
    load_state(path, model, nnx.Param)
    return model


def load_vae_file(path: str | Path) -> tuple[VAE, str]:
    """A VAE from a safetensors file, and a one-line description of what was loaded.

    ``NAME.safetensors`` with its model card ``NAME.json`` beside it (``vaelens train``
    output, SHA-256 verified; :func:`load_weights`), or a bare training checkpoint
    (``.../checkpoint/model.safetensors``) of the default architecture.

    Raises
    ------
    WeightsError
        A missing, corrupt, truncated or non-safetensors file, or weights of another
        architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if card_path(path).is_file():
            return load_weights(path), f"weights {path.name}"
        vae = VAE(VAEConfig.default(), rngs=nnx.Rngs(0))
        try:
            load_state(path, vae, nnx.Param)
        except WeightsError:
            load_state(path, vae)
        return vae, f"checkpoint {path.name}"
    except WeightsError:
        raise
    except Exception as err:  # noqa: BLE001 - safetensors raises its own types for bad files
        raise WeightsError(f"{path} is not a readable safetensors file ({err})") from None


def load_pretrained(name: str = PRETRAINED_NAME) -> VAE:
    """The VAE shipped with vaelens (offline, SHA-256 verified).

    Parameters
    ----------
    name
        Name of the weights in ``vaelens/vae/pretrained/`` (default ``"vae_default"``).

    Raises
    ------
    WeightsError
        If the file is missing (e.g. an installation without package data) or corrupt.
    """
    path = PRETRAINED_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights {path} not found; reinstall vaelens with its package data or "
            "train new weights with `python -m vaelens.vae.train`"
        )
    return load_weights(path, verify=True)


def pretrained_pixel_scale(name: str = PRETRAINED_NAME) -> float:
    """Pixel scale (arcsec) of the shipped VAE's images, read from its model card.

    Raises
    ------
    WeightsError
        If the card is missing or records no pixel scale.
    """
    card = load_model_card(PRETRAINED_DIR / f"{name}.safetensors")
    scale = card_pixel_scale(card)
    if scale is None:
        raise WeightsError(f"model card of {name!r} records no pixel scale")
    return scale
