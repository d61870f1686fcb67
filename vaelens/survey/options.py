"""The per-object options of a batch fit: names, types, defaults and where each one goes.

An option has the name of the ``vaelens fit`` option with dashes as underscores
(``--mask-radius`` is ``mask_radius``, ``--no-shear`` is ``shear = false``); it is given for the
whole batch (``options=`` of :func:`vaelens.survey.fit_catalog`, the command line of
``vaelens batch``) and a catalogue column of the same name overrides it for its row. An empty
cell (or NaN in a numeric column, a masked value) keeps the batch value.

Each option goes to one place: reading the data (:func:`vaelens.data.inputs.load_image_data`),
the model (:meth:`vaelens.models.LensSpec.from_data`), the inference
(:func:`vaelens.infer.fit_lens`) or the run (seed, decoder weights, truth of a mock).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ALIASES",
    "DEFAULT_OPTIONS",
    "OPTIONS",
    "Option",
    "check_options",
    "data_kwargs",
    "fit_kwargs",
    "is_missing",
    "parse_option",
    "resolve_path",
    "spec_kwargs",
]


class Option:
    """One option: ``kind`` (its type), ``group`` (where it goes) and ``default``.

    ``kind`` is ``"float+"`` (positive finite float), ``"int+"`` / ``"int0"`` (positive /
    non-negative integer), ``"bool"``, ``"path"`` (a file or folder; relative paths in a
    catalogue are relative to the catalogue's folder), ``"hdu"`` (index or extension name),
    ``"range"`` (two floats) or a tuple of allowed strings.
    """

    __slots__ = ("default", "group", "kind", "target")

    def __init__(self, kind, group: str, default: Any = None, target: str | None = None):
        self.kind, self.group, self.default, self.target = kind, group, default, target

    def __repr__(self) -> str:
        return f"Option({self.kind!r}, {self.group!r}, default={self.default!r})"


#: Every per-object option, by name. ``target`` is the keyword of the function it goes to
#: where that differs from the name.
OPTIONS: dict[str, Option] = {
    # reading the data (vaelens.data.inputs.load_image_data)
    "hdu": Option("hdu", "data", 0),
    "noise_map": Option("path", "data"),
    "bkg_rms": Option("float+", "data"),
    "exposure_time": Option("float+", "data"),
    "pixel_scale": Option("float+", "data"),
    "mask": Option("path", "data"),
    "mask_radius": Option("float+", "data"),
    # the model (LensSpec.from_data)
    "mass_profile": Option(("epl", "sie"), "spec", "epl"),
    "shear": Option("bool", "spec", True, "include_shear"),
    "lens_light": Option("bool", "spec", True, "include_lens_light"),
    "source": Option(("vae", "sersic"), "spec", "vae", "source_model"),
    "supersampling": Option("int+", "spec", 2),
    "theta_E": Option("float+", "spec"),
    "gamma_range": Option("range", "spec"),
    "center_prior_sigma": Option("float+", "spec", None, "center_sigma"),
    "model_error": Option("float+", "spec"),
    # the inference (fit_lens)
    "method": Option(("map", "svi", "nuts", "hmc"), "fit", "map"),
    "starts": Option("int+", "fit", 8),
    "optimizer": Option(("auto", "lbfgs", "bfgs"), "fit", "auto"),
    "chains": Option("int+", "fit", 2),
    "warmup": Option("int+", "fit", 300),
    "samples": Option("int+", "fit", 300),
    "svi_steps": Option("int+", "fit", 2000),
    "max_tree_depth": Option("int+", "fit", 10),
    "dense_mass": Option("bool", "fit", True),
    "init_mass": Option(("laplace", "gauss-newton"), "fit", "laplace"),
    "init_from": Option("path", "fit"),
    # the run
    "seed": Option("int0", "run", 0),
    "weights": Option("path", "run"),
    "truth": Option("path", "run"),
}

#: Other accepted spellings of catalogue columns.
ALIASES = {"exptime": "exposure_time", "noise": "noise_map", "center_sigma": "center_prior_sigma"}

#: The batch defaults (those of ``vaelens fit``, with ``method="map"``).
DEFAULT_OPTIONS: dict[str, Any] = {name: opt.default for name, opt in OPTIONS.items()}

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def is_missing(value: Any) -> bool:
    """Whether a catalogue cell is empty: None, masked, a blank string or a float NaN."""
    if value is None or value is np.ma.masked:
        return True
    if isinstance(value, np.ma.MaskedArray):
        return bool(np.all(value.mask))
    if isinstance(value, str | bytes):
        return not (value.decode() if isinstance(value, bytes) else value).strip()
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return False


def parse_option(name: str, value: Any, base: str | os.PathLike | None = None) -> Any:
    """``value`` of option ``name`` as the type the fit takes.

    Strings are parsed (``"0.05"``, ``"true"``/``"no"``, ``"1.6 2.4"`` for a range); numpy
    scalars become Python ones. A relative path is taken relative to ``base`` when it is given
    (the catalogue's folder) and made absolute.

    Raises
    ------
    ValueError
        An unknown option or a value of the wrong type or range (the message names the option).
    """
    if name not in OPTIONS:
        raise ValueError(f"unknown option {name!r}; known: {', '.join(OPTIONS)}")
    kind = OPTIONS[name].kind
    if isinstance(value, bytes):
        value = value.decode()
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    text = value.strip() if isinstance(value, str) else value
    try:
        if kind == "float+":
            x = float(text)
            if not (x > 0 and math.isfinite(x)):
                raise ValueError
            return x
        if kind in ("int+", "int0"):
            x = float(text)
            if x != int(x) or int(x) < (1 if kind == "int+" else 0):
                raise ValueError
            return int(x)
        if kind == "bool":
            if isinstance(text, bool):
                return text
            if isinstance(text, int | float) and text in (0, 1):
                return bool(text)
            if str(text).lower() in _TRUE:
                return True
            if str(text).lower() in _FALSE:
                return False
            raise ValueError
        if kind == "path":
            return resolve_path(text, base)
        if kind == "hdu":
            from vaelens.data.inputs import parse_hdu

            return parse_hdu(text)
        if kind == "range":
            if isinstance(text, str):
                parts = text.replace(",", " ").strip("[]() ").split()
            else:
                parts = list(text)
            low, high = (float(p) for p in parts)
            return (low, high)
        if str(text) not in kind:
            raise ValueError
        return str(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: bad value {value!r} ({_expected(kind)})") from None


def resolve_path(value: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """The absolute path of ``value`` (``~`` expanded), relative to ``base`` when given."""
    p = Path(os.fspath(value)).expanduser()
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    return str(p.absolute())


def _expected(kind) -> str:
    return {
        "float+": "a positive number",
        "int+": "a positive integer",
        "int0": "an integer >= 0",
        "bool": "true or false",
        "path": "a file path",
        "hdu": "an HDU index or name",
        "range": "two numbers LOW HIGH",
    }.get(kind, f"one of {', '.join(kind) if isinstance(kind, tuple) else kind}")


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`DEFAULT_OPTIONS` updated with ``options``, each parsed (paths made absolute).

    Raises
    ------
    ValueError
        An unknown name or a bad value.
    """
    out = dict(DEFAULT_OPTIONS)
    for name, value in (options or {}).items():
        name = ALIASES.get(name, name)
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r}; known: {', '.join(OPTIONS)}")
        out[name] = None if is_missing(value) else parse_option(name, value)
    return out


def _group(options: Mapping[str, Any], group: str) -> dict[str, Any]:
    return {
        OPTIONS[name].target or name: options[name]
        for name in OPTIONS
        if OPTIONS[name].group == group and name in options
    }


def data_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords of :func:`vaelens.data.inputs.load_image_data` (besides image and PSF)."""
    return _group(options, "data")


def spec_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords of :meth:`vaelens.models.LensSpec.from_data`."""
    return _group(options, "spec")


def fit_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords of :func:`vaelens.infer.fit_lens` (besides data, spec, key and decoder)."""
    return _group(options, "fit")
