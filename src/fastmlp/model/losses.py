"""Losses: names, engine codes, output activations and target preparation.

Each loss matches the PyTorch loss of the same meaning at ``reduction='mean'``:

=====================  ===========  =====================================================
name                   output       PyTorch equivalent / definition
=====================  ===========  =====================================================
cross_entropy          softmax      ``CrossEntropyLoss``: integer labels (n,) or
                                    probability targets (n, K); ``label_smoothing``
                                    as PyTorch's (targets mixed with 1/K)
binary_cross_entropy   sigmoid      ``BCEWithLogitsLoss``: targets in [0, 1], (n, K)
mse                    identity     ``MSELoss``: mean over samples and outputs;
                                    integer labels (n,) (an integer array) become
                                    one-hot rows
hinge                  identity     mean over samples and outputs of max(0, 1 - t y),
                                    targets in {-1, +1}
multi_hinge            identity     ``MultiMarginLoss(p=1, margin=1)``: integer labels
poisson                exp          half Poisson deviance of ``mu = exp(logit)``, mean
                                    over samples and outputs:
                                    ``mu - t log(mu) + t log(t) - t``, targets >= 0;
                                    ``PoissonNLLLoss(log_input=True)`` plus the constant
                                    ``t log(t) - t`` (0 at a perfect fit), as
                                    scikit-learn's ``MLPRegressor(loss="poisson")``
kl_divergence          softmax      ``KLDivLoss(reduction='batchmean')`` of
                                    ``log_softmax(logits)`` and target probabilities
                                    t (n, K) in [0, 1]: ``sum t (log t - log q)`` per
                                    sample, mean over samples (``0 log 0 = 0``); the
                                    gradient of cross-entropy, plus the entropy of t
symmetric_kl           softmax      ``KL(t || q) + KL(q || t)`` per sample, mean over
                                    samples: target distributions (rows sum to 1) with
                                    every entry > 0 (``KL(q || t)`` is infinite where
                                    t is 0: smooth one-hot targets first)
bhattacharyya          softmax      Bhattacharyya distance ``-log sum sqrt(t q)`` per
                                    sample, mean over samples: target distributions
                                    (rows sum to 1)
=====================  ===========  =====================================================

q is the softmax of the logits. The engine works on logits (the last layer's
pre-activation); the output activation is applied by ``predict``. Subgradients at the
hinge kinks are 0.

Accuracy (``score``, ``evaluate``, the History) is the share of samples whose largest
output is the label, or the largest entry of the target row for dense targets; per
output for ``binary_cross_entropy`` (output > 0.5 against target > 0.5) and ``hinge``
(the signs). ``mse`` has an accuracy when its targets are class-coded
(:func:`class_coded`): one-hot or ±1 rows (the largest output against the row's
+1), or, for a single output, ±1 targets (the output's sign); integer labels given to
``mse`` become one-hot rows, so they always have it. ``poisson`` has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Loss:
    """Static facts about one loss."""

    name: str
    code: int
    output_activation: str  # applied by predict: "softmax", "sigmoid", "exp" or "identity"
    accepts_labels: bool  # integer class labels of shape (n,)
    accepts_dense: bool  # target rows of shape (n, K)
    has_accuracy: bool  # mse: only for class-coded targets (see class_coded)
    has_curvature: bool = True  # Hessian/Gauss-Newton products are implemented


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss("cross_entropy", 0, "softmax", True, True, True),
    "binary_cross_entropy": Loss("binary_cross_entropy", 1, "sigmoid", False, True, True),
    "mse": Loss("mse", 2, "identity", True, True, True),
    "hinge": Loss("hinge", 3, "identity", False, True, True),
    "multi_hinge": Loss("multi_hinge", 4, "identity", True, False, True),
    "poisson": Loss("poisson", 5, "exp", False, True, False),
    "kl_divergence": Loss("kl_divergence", 6, "softmax", False, True, True),
    "symmetric_kl": Loss("symmetric_kl", 7, "softmax", False, True, True, False),
    "bhattacharyya": Loss("bhattacharyya", 8, "softmax", False, True, True, False),
}

# a target row's sum may differ from 1 by this much (rounding of float32 targets)
_ROW_SUM_TOLERANCE = 1e-4


def get_loss(name: object) -> Loss:
    """Look a loss up by name, or raise ValueError naming the choices."""
    if not isinstance(name, str):
        raise TypeError(f"loss must be a string, got {type(name).__name__}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def prepare_targets(
    loss: Loss, y: object, n_samples: int, n_outputs: int, dtype: np.dtype
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate targets for `loss` and return ``(labels, dense)``, exactly one not None.

    labels: int32 (n,) class indices; dense: `dtype` (n, n_outputs), C-contiguous.
    """
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"y could not be converted to an array: {exc}") from None
    if y.dtype.kind not in "biuf" or y.dtype == np.float16:
        raise TypeError(
            f"y must hold numbers (bool, integer, float32 or float64), got dtype {y.dtype}"
        )
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D (n,) or 2-D (n, {n_outputs}); got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"X and y have different lengths: {n_samples} samples in X, {y.shape[0]} in y"
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinity")

    # mse: integer (not float) arrays of shape (n,) for several outputs are class labels
    if y.ndim == 1 and loss.accepts_labels and (
            loss.name != "mse" or n_outputs > 1 and y.dtype.kind in "biu"):
        labels = _labels(loss, y, n_outputs)
        if loss.name == "mse":  # one-hot rows
            dense = np.zeros((n_samples, n_outputs), dtype=dtype)
            dense[np.arange(n_samples), labels] = 1
            return None, dense
        return labels, None
    if not loss.accepts_dense:
        raise ValueError(f"{loss.name} needs integer class labels of shape (n,); "
                         f"got shape {y.shape}")
    if y.ndim == 1:
        if n_outputs != 1:
            hint = " or integer labels of shape (n,)" if loss.accepts_labels else ""
            raise ValueError(
                f"y has shape {y.shape} but the network has {n_outputs} outputs: "
                f"give targets of shape (n, {n_outputs}){hint}"
            )
        y = y.reshape(-1, 1)
    if y.shape[1] != n_outputs:
        raise ValueError(
            f"y has {y.shape[1]} columns but the network has {n_outputs} outputs"
        )
    if loss.name in ("cross_entropy", "binary_cross_entropy", "kl_divergence", "bhattacharyya"):
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"{loss.name} targets must lie in [0, 1]")
    elif loss.name == "symmetric_kl":
        if y.size and (y.min() <= 0 or y.max() > 1):
            raise ValueError("symmetric_kl targets must lie in (0, 1]: KL(q || t) is infinite "
                             "where a target is 0 (smooth one-hot targets first)")
    elif loss.name == "hinge":
        if not np.isin(y, (-1, 1)).all():
            raise ValueError("hinge targets must be -1 or +1 (map 0/1 labels with 2*y - 1)")
    elif loss.name == "poisson":
        if y.size and y.min() < 0:
            raise ValueError(f"poisson targets must be >= 0 (counts or rates); y has "
                             f"{y.min():g}")
    if loss.name in ("symmetric_kl", "bhattacharyya") and y.size:
        worst = float(np.max(np.abs(y.sum(axis=1, dtype=np.float64) - 1)))
        if worst > _ROW_SUM_TOLERANCE:
            raise ValueError(f"{loss.name} targets must be distributions: every row must sum "
                             f"to 1 (a row is off by {worst:.3g})")
    with np.errstate(over="ignore"):
        dense = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(dense).all():
        raise ValueError(f"y has values too large for {np.dtype(dtype).name}")
    return None, dense


