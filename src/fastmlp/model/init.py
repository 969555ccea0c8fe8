"""Weight initializers.

Each initializer draws a weight matrix of shape ``(fan_in, fan_out)`` (so that a
layer computes ``X @ W + b``) from a NumPy ``Generator``, in float64; the model
casts it to its dtype. ``gain`` follows ``torch.nn.init`` (``calculate_gain``:
1 for identity/sigmoid, 5/3 for tanh, sqrt(2) for relu).

================  ==========================================================  =================
name              distribution                                                parameters
================  ==========================================================  =================
zeros             0                                                           -
constant          value                                                       value=0.0
normal            N(mean, std^2)                                              mean=0, std=0.01
uniform           U(low, high)                                                low=-0.05, high=0.05
xavier_uniform    U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))           gain=1
xavier_normal     N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out))          gain=1
he_normal         N(0, s^2), s = sqrt(2 / fan_in)        (Kaiming, fan_in)    -
he_uniform        U(-a, a), a = sqrt(6 / fan_in)                              -
lecun_normal      N(0, s^2), s = sqrt(1 / fan_in)                             -
sparse            k non-zero N(0, std^2) inputs per unit, the rest 0          k=15, std=1.0
                  (Martens 2010); k is capped at fan_in
================  ==========================================================  =================

Zero and constant initialization are allowed on purpose: every hidden unit then
computes the same function and receives the same gradient, so the units never
become different (the symmetry problem a course demonstrates).

Biases (``bias_init``) start at one constant for every layer, at one constant per dense
layer, or, for the output layer, at the ``"prior"`` of the training targets
(:func:`output_bias_prior`): the constant output that fits them best, so that training
does not spend its first steps learning the class frequencies.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np


def zeros(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    return np.zeros((fan_in, fan_out))


def constant(fan_in: int, fan_out: int, rng: np.random.Generator, value: float = 0.0) -> np.ndarray:
    return np.full((fan_in, fan_out), float(value))


def normal(
    fan_in: int, fan_out: int, rng: np.random.Generator, mean: float = 0.0, std: float = 0.01
) -> np.ndarray:
    _check_nonnegative("std", std)
    return rng.normal(mean, std, size=(fan_in, fan_out))


def uniform(
    fan_in: int, fan_out: int, rng: np.random.Generator, low: float = -0.05, high: float = 0.05
) -> np.ndarray:
    if not low <= high:
        raise ValueError(f"uniform init needs low <= high, got low={low}, high={high}")
    return rng.uniform(low, high, size=(fan_in, fan_out))


def xavier_uniform(
    fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = 1.0
) -> np.ndarray:
    a = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_in, fan_out))


def xavier_normal(
    fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = 1.0
) -> np.ndarray:
    return rng.normal(0.0, gain * np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out))


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def he_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, size=(fan_in, fan_out))


def lecun_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=(fan_in, fan_out))


def sparse(
    fan_in: int, fan_out: int, rng: np.random.Generator, k: int = 15, std: float = 1.0
) -> np.ndarray:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"sparse init needs an integer k >= 1, got {k!r}")
    _check_nonnegative("std", std)
    W = np.zeros((fan_in, fan_out))
    k = min(int(k), fan_in)
    for j in range(fan_out):
        rows = rng.choice(fan_in, size=k, replace=False)
        W[rows, j] = rng.normal(0.0, std, size=k)
    return W


def _check_nonnegative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


INITIALIZERS: dict[str, Callable[..., np.ndarray]] = {
    f.__name__: f
    for f in (
        zeros,
        constant,
        normal,
        uniform,
        xavier_uniform,
        xavier_normal,
        he_normal,
        he_uniform,
        lecun_normal,
        sparse,
    )
}


# losses whose output layer can start at the prior of the targets
PRIOR_LOSSES = ("cross_entropy", "kl_divergence", "symmetric_kl", "bhattacharyya",
                "binary_cross_entropy", "mse", "poisson")


def check_bias_init(value: object, n_layers: int, loss: str) -> list:
    """`bias_init` (a number, ``"prior"``, or a sequence of one per dense layer whose last
    entry may be ``"prior"``) as a list of one float or ``"prior"`` per dense layer;
    TypeError/ValueError name the problem."""
    if isinstance(value, str):
        if value != "prior":
            raise ValueError(f"bias_init must be a number, 'prior' or one value per dense "
                             f"layer, got {value!r}")
        values = [0.0] * (n_layers - 1) + ["prior"]
    elif isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n_layers:
            raise ValueError(f"bias_init has {len(value)} entries; the network has {n_layers} "
                             f"dense layers")
        values = list(value)
    else:
        values = [value] * n_layers
    for l, v in enumerate(values):
        if isinstance(v, str) and (v != "prior" or l != n_layers - 1):
            raise ValueError(f"bias_init[{l}] = {v!r}: only the output layer's entry may be "
                             f"'prior'; the others are numbers")
    if values[-1] == "prior" and loss not in PRIOR_LOSSES:
        raise ValueError(f"bias_init='prior' needs a loss with a probability or mean output "
                         f"({', '.join(PRIOR_LOSSES)}), not {loss}")
    return values


def output_bias_prior(loss: str, labels: np.ndarray | None, dense: np.ndarray | None,
                      weights: np.ndarray | None, n_outputs: int,
                      label_smoothing: float = 0.0) -> np.ndarray:
    """The output biases (n_outputs,) whose constant output fits the training targets best,
    from the (weighted) mean target row m (class frequencies for labels, smoothed like
    cross-entropy's targets when `label_smoothing` > 0): ``log m`` for the softmax losses
    (the log class priors, up to the constant softmax ignores), ``log(m / (1 - m))`` for
    binary cross-entropy, ``m`` for mse and ``log m`` for poisson. Frequencies are kept
    at least ``1 / (2 n)`` (and, for binary cross-entropy, at most ``1 - 1 / (2 n)``) so
    that a class absent from n samples gets a finite bias."""
    n = len(labels) if labels is not None else len(dense)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if labels is not None:
        mean = np.bincount(labels, weights=w, minlength=n_outputs) / total
    else:
        mean = (w @ dense.astype(np.float64)) / total
    if loss == "mse":
        return mean
    floor = 1.0 / (2 * n)
    if loss == "binary_cross_entropy":
        p = np.clip(mean, floor, 1 - floor)
        return np.log(p / (1 - p))
    if loss == "cross_entropy":
        mean = (1 - label_smoothing) * mean + label_smoothing / n_outputs
    return np.log(np.maximum(mean, floor))


def check_initializer(name: object, kwargs: dict | None) -> None:
    """Raise a clear error for an unknown name or parameter, before any drawing."""
    if not isinstance(name, str):
        raise TypeError(f"init must be a string, got {type(name).__name__}")
    if name not in INITIALIZERS:
        raise ValueError(f"unknown init {name!r}; choose one of {', '.join(INITIALIZERS)}")
    params = list(inspect.signature(INITIALIZERS[name]).parameters)[3:]
    for key in kwargs or {}:
        if key not in params:
            allowed = ", ".join(params) or "none"
            raise ValueError(f"init {name!r} takes no parameter {key!r} (parameters: {allowed})")


def initialize(
    name: str, fan_in: int, fan_out: int, rng: np.random.Generator, **kwargs: object
) -> np.ndarray:
    """Draw a (fan_in, fan_out) float64 weight matrix with the named initializer."""
    check_initializer(name, kwargs)
    return INITIALIZERS[name](fan_in, fan_out, rng, **kwargs)
