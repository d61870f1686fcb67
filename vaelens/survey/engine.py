"""The Dask engine of a batch fit: an embedded ``LocalCluster`` or an existing cluster.

By default :func:`dask_client` starts ``distributed.LocalCluster(n_workers=N,
threads_per_worker=1, processes=True)``, N = the number of cores this process may use: one fit
per worker process at a time, so a crash or a leak stays in one process, and the nanny restarts
a worker that dies (its task is run again elsewhere). Each worker's XLA is sized to its share of
the cores (:func:`worker_env`): XLA:CPU sizes its thread pool by the ``NPROC`` environment
variable where it is set (by the number of cores otherwise), so without it N workers would run
N pools of N threads each on N cores. ``scheduler=`` connects to a running cluster instead (a
``dask-scheduler``, dask-jobqueue on SLURM, Kubernetes); its workers need vaelens installed and
are best started with ``NPROC`` set to their cores per thread (e.g. ``NPROC=1`` for one thread
per core).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["available_cores", "dask_client", "worker_env"]

log = logging.getLogger("vaelens")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_env(cores_per_worker: int = 1) -> dict[str, str]:
    """Environment of a local worker process with ``cores_per_worker`` cores.

    ``NPROC`` sizes XLA's CPU thread pool; ``--xla_force_host_platform_device_count`` gives
    the worker as many JAX CPU devices as cores (the multi-start MAP spreads its starts over
    them), replacing a device count inherited from this process. NumPy's BLAS threads are set
    to 1 by Dask's nanny.
    """
    n = max(1, int(cores_per_worker))
    flags = re.sub(
        r"--xla_force_host_platform_device_count=\S*", "", os.environ.get("XLA_FLAGS", "")
    )
    flags = " ".join([*flags.split(), f"--xla_force_host_platform_device_count={n}"])
    return {"NPROC": str(n), "XLA_FLAGS": flags}


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "vaelens batch runs on Dask distributed: pip install 'vaelens[survey]' (or "
            "'dask[distributed]'), or fit in this process with workers=0"
        ) from None
    return distributed


@contextlib.contextmanager
def dask_client(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    client: Any = None,
    memory_limit: str | float | None = "auto",
) -> Iterator[Any]:
    """A ``distributed.Client``: ``client`` itself, one connected to ``scheduler``, or one of a
    new ``LocalCluster`` of ``workers`` processes (default: one per core).

    The cluster and the client made here are closed on exit (a given ``client`` is left open).

    Raises
    ------
    ImportError
        ``distributed`` is not installed.
    ValueError
        ``workers`` < 1, or both ``client`` and ``scheduler``.
    """
    if client is not None:
        if scheduler is not None:
            raise ValueError("give client or scheduler, not both")
        yield client
        return
    distributed = _require_distributed()
    if scheduler is not None:
        with distributed.Client(scheduler) as c:
            yield c
        return
    n = available_cores() if workers is None else int(workers)
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cores = max(1, available_cores() // n)
    with (
        distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            env=worker_env(cores),
            dashboard_address=None,
            memory_limit=memory_limit,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        log.info("Dask LocalCluster: %d worker process(es), %d core(s) each", n, cores)
        yield c
