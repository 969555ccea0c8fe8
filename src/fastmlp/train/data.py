"""Training data prepared once per run: inputs and targets checked and converted, sample
weights, and the validation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmlp.io.csr import CSRInput
from fastmlp.io.inputs import Features
from fastmlp.train.regularization import stratified_split
from fastmlp.validation import check_sample_weight


@dataclass
class TrainingData:
    """What a trainer reads: the inputs `X` as the engine reads them (dense rows read in
    place and converted per batch, see :mod:`fastmlp.io.inputs`; or the checked CSR rows of
    a sparse X), the targets as the engine takes them (`labels` for class-index losses,
    `dense` otherwise), optional per-sample `weights`, and `val` = (X, labels, dense) or
    None."""

    X: Features | CSRInput
    labels: np.ndarray | None
    dense: np.ndarray | None
    weights: np.ndarray | None
    val: tuple | None

    @property
    def n(self) -> int:
        return self.X.shape[0]


def prepare(model, X: object, y: object, sample_weight: object = None) -> TrainingData:
    """Check and convert `X` (dense or sparse), `y` and `sample_weight` for `model` (no
    validation split)."""
    X = model._check_input(X)
    labels, dense = model._targets(y, X.shape[0])
    weights = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    return TrainingData(X, labels, dense, weights, None)


def check_validation_data(model, validation_data: object) -> tuple:
    """`validation_data` = (X_val, y_val) checked for `model`: (X, labels, dense)."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, y_val)")
    Xv = model._check_input(validation_data[0], "validation_data X")
    return (Xv, *model._targets(validation_data[1], Xv.shape[0]))


def class_of_rows(dense: np.ndarray | None) -> np.ndarray | None:
    """The class of each row when the dense targets are one-of-K rows (two values in all,
    e.g. one-hot 0/1 or hinge's -1/+1, and exactly one high value per row, at least two
    columns): the column of the high value. None for other targets (regression)."""
    if dense is None or dense.ndim != 2 or dense.shape[1] < 2 or dense.shape[0] == 0:
        return None
    low, high_value = dense.min(), dense.max()
    high = dense == high_value
    if low == high_value or not (high | (dense == low)).all() or \
            not (high.sum(axis=1) == 1).all():
        return None
    return high.argmax(axis=1)


def hold_out(data: TrainingData, fraction: float, seed: int) -> None:
    """Move a stratified share `fraction` of `data` (seeded by `seed`) into ``data.val``:
    per class for class labels and for one-of-K dense targets (e.g. `mse` or `hinge`
    trained on classes), otherwise a plain random share. The inputs stay where they are
    (a memory map stays on disk): both parts select rows."""
    strata = data.labels if data.labels is not None else class_of_rows(data.dense)
    train_idx, val_idx = stratified_split(strata, data.n, fraction, seed)
    take = lambda a, i: None if a is None else np.ascontiguousarray(a[i])  # noqa: E731
    rows = lambda i: data.X[i] if isinstance(data.X, CSRInput) else data.X.take(i)  # noqa: E731
    data.val = (rows(val_idx), take(data.labels, val_idx), take(data.dense, val_idx))
    data.X, data.labels, data.dense = (rows(train_idx), take(data.labels, train_idx),
                                       take(data.dense, train_idx))
    data.weights = take(data.weights, train_idx)
    if data.weights is not None and not (data.weights > 0).any():
        raise ValueError("every training sample left after the validation split has "
                         "sample_weight 0")
