"""Training of the galaxy VAE: optax AdamW, warm-up + cosine schedule, checkpoints with resume.

:func:`train` is the importable core; ``python -m vaelens.vae.train`` (and the ``vaelens train``
command, through :func:`add_train_arguments` / :func:`run_from_args`) is a thin wrapper that
assembles synthetic galaxies and/or real COSMOS stamps, trains, and writes weights + model card.

Reproducibility: all randomness derives from ``seed``: the weight initialisation
(``nnx.Rngs(seed)``), the epoch's shuffling (``numpy.random.default_rng([seed, epoch])``) and the
per-step augmentation and reparameterisation keys (``jax.random.fold_in(key(seed), step)``). The
model and optimizer states are checkpointed after every epoch, so a run interrupted and resumed
from its checkpoint follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from vaelens.data.augment import random_dihedral
from vaelens.vae.config import VAEConfig
from vaelens.vae.loss import vae_loss
from vaelens.vae.network import VAE
from vaelens.vae.weights import load_state, save_state, save_weights

__all__ = [
    "TrainResult",
    "add_train_arguments",
    "evaluate",
    "main",
    "run_from_args",
    "train",
]

logger = logging.getLogger(__name__)

_CKPT_MODEL = "model.safetensors"
_CKPT_OPT = "optimizer.safetensors"
_CKPT_STATE = "state.json"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model
        The trained VAE (weights after the last epoch).
    history
        One dict per epoch: ``epoch``, ``train_loss``, ``train_chi2``, ``train_kl``,
        ``val_loss``, ``val_chi2``, ``val_kl``, ``lr``, ``beta``, ``seconds``.
    settings
        The training settings (JSON-serialisable), as stored in the checkpoint.
    train_seconds
        Wall time of all epochs, summed over interrupted and resumed runs.
    """

    model: VAE
    history: tuple[dict[str, float], ...]
    settings: dict[str, Any]
    train_seconds: float


def _make_optimizer(
    model: VAE, lr: float, warmup: int, total_steps: int, weight_decay: float, clip_norm: float
) -> tuple[nnx.Optimizer, optax.Schedule]:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=max(int(warmup), 1),
        decay_steps=max(total_steps, int(warmup) + 1),
        end_value=lr * 1e-2,
    )
    tx = optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(schedule, weight_decay=weight_decay),
    )
    return nnx.Optimizer(model, tx, wrt=nnx.Param), schedule


