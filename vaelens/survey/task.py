"""The fit of one catalogue object, as a Dask task: :func:`fit_object`.

It runs in a worker process: reads the object's files
(:func:`vaelens.data.inputs.load_image_data`), builds its model
(:meth:`vaelens.models.LensSpec.from_data`), fits it (:func:`vaelens.infer.fit_lens`), writes
``OUT/<id>/`` (:meth:`vaelens.infer.LensFit.write`) and returns the object's row of
``results.csv``. Whatever goes wrong with the object (a missing or corrupt file, a NaN image,
a PSF at another pixel scale, a fit that raises, a non-finite chi^2) is caught and returned as
a failed row, so one object never stops the others. Input and output are plain dictionaries of
strings and numbers (cheap to send between processes).
"""

from __future__ import annotations

import functools
import os
import time
import traceback
import warnings
from typing import Any

__all__ = ["configure_jax", "fit_object", "one_line"]

_MAX_ERROR = 500


def one_line(err: BaseException | str) -> str:
    """An exception (or message) on one line: ``Type: message``, at most 500 characters."""
    if isinstance(err, BaseException):
        text = " ".join(str(err).split())
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    else:
        text = " ".join(str(err).split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


def worker_name() -> str:
    """The Dask worker's name (its address where unnamed; ``"local"`` outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "local"
    name = worker.name
    return str(name) if name is not None and str(name) != worker.address else worker.address


def configure_jax(*, x64: bool | None = None, cache_dir: str | None = None) -> None:
    """Precision and persistent compilation cache of this process's JAX (None: unchanged).

    With ``cache_dir`` the compiled programs of more than 0.5 s are stored there, so the workers
    that share the folder compile each program once.
    """
    import jax

    if x64 is not None and bool(jax.config.jax_enable_x64) != bool(x64):
        jax.config.update("jax_enable_x64", bool(x64))
    if cache_dir and jax.config.jax_compilation_cache_dir != cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@functools.lru_cache(maxsize=4)
def load_decoder(weights: str | None = None):
    """``(decoder, description)`` of the VAE source, loaded once per process.

    ``weights`` None: the pretrained VAE. Else a safetensors file with its JSON model card
    (``vaelens train`` output), or a bare training checkpoint of the default architecture.
    """
    from vaelens.models.decoder import default_decoder
    from vaelens.vae import load_vae_file

    if weights is None:
        return default_decoder(), "pretrained"
    vae, description = load_vae_file(weights)
    return vae.decoder_function(), description


def _truth(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from vaelens.data.inputs import InputError, require_file
    from vaelens.io_results import read_json

    data = read_json(require_file(path, "truth file"))
    params = data.get("parameters", data)
    if not isinstance(params, dict):
        raise InputError(f"truth file {path} has no 'parameters' mapping")
    return params


def _fit(task: dict[str, Any]) -> dict[str, Any]:
    import jax
    import numpy as np

    from vaelens.data.inputs import load_image_data
    from vaelens.infer import fit_lens
    from vaelens.models import LensSpec
    from vaelens.survey.options import data_kwargs, fit_kwargs, spec_kwargs
    from vaelens.survey.results import summary_columns

    opts = task["options"]
    data = load_image_data(task["image"], task["psf"], **data_kwargs(opts))
    spec = LensSpec.from_data(data, **spec_kwargs(opts))
    if spec.source_model == "vae":
        decoder, decoder_kind = load_decoder(opts.get("weights"))
    else:
        decoder, decoder_kind = None, "none"
    truth = _truth(opts.get("truth"))
    fit = fit_lens(
        data,
        spec,
        key=jax.random.PRNGKey(opts["seed"]),
        decoder=decoder,
        progress_bar=False,
        **fit_kwargs(opts),
    )
    if not np.isfinite(fit.info["map_chi2"]):
        raise FloatingPointError(
            f"the MAP reached no finite chi^2 (loss {fit.info['map_loss']}); check the image, "
            "its noise model and mask"
        )
    meta = {
        "command": task.get("command"),
        "catalog": task.get("catalog"),
        "id": task["id"],
        "image": task["image"],
        "psf": task["psf"],
        "seed": opts["seed"],
        "decoder": decoder_kind,
    }
    summary = fit.write(task["out"], force=True, truth=truth, meta=meta)
    return summary_columns(summary)


def fit_object(task: dict[str, Any]) -> dict[str, Any]:
    """Fit one object and return its row of ``results.csv`` (never raises for the object).

    ``task`` holds ``id``, ``image``, ``psf``, ``out`` (its fit folder, replaced if it exists),
    ``options`` (parsed, see :mod:`vaelens.survey.options`), ``x64`` and ``jax_cache`` (see
    :func:`configure_jax`) and,
    optionally, ``error`` (a problem found in the catalogue row: the row fails at once) and the
    ``command``/``catalog`` recorded in ``summary.json``. The row has ``id``, ``status``,
    ``error``, ``wall_s``, ``worker``, ``warnings`` and, for a fitted object, the columns of
    :func:`vaelens.survey.results.summary_columns`; a failed row carries the ``traceback`` too
    (not a column of the table).
    """
    t0 = time.perf_counter()
    row: dict[str, Any] = {"id": task["id"], "status": "failed", "error": ""}
    caught: list[warnings.WarningMessage] = []
    try:
        if task.get("error"):
            raise ValueError(task["error"])
        configure_jax(x64=task.get("x64"), cache_dir=task.get("jax_cache"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            row.update(_fit(task))
        row["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - every failure of one object is its row
        row["error"] = one_line(err)
        row["traceback"] = traceback.format_exc()
    messages: list[str] = []
    for w in caught:
        text = one_line(str(w.message))
        if text not in messages:
            messages.append(text)
    row["warnings"] = " | ".join(messages)
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    row["worker"] = worker_name()
    return row
