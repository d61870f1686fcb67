"""``vaelens train ...``: train the VAE (delegates to :mod:`vaelens.vae.train`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """Parse ``args.train_args`` with :func:`vaelens.vae.train.add_train_arguments` and train."""
    import importlib

    from vaelens.cli import _Parser

    # the module, not the function of the same name re-exported by vaelens.vae
    train_module = importlib.import_module("vaelens.vae.train")

    parser = train_module.add_train_arguments(
        _Parser(prog="vaelens train", description="Train the vaelens galaxy VAE.")
    )
    targs = parser.parse_args(args.train_args)
    targs.argv = list(args.train_args)
    logging.getLogger("vaelens").setLevel(logging.INFO)
    card = train_module.run_from_args(targs)
    logging.getLogger("vaelens").info(
        "wrote %s (sha256 %s)", Path(targs.out) / card["weights_file"], card["sha256"]
    )
    return 0
