"""Input checks shared by the models: every problem becomes a ValueError or
TypeError that names it, before anything reaches the engine."""

from __future__ import annotations

import numbers

import numpy as np

from fastmlp import _engine
from fastmlp.io.csr import CSRInput, check_sparse, is_sparse

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MAX_THREADS = 1024
C_INT_MAX = 2**31 - 1  # sizes and counts the engine keeps in a C int
SEED_MAX = 2**64 - 1  # the engine's random key is a uint64


def check_dtype(dtype: object) -> np.dtype:
    """float32 or float64, given as a name, type or dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dt}")
    return dt


def check_shape(arr: np.ndarray, n_features: int, name: str = "X") -> None:
    """ValueError unless `arr` is 2-D with at least one row and `n_features` columns."""
    if arr.ndim != 2:
        hint = " (use X.reshape(-1, 1) for one feature)" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D (n_samples, {n_features}); got shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but the network expects {n_features}"
        )


def check_features(X: object, n_features: int, dtype: np.dtype, name: str = "X",
                   threads: int = 0) -> np.ndarray:
    """A finite (n, n_features) array of `dtype`, C-contiguous (copied only if needed).

    Accepts any layout (Fortran-ordered, strided, read-only) and bool, integer,
    float32 or float64 values; rejects float16, complex, object and string data, and
    sparse matrices (see :func:`check_input`).
    """
    if is_sparse(X) or isinstance(X, CSRInput):
        raise TypeError(f"{name} is sparse, and this method needs a dense array: pass "
                        f"{name}.toarray()")
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf" or arr.dtype == np.float16:
        raise TypeError(
            f"{name} must hold numbers (bool, integer, float32 or float64), got dtype {arr.dtype}"
        )
    check_shape(arr, n_features, name)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not all_finite(out, threads):
        bad = "NaN" if np.isnan(out).any() else "infinity"
        src = " (after conversion to " + str(dtype) + ")" if arr.dtype != dtype else ""
        raise ValueError(f"{name} contains {bad}{src}")
    return out


def check_input(X: object, n_features: int, dtype: np.dtype,
                name: str = "X", threads: int = 0) -> np.ndarray | CSRInput:
    """:func:`check_features` for dense X; for a scipy.sparse X, its checked CSR form
    (:func:`fastmlp.io.csr.check_sparse`), which the engine multiplies as it is. A CSRInput
    (checked before) is taken as it is, its values converted to `dtype` if need be. The
    finiteness passes run on `threads` threads (0: all)."""
    if is_sparse(X):
        return check_sparse(X, n_features, dtype, name, threads)
    if isinstance(X, CSRInput):
        if X.shape[1] != n_features:
            raise ValueError(f"{name} has {X.shape[1]} features but the network expects "
                             f"{n_features}")
        return X.astype(dtype, threads)
    return check_features(X, n_features, dtype, name, threads)


def check_sample_weight(sample_weight: object, n: int, dtype: np.dtype) -> np.ndarray | None:
    """None, or per-sample weights as a contiguous (n,) array of `dtype`: finite,
    non-negative and not all zero. A scalar means equal weights (None)."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"sample_weight could not be converted to an array: {exc}") from None
    if w.dtype.kind not in "biuf" or w.dtype == np.float16:
        raise TypeError(f"sample_weight must hold numbers, got dtype {w.dtype}")
    if w.ndim == 0:
        if not np.isfinite(w) or w <= 0:
            raise ValueError(f"a scalar sample_weight must be finite and > 0, got {w}")
        return None
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not all_finite(w):
        raise ValueError("sample_weight contains NaN or infinity")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not (w > 0).any():
        raise ValueError("sample_weight is zero for every sample; there is nothing to learn")
    return w


def all_finite(a: np.ndarray, threads: int = 0) -> bool:
    """True when no element is NaN or infinite. Contiguous float32/float64 arrays take one
    vectorized C pass (on `threads` threads, 0: all); others a float64 sum, which is finite
    exactly when every element is unless finite values overflow it (then the elementwise
    check decides)."""
    fast = _engine.all_finite(a, threads)
    if fast is not None:
        return fast
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(a.reshape(-1), dtype=np.float64)
    return bool(np.isfinite(total)) or bool(np.isfinite(a).all())


def check_int(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    """An integer (not a bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_threads(threads: object) -> int:
    """An engine thread count: an integer in [1, MAX_THREADS] (each thread gets its own
    workspace, so an absurd count would be an absurd allocation)."""
    return check_int(threads, "threads", 1, MAX_THREADS)


def check_representable(value: float, name: str, dtype: np.dtype) -> float:
    """`value` (a finite number), refused when it overflows `dtype`."""
    with np.errstate(over="ignore"):
        fits = bool(np.isfinite(np.dtype(dtype).type(value)))
    if not fits:
        raise ValueError(f"{name}={value:g} does not fit in {np.dtype(dtype).name} (whose "
                         f"largest finite value is {np.finfo(dtype).max:g})")
    return value


def check_float(
    value: object, name: str, *, positive: bool = False, low: float | None = None,
    high: float | None = None,
) -> float:
    """A finite real number, optionally > 0 or within [low, high)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an integer beyond float64
        raise ValueError(f"{name} must be finite, got an integer of {len(str(value))} "
                         "digits") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    if low is not None and v < low or high is not None and v >= high:
        raise ValueError(f"{name} must lie in [{low}, {high}), got {v}")
    return v
