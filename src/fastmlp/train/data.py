"""Training data prepared once per run: inputs and targets checked and converted, sample
weights, and the validation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmlp.train.regularization import stratified_split
from fastmlp.validation import check_sample_weight


@dataclass
class TrainingData:
    """What a trainer reads: `X` (n, features) in the model's dtype, the targets as the
    engine takes them (`labels` for class-index losses, `dense` otherwise), optional
    per-sample `weights`, and `val` = (X, labels, dense) or None."""

    X: np.ndarray
    labels: np.ndarray | None
    dense: np.ndarray | None
    weights: np.ndarray | None
    val: tuple | None

    @property
    def n(self) -> int:
        return self.X.shape[0]


def prepare(model, X: object, y: object, sample_weight: object = None) -> TrainingData:
    """Check and convert `X`, `y` and `sample_weight` for `model` (no validation split)."""
    X = model._check_X(X)
    labels, dense = model._targets(y, X.shape[0])
    weights = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    return TrainingData(X, labels, dense, weights, None)


def check_validation_data(model, validation_data: object) -> tuple:
    """`validation_data` = (X_val, y_val) checked for `model`: (X, labels, dense)."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, y_val)")
    Xv = model._check_X(validation_data[0], "validation_data X")
    return (Xv, *model._targets(validation_data[1], Xv.shape[0]))


def hold_out(data: TrainingData, fraction: float, seed: int) -> None:
    """Move a stratified share `fraction` of `data` (seeded by `seed`) into ``data.val``."""
    train_idx, val_idx = stratified_split(data.labels, data.n, fraction, seed)
    take = lambda a, i: None if a is None else np.ascontiguousarray(a[i])  # noqa: E731
    data.val = (take(data.X, val_idx), take(data.labels, val_idx), take(data.dense, val_idx))
    data.X, data.labels, data.dense = (take(data.X, train_idx), take(data.labels, train_idx),
                                       take(data.dense, train_idx))
    data.weights = take(data.weights, train_idx)
    if data.weights is not None and not (data.weights > 0).any():
        raise ValueError("every training sample left after the validation split has "
                         "sample_weight 0")
