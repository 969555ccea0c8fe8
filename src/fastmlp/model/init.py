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