@nnx.jit(static_argnames=("augment",))
def _train_step(
    model: VAE,
    optimizer: nnx.Optimizer,
    images: jax.Array,
    variances: jax.Array,
    key: jax.Array,
    beta: jax.Array,
    augment: bool = True,
) -> dict[str, jax.Array]:
    k_aug, k_z = jax.random.split(key)
    if augment:
        images, variances = random_dihedral(k_aug, images, variances)

    def loss_fn(m: VAE):
        return vae_loss(m, images, variances, k_z, beta)

    (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return {"loss": loss, **aux}


@nnx.jit
def _eval_step(
    model: VAE, images: jax.Array, variances: jax.Array, key: jax.Array, beta: jax.Array
) -> dict[str, jax.Array]:
    loss, aux = vae_loss(model, images, variances, key, beta)
    return {"loss": loss, **aux}


def _as_variances(variances: np.ndarray | None, n: int) -> np.ndarray:
    if variances is None:
        return np.zeros(n, np.float32)
    v = np.asarray(variances, np.float32)
    if v.shape[0] != n or v.ndim not in (1, 3):
        raise ValueError(f"variances must have shape ({n},) or ({n}, H, W), got {v.shape}")
    return v


def evaluate(
    model: VAE,
    images: np.ndarray,
    variances: np.ndarray | None = None,
    *,
    seed: int = 0,
    beta: float | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean loss, chi^2 per pixel and KL of ``model`` on a data set.

    Uses fixed reparameterisation keys derived from ``seed`` and no augmentation.
    """
    images = np.asarray(images, np.float32)
    n = len(images)
    if n == 0:
        return {"loss": float("nan"), "chi2": float("nan"), "kl": float("nan")}
    variances = _as_variances(variances, n)
    beta = model.config.beta if beta is None else beta
    key = jax.random.key(seed)
    totals: dict[str, float] = {}
    for i, start in enumerate(range(0, n, batch_size)):
        sl = slice(start, min(start + batch_size, n))
        out = _eval_step(
            model,
            jnp.asarray(images[sl]),
            jnp.asarray(variances[sl]),
            jax.random.fold_in(key, i),
            jnp.float32(beta),
        )
        w = sl.stop - sl.start
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + float(v) * w
    return {k: v / n for k, v in totals.items()}


def train(
    config: VAEConfig,
    train_images: np.ndarray,
    val_images: np.ndarray,
    *,
    train_variances: np.ndarray | None = None,
    val_variances: np.ndarray | None = None,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 2e-3,
    warmup: int = 200,
    weight_decay: float = 1e-4,
    clip_norm: float = 1.0,
    beta: float | None = None,
    kl_warmup: int = 0,
    augment: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a :class:`VAE` on unit-flux 64x64 galaxy stamps.

    Parameters
    ----------
    config
        Network architecture (and default ``beta``, noise floor).
    train_images, val_images
        ``(N, 64, 64)`` unit-flux images (real stamps may be noisy).
    train_variances, val_variances
        Their noise variance in unit-flux units, ``(N,)`` or ``(N, 64, 64)``; None = noise-free.
    seed
        Seed of the initialisation, shuffling, augmentation and reparameterisation draws.
    epochs
        Number of passes over ``train_images`` (the last incomplete batch of an epoch is dropped).
    batch_size
        Images per optimisation step.
    lr
        Peak learning rate of AdamW; linear warm-up over ``warmup`` steps from 0, then cosine
        decay to ``lr / 100`` at the last step.
    warmup
        Warm-up steps of the learning rate.
    weight_decay, clip_norm
        AdamW decoupled weight decay; global gradient-norm clipping threshold.
    beta
        KL weight (default ``config.beta``).
    kl_warmup
        Steps over which the KL weight rises linearly from 0 to ``beta`` (0: no warm-up).
    augment
        Random dihedral (flip / 90-degree rotation) augmentation of every batch.
    checkpoint_dir
        Folder of the per-epoch checkpoint (model, optimizer, history); None: no checkpoints.
    resume
        Continue from the checkpoint in ``checkpoint_dir`` when one exists. The settings must be
        those of the checkpointed run (``ValueError`` otherwise).
    stop_after_epoch
        Return after this many completed epochs (simulates an interruption; the schedule still
        spans ``epochs``).
    progress
        Show tqdm progress bars.

    Returns
    -------
    TrainResult
    """
    train_images = np.asarray(train_images, np.float32)
    val_images = np.asarray(val_images, np.float32)
    n_train = len(train_images)
    if train_images.shape[1:] != (config.image_size, config.image_size):
        raise ValueError(f"train_images must be (N, {config.image_size}, {config.image_size})")
    if n_train < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} training images, got {n_train}")
    train_variances = _as_variances(train_variances, n_train)
    beta = float(config.beta if beta is None else beta)
    steps_per_epoch = n_train // batch_size
    total_steps = epochs * steps_per_epoch
    settings = {
        "config": config.to_dict(),
        "n_train": n_train,
        "n_val": len(val_images),
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "clip_norm": clip_norm,
        "beta": beta,
        "kl_warmup": kl_warmup,
        "augment": augment,
    }

    model = VAE(config, rngs=nnx.Rngs(seed))
    optimizer, schedule = _make_optimizer(model, lr, warmup, total_steps, weight_decay, clip_norm)
    history: list[dict[str, float]] = []
    elapsed = 0.0
    start_epoch = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and resume and (ckpt / _CKPT_STATE).is_file():
        state = json.loads((ckpt / _CKPT_STATE).read_text())
        if state["settings"] != json.loads(json.dumps(settings)):
            raise ValueError(
                f"checkpoint in {ckpt} was written with other settings; use resume=False or "
                f"another checkpoint_dir.\ncheckpoint: {state['settings']}\nnow: {settings}"
            )
        load_state(ckpt / _CKPT_MODEL, model)
        load_state(ckpt / _CKPT_OPT, optimizer)
        history = list(state["history"])
        elapsed = float(state["train_seconds"])
        start_epoch = int(state["epoch"])
        logger.info("resumed from %s after epoch %d", ckpt, start_epoch)

    key = jax.random.key(seed)
    val_key_seed = seed + 1
    last_epoch = epochs if stop_after_epoch is None else min(epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        perm = np.random.default_rng([seed, epoch]).permutation(n_train)
        sums = {"loss": 0.0, "chi2": 0.0, "kl": 0.0}
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
            mininterval=2.0,
        )
        pending: list[dict[str, jax.Array]] = []
        for i in bar:
            step = epoch * steps_per_epoch + i
            idx = np.sort(perm[i * batch_size : (i + 1) * batch_size])
            beta_t = beta * min(1.0, (step + 1) / kl_warmup) if kl_warmup > 0 else beta
            out = _train_step(
                model,
                optimizer,
                jnp.asarray(train_images[idx]),
                jnp.asarray(train_variances[idx]),
                jax.random.fold_in(key, step),
                jnp.float32(beta_t),
                augment=augment,
            )
            pending.append(out)
            if len(pending) >= 50 or i == steps_per_epoch - 1:
                for o in pending:
                    for k in sums:
                        sums[k] += float(o[k])
                pending = []
                bar.set_postfix(loss=f"{sums['loss'] / (i + 1):.4g}")
        bar.close()
        val = evaluate(model, val_images, val_variances, seed=val_key_seed, beta=beta)
        seconds = time.perf_counter() - t0
        elapsed += seconds
        step_end = (epoch + 1) * steps_per_epoch
        record = {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / steps_per_epoch,
            "train_chi2": sums["chi2"] / steps_per_epoch,
            "train_kl": sums["kl"] / steps_per_epoch,
            "val_loss": val["loss"],
            "val_chi2": val["chi2"],
            "val_kl": val["kl"],
            "lr": float(schedule(step_end)),
            "beta": beta * min(1.0, step_end / kl_warmup) if kl_warmup > 0 else beta,
            "seconds": seconds,
        }
        history.append(record)
        logger.info(
            "epoch %d/%d: train %.5g (chi2/px %.4g, KL %.4g), val %.5g (chi2/px %.4g), %.1f s",
            epoch + 1,
            epochs,
            record["train_loss"],
            record["train_chi2"],
            record["train_kl"],
            record["val_loss"],
            record["val_chi2"],
            seconds,
        )
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
            save_state(ckpt / _CKPT_MODEL, model)
            save_state(ckpt / _CKPT_OPT, optimizer)
            tmp = ckpt / (_CKPT_STATE + ".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "epoch": epoch + 1,
                        "history": history,
                        "train_seconds": elapsed,
                        "settings": settings,
                    },
                    indent=1,
                )
            )
            tmp.replace(ckpt / _CKPT_STATE)
    return TrainResult(model, tuple(history), settings, elapsed)


