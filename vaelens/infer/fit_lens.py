"""The lens-fitting recipe: :func:`fit_lens` (what ``vaelens fit`` runs) and its :class:`LensFit`.

Every method starts from a multi-start MAP of :func:`vaelens.models.lens_model`:

- a VAE source is fitted in two stages (:func:`vaelens.infer.staged_map_fit`): the starts first
  hold the source at the decoder's mean galaxy (``z = 0``) while the lens and the source
  placement move, then the best of them are refined with everything free, beside as many plain
  prior draws (the best of all wins);
- a restart (``init_from``: an earlier fit) refines the lowest-chi^2 draw of each of its chains;
- the Laplace covariance at the MAP is capped at the prior's width in every unconstrained
  direction (:func:`cap_covariance`) before it seeds a sampler, so that a flat or negative
  direction of the Hessian does not throw the chains or the metric far outside the prior.

Then ``method`` decides what the posterior is: ``"map"`` -- independent draws of the Laplace
approximation; ``"svi"`` -- a full-covariance Gaussian guide started at the MAP;
``"nuts"``/``"hmc"`` -- NumPyro's samplers in coordinates whitened by the MAP covariance.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np

from vaelens.infer._laplace import cap_covariance
from vaelens.infer._map_result import MAPResult
from vaelens.infer.map import map_fit, staged_map_fit
from vaelens.infer.restart import init_points_from, load_init_draws

__all__ = ["LensFit", "fit_lens"]

log = logging.getLogger("vaelens")

Method = Literal["map", "svi", "nuts", "hmc"]
METHODS = ("map", "svi", "nuts", "hmc")


def default_optimizer() -> str:
    """BFGS in float64, L-BFGS in float32 (where the BFGS line search tends to stall)."""
    return "bfgs" if jax.config.jax_enable_x64 else "lbfgs"


def chain_method(chains: int) -> str:
    """How NumPyro runs the chains: one device each where there are enough devices
    ("parallel"; on a CPU, ``vaelens fit`` asks for one host device per chain), in one batch on
    a single accelerator ("vectorized"), else one after the other ("sequential")."""
    if chains > 1 and jax.local_device_count() >= chains:
        return "parallel"
    if chains > 1 and jax.default_backend() != "cpu":
        return "vectorized"
    return "sequential"


@dataclasses.dataclass(frozen=True, eq=False)
class LensFit:
    """Result of :func:`fit_lens`.

    Attributes
    ----------
    idata
        ArviZ InferenceData of the posterior: Laplace draws for ``method="map"``, guide draws
        for SVI, chains for NUTS/HMC; ``idata.attrs["method"]`` says which.
    map
        The multi-start MAP (:class:`vaelens.infer.MAPResult`) every method starts from.
    data, spec, decoder
        The fitted :class:`vaelens.data.ImageData` (or :class:`vaelens.data.MultiBandData`),
        :class:`vaelens.models.LensSpec` and source decoder (None for a Sersic source).
    method
        ``"map"``, ``"svi"``, ``"nuts"`` or ``"hmc"``.
    settings
        The inference settings of the call (starts, optimiser, chains, ...).
    info
        MAP statistics: loss, chi^2, starts that met their tolerance, losses of all starts,
        number of fitted parameters.
    timings
        Wall time of each stage in seconds (``map``, ``laplace draws`` / ``svi`` / ``nuts``,
        ``total``).
    """

    idata: Any
    map: MAPResult
    data: Any
    spec: Any
    decoder: Callable | None
    method: str
    settings: dict[str, Any]
    info: dict[str, Any]
    timings: dict[str, float]

    def parameter_names(self) -> list[str]:
        """The physical scalar parameters of the fit, in the order of the spec."""
        from vaelens.fit_folder import scalar_names

        return scalar_names(self.idata, self.spec)

    def summary(self):
        """pandas DataFrame per physical parameter: ``arviz.summary`` columns (mean, sd, HDI,
        R-hat and ESS for samplers), the 16/50/84 percentiles and, beside them, the MAP value
        (``map``) and its delta-method Laplace sigma (``laplace_sd``)."""
        from vaelens.fit_folder import summary_table

        table = summary_table(self.idata, self.parameter_names())
        values, sd = self.map.summary_values(), self.map.sigma
        table["map"] = [values.get(n, np.nan) for n in table.index]
        table["laplace_sd"] = [sd.get(n, np.nan) for n in table.index]
        return table

    def write(
        self,
        path: str | os.PathLike,
        *,
        force: bool = False,
        truth: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the output folder (``posterior.nc``, ``summary.csv``, ``summary.json``,
        ``model.png``, ``corner.png``, ``trace.png``) atomically and return the summary.

        The folder is written under a temporary name and renamed when complete; an existing
        folder is replaced only with ``force``. ``truth`` (true parameters of a mock) is drawn
        on the plots and compared in the summary; ``meta`` adds entries to ``summary.json``
        (e.g. the command line and the input files). Writing into the fit's own
        ``checkpoint`` folder replaces it and keeps its ``sampling/`` record.
        """
        from vaelens.fit_folder import write_fit_folder

        carry: tuple[str, ...] = ()
        own = self.settings.get("checkpoint")
        if own is not None and Path(own) == Path(path).expanduser().resolve():
            force, carry = True, ("sampling",)  # the folder holds this fit's own chunks
        return write_fit_folder(path, self, force=force, truth=truth, meta=meta, carry=carry)


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - t0


