"""Sampling in chunks: the on-disk record of a NUTS/HMC run that lets it be resumed.

:func:`vaelens.infer.nuts` and :func:`vaelens.infer.hmc` draw their samples in chunks of
``chunk_size`` iterations per chain. With a ``checkpoint`` folder every finished chunk is written
there at once, so that an interrupted run (Ctrl-C, ``kill``, out of memory) leaves its draws on
disk, and ``resume=True`` continues it from the last written sampler state. The random stream
does not depend on the chunk boundaries (each chunk starts from the previous chunk's last state,
random key included), so a resumed run gives the draws of an uninterrupted one.

Folder layout (``CHECKPOINT/sampling/``):

- ``settings.json``: the sampler settings and the size of the problem, checked on resume;
- ``state.npz``: the whitening (``x_star``, ``lmat``), the last sampler state (step size, mass
  matrix, position, random key, ...), the number of finished chunks and the running moments
  of the image-valued deterministic sites;
- ``chunk_00000.npz``, ...: the whitened draws ``u`` (chain, draw, dim) and the per-draw
  sampler statistics of each chunk.

Image-valued deterministic sites (the decoded ``source``, the ``model_image``) are not stored
per draw unless asked (``keep_draws``): their mean and standard deviation over all draws are
accumulated chunk by chunk (:class:`RunningMoments`) and stored in the ``posterior_moments``
group of the InferenceData (:func:`image_moments` reads either form).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ResumeError",
    "RunningMoments",
    "SamplingInterrupted",
    "SamplingStore",
    "image_moments",
    "MOMENTS_GROUP",
]

#: InferenceData group of the accumulated per-pixel moments of image-valued sites.
MOMENTS_GROUP = "posterior_moments"

#: Sub-folder of a checkpoint folder that holds the chunks and the sampler state.
SAMPLING_DIR = "sampling"

_FORMAT = 1


class ResumeError(ValueError):
    """A checkpoint folder cannot be resumed: missing, unreadable, or from another run."""


class SamplingInterrupted(KeyboardInterrupt):
    """Sampling stopped by Ctrl-C or SIGTERM after some chunks were written.

    Attributes
    ----------
    folder
        The checkpoint folder (None if the run had none).
    draws_done, draws_total
        Draws per chain written so far, and asked for.
    """

    def __init__(self, message: str, folder: Path | None, draws_done: int, draws_total: int):
        super().__init__(message)
        self.folder = folder
        self.draws_done = draws_done
        self.draws_total = draws_total


class RunningMoments:
    """Per-element mean and variance of a stream of batches (Chan et al. 1979 update).

    Merging the count ``n``, mean and sum of squared deviations ``M2`` of each batch gives the
    moments of all values seen, independently of how the stream was cut into batches (up to
    rounding), in float64.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.count = 0
        self.mean = np.zeros(shape, np.float64)
        self.m2 = np.zeros(shape, np.float64)

    def update(self, batch: np.ndarray) -> None:
        """Add a batch of values with a leading draw axis."""
        b = np.asarray(batch, np.float64)
        nb = b.shape[0]
        if nb == 0:
            return
        mb = b.mean(axis=0)
        m2b = ((b - mb) ** 2).sum(axis=0)
        n = self.count + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.count * nb / n)
        self.count = n

    @property
    def std(self) -> np.ndarray:
        """Standard deviation (``ddof=0``) of all values seen."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def state(self, name: str) -> dict[str, np.ndarray]:
        return {f"moments_{name}_mean": self.mean, f"moments_{name}_m2": self.m2,
                f"moments_{name}_count": np.asarray(self.count)}

    @classmethod
    def from_state(cls, name: str, arrays) -> RunningMoments:
        out = cls(np.shape(arrays[f"moments_{name}_mean"]))
        out.mean = np.asarray(arrays[f"moments_{name}_mean"], np.float64)
        out.m2 = np.asarray(arrays[f"moments_{name}_m2"], np.float64)
        out.count = int(arrays[f"moments_{name}_count"])
        return out


def image_moments(idata, name: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(mean, std, count)`` of an image-valued site over all draws (``std`` with ``ddof=0``).

    Read from the per-draw posterior variable if it was stored, else from the accumulated
    ``posterior_moments`` group; None if neither holds ``name``.
    """
    post = idata.posterior
    if name in post.data_vars:
        arr = np.asarray(post[name].values, np.float64)
        flat = arr.reshape((-1, *arr.shape[2:]))
        return flat.mean(axis=0), flat.std(axis=0), int(flat.shape[0])
    if MOMENTS_GROUP in idata.groups():
        ds = getattr(idata, MOMENTS_GROUP)
        if f"{name}_mean" in ds.data_vars:
            return (
                np.asarray(ds[f"{name}_mean"].values, np.float64),
                np.asarray(ds[f"{name}_std"].values, np.float64),
                int(ds.attrs.get("num_draws", 0)),
            )
    return None


def _atomic_savez(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
        raise ResumeError(f"cannot read {path} ({exc}); the checkpoint is corrupt") from None


class SamplingStore:
    """The ``sampling/`` sub-folder of a checkpoint folder (see the module notes)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser().absolute()
        self.dir = self.folder / SAMPLING_DIR

    # ----------------------------------------------------------------- writing
    def create(self, settings: dict[str, Any]) -> None:
        """Start a new record (an existing one is replaced)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in self.dir.glob("*"):
            p.unlink()
        tmp = self.dir / "settings.json.tmp"
        tmp.write_text(json.dumps({"format": _FORMAT, **settings}, indent=1, default=str))
        os.replace(tmp, self.dir / "settings.json")

    def write_chunk(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        _atomic_savez(self.dir / f"chunk_{index:05d}.npz", **arrays)

    def write_state(self, arrays: dict[str, np.ndarray]) -> None:
        _atomic_savez(self.dir / "state.npz", **arrays)

    # ----------------------------------------------------------------- reading
    def exists(self) -> bool:
        return (self.dir / "settings.json").is_file()

    def settings(self) -> dict[str, Any]:
        p = self.dir / "settings.json"
        if not p.is_file():
            raise ResumeError(
                f"{self.folder} holds no interrupted sampling run ({SAMPLING_DIR}/settings.json "
                "is missing)"
            )
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"cannot read {p} ({exc}); the checkpoint is corrupt") from None

    def check_settings(self, expected: dict[str, Any]) -> None:
        """Raise :class:`ResumeError` if the stored settings differ from ``expected``."""
        stored = self.settings()
        diff = [
            f"{k}: {stored.get(k)!r} in the checkpoint, {v!r} now"
            for k, v in json.loads(json.dumps(expected, default=str)).items()
            if stored.get(k) != v
        ]
        if diff:
            raise ResumeError(
                f"the checkpoint in {self.folder} is of another run ({'; '.join(diff)})"
            )

    def state(self) -> dict[str, np.ndarray] | None:
        p = self.dir / "state.npz"
        return _load_npz(p) if p.is_file() else None

    def chunks(self, num: int) -> list[dict[str, np.ndarray]]:
        out = []
        for i in range(num):
            p = self.dir / f"chunk_{i:05d}.npz"
            if not p.is_file():
                raise ResumeError(f"{p} is missing; the checkpoint is incomplete")
            out.append(_load_npz(p))
        return out