# ----------------------------------------------------------------------------- command line


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the training options to ``parser`` (shared by ``python -m vaelens.vae.train`` and
    ``vaelens train``)."""
    d = parser.add_argument_group("data")
    d.add_argument("--synthetic", type=int, default=0, help="number of synthetic galaxies")
    d.add_argument("--synthetic-seed", type=int, default=1234, help="seed of the synthetic draw")
    d.add_argument("--catalog", type=Path, default=None, help="GalSim RealGalaxyCatalog FITS")
    d.add_argument(
        "--real-oversample",
        type=int,
        default=20,
        help="repeat each real training stamp this many times per epoch (augmented each time)",
    )
    d.add_argument(
        "--val-fraction", type=float, default=0.05, help="synthetic fraction kept for validation"
    )
    d.add_argument(
        "--split-seed", type=int, default=0, help="seed of the real train/val/test split"
    )
    t = parser.add_argument_group("training")
    t.add_argument("--config", choices=("default", "tiny"), default="default")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup", type=int, default=300, help="learning-rate warm-up steps")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--clip-norm", type=float, default=1.0)
    t.add_argument("--beta", type=float, default=None, help="KL weight (default: config)")
    t.add_argument("--kl-warmup", type=int, default=1000, help="KL warm-up steps (0: none)")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    o = parser.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, help="output folder")
    o.add_argument("--name", default="vae_default", help="weights file name (no suffix)")
    o.add_argument("--checkpoint-dir", type=Path, default=None, help="default: OUT/checkpoint")
    o.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    o.add_argument("--no-progress", action="store_true")
    return parser


def _load_real(catalog: Path, split_seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from vaelens.data import load_training_stamps
    except ImportError:  # older layout of the data package
        from vaelens.data.training_stamps import load_training_stamps

    out = {}
    for split in ("train", "val"):
        images, variances, _ = load_training_stamps(catalog, split=split, seed=split_seed, size=64)
        out[split] = (np.asarray(images, np.float32), np.asarray(variances, np.float32))
    return out


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Assemble the data named by ``args``, train, save weights + model card; return the card."""
    config = VAEConfig.default() if args.config == "default" else VAEConfig.tiny()
    parts_train: list[tuple[np.ndarray, np.ndarray]] = []
    parts_val: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    data_card: dict[str, Any] = {}
    if args.synthetic > 0:
        from vaelens.data.synthetic import make_synthetic_galaxies

        t0 = time.perf_counter()
        images, _ = make_synthetic_galaxies(args.synthetic_seed, args.synthetic, size=64)
        n_val = max(int(round(args.val_fraction * args.synthetic)), 1)
        parts_train.append((images[n_val:], np.zeros(len(images) - n_val, np.float32)))
        parts_val["synthetic"] = (images[:n_val], np.zeros(n_val, np.float32))
        data_card["synthetic"] = {
            "generator": "vaelens.data.synthetic.make_synthetic_galaxies",
            "seed": args.synthetic_seed,
            "n_train": len(images) - n_val,
            "n_val": n_val,
            "pixel_scale": 0.03,
            "psf_fwhm_arcsec": 0.09,
        }
        logger.info("%d synthetic galaxies in %.1f s", args.synthetic, time.perf_counter() - t0)
    if args.catalog is not None:
        real = _load_real(args.catalog, args.split_seed)
        img, var = real["train"]
        k = max(int(args.real_oversample), 1)
        parts_train.append((np.repeat(img, k, axis=0), np.repeat(var, k, axis=0)))
        parts_val["real"] = real["val"]
        data_card["real"] = {
            "catalog": Path(args.catalog).name,
            "split_seed": args.split_seed,
            "n_train": len(img),
            "oversample": k,
            "n_val": len(real["val"][0]),
            "test_split": "never used for training or model selection",
        }
    if not parts_train:
        raise SystemExit("no training data: give --synthetic N and/or --catalog PATH")
    var_ndim = {p[1].ndim for p in parts_train} | {p[1].ndim for p in parts_val.values()}
    if len(var_ndim) > 1:  # mix of per-image and per-pixel variances -> per-pixel maps
        parts_train = [(i, _per_pixel(v, i.shape)) for i, v in parts_train]
        parts_val = {k: (i, _per_pixel(v, i.shape)) for k, (i, v) in parts_val.items()}
    train_images = np.concatenate([p[0] for p in parts_train])
    train_var = np.concatenate([p[1] for p in parts_train])
    val_images = np.concatenate([p[0] for p in parts_val.values()])
    val_var = np.concatenate([p[1] for p in parts_val.values()])

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = train(
        config,
        train_images,
        val_images,
        train_variances=train_var,
        val_variances=val_var,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        clip_norm=args.clip_norm,
        beta=args.beta,
        kl_warmup=args.kl_warmup,
        augment=not args.no_augment,
        checkpoint_dir=args.checkpoint_dir or out / "checkpoint",
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    metrics = {
        f"val_{name}": evaluate(result.model, img, var, seed=args.seed + 1)
        for name, (img, var) in parts_val.items()
    }
    metrics["final_epoch"] = result.history[-1] if result.history else {}
    card = {
        "data": data_card,
        "training": {
            **{k: v for k, v in result.settings.items() if k != "config"},
            "optimizer": "optax AdamW, linear warm-up + cosine decay, global-norm clipping",
            "loss": "beta-VAE, Gaussian likelihood weighted by noise variance + sigma_floor^2",
            "augmentation": "random dihedral (flips, 90-degree rotations)",
            "train_seconds": result.train_seconds,
            "hardware": f"{jax.devices()[0].platform} ({jax.device_count()} device)",
            "command": "python -m vaelens.vae.train " + " ".join(getattr(args, "argv", [])),
        },
        "metrics": metrics,
        "history": list(result.history),
    }
    return save_weights(result.model, out / f"{args.name}.safetensors", card=card)


def _per_pixel(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return v if v.ndim == 3 else np.broadcast_to(v[:, None, None], shape).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vaelens.vae.train``."""
    parser = add_train_arguments(
        argparse.ArgumentParser(
            prog="python -m vaelens.vae.train", description="Train the vaelens galaxy VAE."
        )
    )
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    card = run_from_args(args)
    logger.info("wrote %s (sha256 %s)", Path(args.out) / card["weights_file"], card["sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