def _labels(loss: Loss, y: np.ndarray, n_outputs: int) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.array_equal(y, np.round(y)):
            raise ValueError(f"{loss.name} labels must be integers; y has non-integer values")
    if y.size:
        lo, hi = y.min(), y.max()
        if lo < 0 or hi >= n_outputs:
            raise ValueError(
                f"labels must lie in [0, {n_outputs}) for a network with {n_outputs} outputs;"
                f" found labels from {lo:g} to {hi:g}"
            )
    return np.ascontiguousarray(y, dtype=np.int32)


def class_coded(dense: np.ndarray) -> bool:
    """Whether dense targets (n, K) code classes, so that ``mse`` has an accuracy: with
    K > 1, every row holds one 1 and otherwise only 0 (one-hot) or only -1 (±1 coding);
    with K = 1, every target is -1 or +1."""
    if dense.shape[1] == 1:
        return bool(np.isin(dense, (-1, 1)).all())
    ones = (dense == 1).sum(axis=1) == 1
    rest = np.where(dense == 1, True, (dense == 0) | (dense == -1))
    # one convention for the whole set: no row may mix 0 and -1
    mixed = (dense == 0).any() and (dense == -1).any()
    return bool(ones.all() and rest.all() and not mixed)


def reports_accuracy(loss: Loss, dense: np.ndarray | None) -> bool:
    """Whether `loss` has an accuracy on targets prepared by :func:`prepare_targets`
    (`dense` None for integer labels)."""
    if loss.name == "mse":
        return dense is not None and class_coded(dense)
    return loss.has_accuracy


def labels_from_outputs(loss: Loss, out: np.ndarray) -> np.ndarray:
    """Predicted classes from the outputs of `predict`: argmax for the softmax losses,
    ``multi_hinge`` and ``mse`` with several outputs; 0/1 per output for
    ``binary_cross_entropy``; -1/+1 per output for ``hinge`` and single-output ``mse``."""
    if loss.output_activation == "softmax" or loss.name == "multi_hinge" or (
            loss.name == "mse" and out.shape[1] > 1):
        return out.argmax(axis=1)
    if loss.name == "binary_cross_entropy":
        return (out > 0.5).astype(np.int64)
    if loss.name in ("hinge", "mse"):
        return np.where(out > 0, 1, -1)
    raise ValueError(f"{loss.name} has no class labels; use predict()")
