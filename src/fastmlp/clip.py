"""Gradient clipping on lists of NumPy arrays (torch.nn.utils semantics).

``fit(clip_grad_norm=..., clip_grad_value=...)`` does the same inside the engine;
these are the standalone NumPy versions (also used by the reference model).
"""

from __future__ import annotations

import math

import numpy as np


def clip_grad_norm_(grads: list[np.ndarray], max_norm: float,
                    error_if_nonfinite: bool = True) -> float:
    """Scale `grads` in place so their global L2 norm is at most `max_norm`
    (torch.nn.utils.clip_grad_norm_: factor max_norm / (norm + 1e-6) when below 1).
    Returns the norm before clipping; a NaN/inf norm raises unless told otherwise."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(
                f"the total gradient norm is {norm}; clipping cannot fix a non-finite gradient"
            )
        return norm
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        for g in grads:
            g *= g.dtype.type(coef)
    return norm


def clip_grad_value_(grads: list[np.ndarray], clip_value: float) -> None:
    """Clamp every gradient to [-clip_value, clip_value] in place."""
    if not clip_value > 0:
        raise ValueError(f"clip_value must be > 0, got {clip_value}")
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)