def _check_args(method, starts, chains, warmup, samples, svi_steps, optimizer, init_mass):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    for name, value in (
        ("starts", starts), ("chains", chains), ("samples", samples), ("svi_steps", svi_steps),
    ):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if int(warmup) < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if optimizer not in ("auto", "bfgs", "lbfgs"):
        raise ValueError(f"optimizer must be 'auto', 'bfgs' or 'lbfgs', got {optimizer!r}")
    if init_mass not in ("laplace", "gauss-newton"):
        raise ValueError(f"init_mass must be 'laplace' or 'gauss-newton', got {init_mass!r}")


def _restart_points(init_from, starts, model_args, key) -> np.ndarray:
    from vaelens.models import model_for

    draws = load_init_draws(init_from, starts)
    return init_points_from(model_for(model_args[0]), model_args, draws, key)


def _map_stage(data, spec, decoder, *, key, starts, optimizer, init_from) -> MAPResult:
    """The multi-start MAP (staged for a VAE source, or refined from an earlier fit)."""
    from vaelens.models import model_for

    model = model_for(data)
    if init_from is not None:
        k_points = jax.random.fold_in(key, 1)
        points = _restart_points(init_from, starts, (data, spec, decoder), k_points)
        log.info("MAP from %d draw(s) of an earlier fit", len(points))
        return map_fit(
            model, data, spec, decoder, key=key, num_starts=len(points),
            init_points=points, method=optimizer,
        )
    if spec.source_model == "vae":
        return staged_map_fit(
            model, data, spec, decoder, key=key,
            fixed={"z": np.zeros(spec.source.latent_dim, np.float32)},
            num_starts=starts, num_refine=max(1, min(4, starts // 2)),
            num_plain=max(1, starts // 2), method=optimizer,
        )
    return map_fit(model, data, spec, decoder, key=key, num_starts=starts, method=optimizer)


def _map_of(init, data, spec) -> MAPResult:
    res = init.map if isinstance(init, LensFit) else init
    if not isinstance(res, MAPResult):
        raise TypeError(f"init must be a LensFit or a MAPResult, got {type(init).__name__}")
    args = res.model_args
    if len(args) < 2 or args[0] is not data or args[1] != spec:
        raise ValueError(
            "init was fitted to other data or another spec; pass the same data and spec, or "
            "restart from its draws with init_from="
        )
    return res


def _as_chains(idata, chains: int):
    """Reshape a one-chain InferenceData of independent draws into ``chains`` chains."""
    post = idata.posterior
    if post.sizes.get("chain", 1) != 1 or chains < 2 or post.sizes["draw"] % chains:
        return idata
    import arviz as az

    n = post.sizes["draw"] // chains
    groups = {}
    for group in ("posterior", "sample_stats"):
        if hasattr(idata, group):
            ds = getattr(idata, group)
            groups[group] = {
                k: np.asarray(ds[k].values).reshape(chains, n, *ds[k].shape[2:])
                for k in ds.data_vars
            }
    dims = {k: list(post[k].dims[2:]) for k in post.data_vars}
    out = az.from_dict(**groups, dims=dims, attrs=dict(idata.attrs))
    if hasattr(idata, "observed_data"):
        out.add_groups(observed_data=idata.observed_data)
    return out


def fit_lens(
    data,
    spec=None,
    *,
    method: Method = "map",
    key: jax.Array,
    decoder: Callable | None = None,
    starts: int = 8,
    optimizer: Literal["auto", "bfgs", "lbfgs"] = "auto",
    chains: int = 2,
    warmup: int = 300,
    samples: int = 300,
    svi_steps: int = 2000,
    max_tree_depth: int = 10,
    dense_mass: bool = True,
    init_mass: Literal["laplace", "gauss-newton"] = "laplace",
    init: LensFit | MAPResult | None = None,
    init_from: str | os.PathLike | Any | None = None,
    progress_bar: bool = True,
    chunk_size: int = 100,
    keep_draws: tuple[str, ...] | bool = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_info: dict | None = None,
) -> LensFit:
    """Fit a lens image: multi-start MAP, then the posterior by ``method``.

    Parameters
    ----------
    data : vaelens.data.ImageData, vaelens.data.MultiBandData or list of ImageData
        The observation: one band (:func:`vaelens.models.lens_model`), or several bands in one
        angular frame, fitted jointly by :func:`vaelens.models.multiband_lens_model` (one
        mass and source shape, per-band amplitudes; a list becomes a ``MultiBandData`` with
        the names ``band0, band1, ...``, a list of one band is that band). Every method works
        on both models.
    spec : vaelens.models.LensSpec, optional
        The model; default ``LensSpec.from_data(data)`` (EPL + shear, Sersic lens light, VAE
        source, data-informed amplitude priors; of the reference band for several bands).
    method
        ``"map"`` (MAP + Laplace draws), ``"svi"``, ``"nuts"`` or ``"hmc"``.
    key
        ``jax.random`` key of the whole fit (MAP starts, draws, chains).
    decoder
        Source decoder ``z -> (64, 64)``; default the pretrained VAE.
    starts
        MAP starts (a VAE source: stage-1 starts, see the module notes).
    optimizer
        MAP optimiser; ``"auto"``: BFGS in float64, L-BFGS in float32.
    chains, samples
        Chains and draws per chain of the posterior (for MAP and SVI: independent draws,
        stored as ``chains`` chains).
    warmup, max_tree_depth, dense_mass, init_mass
        NUTS/HMC warm-up steps, NUTS tree depth, dense or diagonal mass matrix, and the metric
        that whitens the sampling space (the capped Laplace or the Gauss-Newton covariance).
    svi_steps
        SVI optimisation steps.
    init
        An earlier :class:`LensFit` (or :class:`MAPResult`) of the same data and spec: its MAP
        is used and the MAP stage skipped.
    init_from
        An earlier fit's output folder, ``posterior.nc`` or InferenceData: the MAP restarts
        from the lowest-chi^2 draw of each of its chains (at most ``starts``).
    progress_bar
        Show the samplers' progress bars.
    chunk_size, keep_draws, checkpoint, resume, checkpoint_info
        NUTS/HMC sampling in chunks (see :func:`vaelens.infer.nuts`): draws per chain and
        chunk, the image sites stored per draw (by default only the mean and standard
        deviation of the ``source`` are kept), the folder that receives every finished chunk,
        and whether to continue the interrupted run recorded there.

    Returns
    -------
    LensFit

    Raises
    ------
    ValueError
        Bad settings, or ``init``/``init_from`` from another model.
    """
    from vaelens.data.multiband import MultiBandData, as_multiband
    from vaelens.models import LensSpec
    from vaelens.models.decoder import resolve_decoder

    _check_args(method, starts, chains, warmup, samples, svi_steps, optimizer, init_mass)
    if init is not None and init_from is not None:
        raise ValueError("give init or init_from, not both")
    data = as_multiband(data)
    if spec is None:
        spec = LensSpec.from_data(data.reference if isinstance(data, MultiBandData) else data)
    if spec.source_model == "vae":
        decoder = resolve_decoder(decoder)
    opt = default_optimizer() if optimizer == "auto" else optimizer
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    k_map, k_post, _ = jax.random.split(key, 3)
    with _stage(timings, "map"):
        if init is not None:
            res = _map_of(init, data, spec)
        else:
            res = _map_stage(
                data, spec, decoder, key=k_map, starts=starts, optimizer=opt, init_from=init_from
            )
    info: dict[str, Any] = {
        "map_loss": res.loss,
        "map_chi2": res.chi2,
        "map_starts_converged": int(np.sum(res.converged)),
        "map_losses": np.sort(res.losses),
        "map_timings": res.timings,
        "num_parameters": int(res.x.size),
    }
    capped = cap_covariance(res)
    if method == "map":
        with _stage(timings, "laplace draws"):
            idata = capped.to_inference_data(
                k_post, num_samples=chains * samples, num_chains=chains, log_likelihood=False
            )
    elif method == "svi":
        from vaelens.infer.svi import svi

        with _stage(timings, "svi"):
            idata = svi(
                *_model_and_args(data, spec, decoder), key=k_post, init=capped,
                num_steps=svi_steps, num_samples=samples * chains, progress_bar=progress_bar,
                log_likelihood=False,
            )
        idata = _as_chains(idata, chains)
    else:
        from vaelens.infer.mcmc import hmc, nuts

        sampler = nuts if method == "nuts" else hmc
        extra = {"max_tree_depth": max_tree_depth} if method == "nuts" else {}
        with _stage(timings, method):
            idata = sampler(
                *_model_and_args(data, spec, decoder), key=k_post, init=capped,
                num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method=chain_method(chains), dense_mass=dense_mass, init_mass=init_mass,
                progress_bar=progress_bar, log_likelihood=False, chunk_size=chunk_size,
                keep_draws=keep_draws, checkpoint=checkpoint, resume=resume,
                checkpoint_info=checkpoint_info, **extra,
            )
    timings["total"] = time.perf_counter() - t0
    settings = {
        "method": method,
        "starts": starts,
        "optimizer": opt,
        "x64": bool(jax.config.jax_enable_x64),
        "chains": chains,
        "samples": samples,
        "warmup": warmup if method in ("nuts", "hmc") else None,
        "max_tree_depth": max_tree_depth if method == "nuts" else None,
        "dense_mass": dense_mass if method in ("nuts", "hmc") else None,
        "init_mass": init_mass if method in ("nuts", "hmc") else None,
        "svi_steps": svi_steps if method == "svi" else None,
        "init": "earlier MAP" if init is not None else None,
        "init_from": _describe(init_from),
        "checkpoint": _describe(checkpoint) if method in ("nuts", "hmc") else None,
    }
    return LensFit(
        idata=idata, map=res, data=data, spec=spec, decoder=decoder, method=method,
        settings=settings, info=info, timings=timings,
    )


def _model_and_args(data, spec, decoder) -> tuple:
    from vaelens.models import model_for

    return model_for(data), data, spec, decoder


def _describe(init_from) -> str | None:
    if init_from is None:
        return None
    if isinstance(init_from, str | os.PathLike):
        return str(Path(init_from).expanduser().resolve())
    return type(init_from).__name__
