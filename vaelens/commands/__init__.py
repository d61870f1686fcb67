"""Implementations of the ``vaelens`` subcommands (one module each, ``run(args) -> int``).

The argument parser and the error handling live in :mod:`vaelens.cli`; the modules here do the
work and raise :class:`vaelens.cli.CLIError` (or ``FileNotFoundError`` / ``ValueError``) for bad
input.
"""
