"""Large arrays that the C engine's threads write: allocated with their pages already
faulted in, by the calling thread.

A fresh page is faulted in (and zeroed by the kernel) when first written. When several
engine threads take those faults at the same time they cost several times what one
thread pays to write the array first: a fresh 784-1024-1024-10 fit at batch 512 spent
about 15 ms of its first step in them (benchmarks/RESULTS.md, "Fresh pages")."""

from __future__ import annotations

import numpy as np


def faulted(shape, dtype, fill: float = 0) -> np.ndarray:
    """An array of `shape` and `dtype` set to `fill`, every page of it written once."""
    a = np.empty(shape, dtype=dtype)
    a.fill(fill)
    return a
