"""Hold-out splits for early stopping that follow the data, not the row order.

A sample goes to the validation set or not according to a seeded hash of its *content*
(the features and the target), so

- copies of one sample always land on the same side: duplicated rows never leak from
  the training set into the validation set, and
- a sample with an integer weight w is split exactly as w copies of it would be, which
  makes weighted fitting equivalent to fitting on repeated rows (scikit-learn's
  ``check_sample_weight_equivalence``). Zero-weight samples stay in the training set,
  where they change nothing.

The held-out share is measured in sample weight: distinct samples are taken in hash
order until the validation weight reaches the asked fraction (per class when
stratifying), with at least 2 distinct samples held out and at least 1 left to train on.
"""

from __future__ import annotations

import numpy as np

_CHUNK_BYTES = 1 << 24  # rows hashed per pass: about 16 MB of float64 at a time


def row_keys(arrays: list[np.ndarray], seed: int) -> np.ndarray:
    """A seeded 64-bit key per row of the 2-D/1-D arrays (same length): equal rows get
    equal keys; different rows collide with probability about 2**-64. Exact integer
    arithmetic (wrapping), so the key does not depend on summation order or threads."""
    n = arrays[0].shape[0]
    rng = np.random.default_rng(seed)
    keys = np.zeros(n, dtype=np.uint64)
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64).reshape(n, -1)
        a = a + 0.0  # -0.0 -> 0.0: equal values, equal keys
        bits = a.view(np.uint64)
        mult = rng.integers(1, 2**63, size=bits.shape[1], dtype=np.uint64) * np.uint64(2) + \
            np.uint64(1)
        step = max(1, _CHUNK_BYTES // max(1, bits.shape[1] * 8))
        with np.errstate(over="ignore"):
            for r0 in range(0, n, step):
                block = bits[r0 : r0 + step]
                keys[r0 : r0 + step] = keys[r0 : r0 + step] * np.uint64(0x9E3779B97F4A7C15) + \
                    (block * mult).sum(axis=1, dtype=np.uint64)
    # final mix (splitmix64) so that the sort order of keys is a random order of samples
    with np.errstate(over="ignore"):
        keys ^= keys >> np.uint64(30)
        keys *= np.uint64(0xBF58476D1CE4E5B9)
        keys ^= keys >> np.uint64(27)
        keys *= np.uint64(0x94D049BB133111EB)
        keys ^= keys >> np.uint64(31)
    return keys


def holdout_split(X: np.ndarray, targets: np.ndarray, weights: np.ndarray | None,
                  fraction: float, seed: int,
                  labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) as described in the module docstring; a sample is
    its row of X and of the numeric `targets`. With 1-D class `labels` every class is
    split on its own when each has at least 2 distinct samples of positive weight;
    otherwise the split is over all samples. ValueError when fewer than 3 distinct
    samples of positive weight exist."""
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    keys = row_keys([X, targets], seed)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    mass = np.bincount(inverse.reshape(-1), weights=w, minlength=len(uniq))
    live = np.flatnonzero(mass > 0)  # groups in key order: a seeded random order
    if len(live) < 3:
        raise ValueError(
            f"early_stopping holds out at least 2 distinct samples for validation and needs "
            f"1 more to train on; got {len(live)} distinct sample(s) of positive weight "
            f"({n} sample{'s' if n != 1 else ''}). Use more data or early_stopping=False.")
    held = np.zeros(len(uniq), dtype=bool)
    done = False
    if labels is not None:
        group_labels = np.asarray(labels)[first[live]]
        classes = np.unique(group_labels)
        if all((group_labels == c).sum() >= 2 for c in classes):
            for c in classes:
                held[_take(live[group_labels == c], mass, fraction, minimum=1)] = True
            done = held.sum() >= 2
            if not done:
                held[:] = False
    if not done:
        held[_take(live, mass, fraction, minimum=2)] = True
    val = held[inverse.reshape(-1)]
    return np.flatnonzero(~val), np.flatnonzero(val)


def _take(groups: np.ndarray, mass: np.ndarray, fraction: float, minimum: int) -> np.ndarray:
    """The first groups (in the given order) until their mass reaches `fraction` of the
    total: at least `minimum` groups, never all of them."""
    cum = np.cumsum(mass[groups])
    before = cum - mass[groups]
    k = int(np.count_nonzero(before < fraction * cum[-1]))
    k = min(max(k, minimum), len(groups) - 1)
    return groups[:k]
