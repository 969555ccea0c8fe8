"""Losses: names, engine codes, output activations and target preparation.

Each loss matches the PyTorch loss of the same meaning at ``reduction='mean'``:

=====================  ===========  =====================================================
name                   output       PyTorch equivalent / definition
=====================  ===========  =====================================================
cross_entropy          softmax      ``CrossEntropyLoss``: integer labels (n,) or
                                    probability targets (n, K)
binary_cross_entropy   sigmoid      ``BCEWithLogitsLoss``: targets in [0, 1], (n, K)
mse                    identity     ``MSELoss``: mean over samples and outputs
hinge                  identity     mean over samples and outputs of max(0, 1 - t y),
                                    targets in {-1, +1}
multi_hinge            identity     ``MultiMarginLoss(p=1, margin=1)``: integer labels
poisson                exp          half Poisson deviance of ``mu = exp(logit)``, mean
                                    over samples and outputs:
                                    ``mu - t log(mu) + t log(t) - t``, targets >= 0;
                                    ``PoissonNLLLoss(log_input=True)`` plus the constant
                                    ``t log(t) - t`` (0 at a perfect fit), as
                                    scikit-learn's ``MLPRegressor(loss="poisson")``
=====================  ===========  =====================================================

The engine works on logits (the last layer's pre-activation); the output
activation is applied by ``predict``. Subgradients at the hinge kinks are 0.
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
    has_accuracy: bool


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss("cross_entropy", 0, "softmax", True, True, True),
    "binary_cross_entropy": Loss("binary_cross_entropy", 1, "sigmoid", False, True, True),
    "mse": Loss("mse", 2, "identity", False, True, False),
    "hinge": Loss("hinge", 3, "identity", False, True, True),
    "multi_hinge": Loss("multi_hinge", 4, "identity", True, False, True),
    "poisson": Loss("poisson", 5, "exp", False, True, False),
}


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

    if y.ndim == 1 and loss.accepts_labels:
        return _labels(loss, y, n_outputs), None
    if not loss.accepts_dense:
        raise ValueError(f"{loss.name} needs integer class labels of shape (n,); got shape {y.shape}")
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
    if loss.name in ("cross_entropy", "binary_cross_entropy"):
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"{loss.name} targets must lie in [0, 1]")
    elif loss.name == "hinge":
        if not np.isin(y, (-1, 1)).all():
            raise ValueError("hinge targets must be -1 or +1 (map 0/1 labels with 2*y - 1)")
    elif loss.name == "poisson":
        if y.size and y.min() < 0:
            raise ValueError(f"poisson targets must be >= 0 (counts or rates); y has "
                             f"{y.min():g}")
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


def labels_from_outputs(loss: Loss, out: np.ndarray) -> np.ndarray:
    """Predicted classes from the outputs of `predict`: argmax for ``cross_entropy`` and
    ``multi_hinge``; 0/1 per output for ``binary_cross_entropy``; -1/+1 for ``hinge``."""
    if loss.name in ("cross_entropy", "multi_hinge"):
        return out.argmax(axis=1)
    if loss.name == "binary_cross_entropy":
        return (out > 0.5).astype(np.int64)
    if loss.name == "hinge":
        return np.where(out > 0, 1, -1)
    raise ValueError(f"{loss.name} has no class labels; use predict()")
