"""Deterministic train / validation / test split of galaxies by identifier."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["split_by_id"]

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijective 64-bit integer hash."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_by_id(
    ids: Sequence[int] | np.ndarray,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split galaxy identifiers into disjoint train, validation and test sets.

    Every unique id gets a pseudo-random rank from a hash of ``(seed, id)``; the lowest ranks form
    the test set, the next the validation set, the rest the training set, with sizes
    ``round(f * n)`` for test and validation. The assignment depends only on ``seed`` and the set
    of ids (not on their order), and adding galaxies to a catalogue keeps the relative ranks of
    existing ones, so held-out galaxies stay held out. The test split must never be used for
    training or model selection.

    Parameters
    ----------
    ids : sequence of int
        Galaxy identifiers (e.g. ``IDENT``); duplicates are collapsed.
    fractions : tuple of 3 floats
        Train, validation and test fractions, non-negative, summing to 1.
    seed : int
        Split seed.

    Returns
    -------
    train_ids, val_ids, test_ids : numpy.ndarray
        Sorted, pairwise disjoint integer arrays whose union is the set of ``ids``.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError("ids must be a 1-d sequence of integers")
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.shape != (3,) or np.any(frac < 0) or not np.isclose(frac.sum(), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    unique = np.unique(arr.astype(np.int64))
    n = unique.size
    key = _splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x100000001B3) & _MASK)
    with np.errstate(over="ignore"):
        rank = _splitmix64(unique.astype(np.uint64) ^ key)
    order = unique[np.argsort(rank, kind="stable")]
    n_test = int(round(frac[2] * n))
    n_val = min(int(round(frac[1] * n)), n - n_test)
    test = np.sort(order[:n_test])
    val = np.sort(order[n_test : n_test + n_val])
    train = np.sort(order[n_test + n_val :])
    return train, val, test
