"""Magnitude pruning (L0): masks that keep the largest weights, and the iterative
prune-and-retrain schedule (decay, prune the smallest, retrain to recover)."""

from __future__ import annotations

import numpy as np


def magnitude_mask(weights: np.ndarray, mask: np.ndarray, amount: float) -> np.ndarray:
    """A 0/1 mask (like `weights`) pruning the fraction `amount` of all weights: the
    already-pruned ones (mask 0) first, then the smallest |w| of the rest. Ties are
    broken by position, so the result is deterministic."""
    n = weights.size
    k = int(round(amount * n))
    new = np.ones_like(mask)
    if k == 0:
        return new
    # already-pruned weights sort first (key -1), then by magnitude
    key = np.where(mask == 0, -1.0, np.abs(weights.astype(np.float64)))
    new[np.argsort(key, kind="stable")[:k]] = 0
    return new


def prune_and_retrain(model, X, y, *, target: float, rounds: int = 3, epochs: int = 2,
                      validation_data=None, **fit_options) -> list[dict]:
    """Iterative pruning: in each of `rounds` rounds, prune every layer to the next step
    of a geometric schedule towards sparsity `target`, then retrain for `epochs` epochs
    (``fit_options`` go to ``fit``; an ``l2`` penalty supplies the "decay" that pushes
    unneeded weights toward zero before the next round). Returns one dict per round:
    ``round``, ``sparsity`` (per layer), ``loss`` (last training epoch) and, with
    `validation_data`, ``val_loss``/``val_accuracy``."""
    if not 0 < target < 1:
        raise ValueError(f"target sparsity must lie in (0, 1), got {target}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    report = []
    keep_final = 1 - target
    for r in range(1, rounds + 1):
        amount = 1 - keep_final ** (r / rounds)
        sparsity = model.prune(amount)
        history = model.fit(X, y, epochs=epochs, validation_data=validation_data, **fit_options)
        entry = {"round": r, "sparsity": sparsity, "loss": history.loss[-1]}
        if validation_data is not None:
            entry["val_loss"] = history.val_loss[-1]
            entry["val_accuracy"] = history.val_accuracy[-1]
        report.append(entry)
    return report
