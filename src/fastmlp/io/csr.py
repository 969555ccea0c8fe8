"""Sparse input: ``scipy.sparse`` matrices checked once and held as the CSR arrays the
engine reads (its first layer multiplies the sparse rows; nothing is densified).

:func:`check_sparse` turns a scipy sparse matrix or array into a :class:`CSRInput`:

- CSR is used as it is where its dtypes allow (data of the model's dtype, int32 column
  indices, int64 row pointers); otherwise those arrays are converted once (int64 column
  indices become an int32 copy: a column index is below the input width, a C int).
- CSC and COO are converted to CSR once, after their structure is checked (scipy's
  conversions trust it); other formats (LIL, DOK, BSR, DIA) are converted by scipy.
- A matrix that is not in canonical form (repeated entries, unsorted column indices) is
  made canonical in a copy, the way scipy's ``sum_duplicates`` does it: repeated entries
  are summed, indices sorted. Its values are then those of ``X.toarray()``. The caller's
  matrix is never changed.
- Bad structure raises ValueError before anything sized from it is allocated: row
  pointers that do not start at 0 or decrease, column indices out of range, and so do
  NaN or infinite values.

scipy is not imported here: a sparse matrix can only exist where it is installed.
"""

from __future__ import annotations

import sys

import numpy as np

from fastmlp import _engine


class CSRInput:
    """Checked sparse rows ``(n_samples, n_features)`` in canonical CSR form (made by
    :func:`check_sparse`; the engine trusts them).

    Attributes
    ----------
    data : ndarray (nnz,)
        Values, float32 or float64, finite.
    indices : ndarray (nnz,) int32
        Column of each value, sorted within a row, no repeats.
    indptr : ndarray (n_samples + 1,) int64
        Row i's values are ``data[indptr[i]:indptr[i + 1]]``.
    shape : tuple (n_samples, n_features)
    """

    __slots__ = ("data", "indices", "indptr", "shape")

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 shape: tuple[int, int]) -> None:
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = (int(shape[0]), int(shape[1]))

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def astype(self, dtype: np.dtype, threads: int = 0) -> CSRInput:
        """These rows with values of `dtype` (self when they have it already; the converted
        values' finiteness checked on `threads` threads, 0: all)."""
        if self.data.dtype == dtype:
            return self
        data = self.data.astype(dtype)
        if not _engine.all_finite(data, threads):
            raise ValueError(f"X contains infinity (after conversion to {np.dtype(dtype)})")
        return CSRInput(data, self.indices, self.indptr, self.shape)

    def __getitem__(self, rows: object) -> CSRInput:
        """The rows named by the integer array `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pos = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return CSRInput(self.data[pos], self.indices[pos], indptr, (len(rows), self.shape[1]))

    def toarray(self) -> np.ndarray:
        """The dense ``(n_samples, n_features)`` array (the NumPy reference computes on it)."""
        out = np.zeros(self.shape, dtype=self.dtype)
        out[np.repeat(np.arange(self.shape[0]), np.diff(self.indptr)), self.indices] = self.data
        return out


def is_sparse(X: object) -> bool:
    """True for a scipy.sparse matrix or array (False without scipy loaded)."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(X)


def check_sparse(X: object, n_features: int, dtype: np.dtype, name: str = "X",
                 threads: int = 0) -> CSRInput:
    """The scipy sparse `X` as a checked :class:`CSRInput` of `dtype` (see the module
    docstring; its values' finiteness checked on `threads` threads, 0: all); ValueError
    or TypeError naming the problem."""
    shape = X.shape
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_features}); got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if shape[1] != n_features:
        raise ValueError(
            f"{name} has {shape[1]} features but the network expects {n_features}")
    data_kind = X.dtype
    if data_kind.kind not in "biuf" or data_kind == np.float16:
        raise TypeError(f"{name} must hold numbers (bool, integer, float32 or float64), "
                        f"got dtype {data_kind}")
    fmt = X.format
    if fmt == "csr":
        _check_compressed(X.indptr, X.indices, X.data, shape[0], shape[1], "row", name)
    elif fmt == "csc":
        _check_compressed(X.indptr, X.indices, X.data, shape[1], shape[0], "column", name)
    elif fmt == "coo":
        _check_coo(X.row, X.col, X.data, shape, name)
    if fmt != "csr":
        X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    nnz = int(X.indptr[-1])
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        data = np.ascontiguousarray(X.data[:nnz], dtype=dtype)
    if not _engine.all_finite(data, threads):
        bad = "NaN" if np.isnan(data).any() else "infinity"
        src = f" (after conversion to {dtype})" if X.dtype != dtype else ""
        raise ValueError(f"{name} contains {bad}{src}")
    return CSRInput(data, np.ascontiguousarray(X.indices[:nnz], dtype=np.int32),
                    np.ascontiguousarray(X.indptr, dtype=np.int64), shape)


def _check_compressed(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, major: int,
                      minor: int, what: str, name: str) -> None:
    """CSR/CSC structure: indptr (major + 1) from 0, non-decreasing, to at most the
    length of indices and data; indices in [0, minor)."""
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise TypeError(f"sparse {name} must have integer indices and indptr")
    if indptr.ndim != 1 or len(indptr) != major + 1:
        raise ValueError(f"sparse {name}: indptr has {len(indptr)} entries, expected "
                         f"{major + 1} (one per {what} + 1)")
    if indptr[0] != 0:
        raise ValueError(f"sparse {name}: indptr must start at 0, got {indptr[0]}")
    if (indptr[1:] < indptr[:-1]).any():
        raise ValueError(f"sparse {name}: indptr is not non-decreasing")
    nnz = int(indptr[-1])
    if indices.ndim != 1 or data.ndim != 1 or nnz > len(indices) or len(indices) != len(data):
        raise ValueError(f"sparse {name}: indptr ends at {nnz} but indices and data hold "
                         f"{len(indices)} and {len(data)} entries")
    _check_range(indices[:nnz], minor, "column" if what == "row" else "row", name)


def _check_coo(row: np.ndarray, col: np.ndarray, data: np.ndarray, shape: tuple,
               name: str) -> None:
    if not len(row) == len(col) == len(data):
        raise ValueError(f"sparse {name}: row, col and data lengths differ "
                         f"({len(row)}, {len(col)}, {len(data)})")
    _check_range(row, shape[0], "row", name)
    _check_range(col, shape[1], "column", name)


def _check_range(idx: np.ndarray, bound: int, what: str, name: str) -> None:
    if len(idx) and (idx.min() < 0 or idx.max() >= bound):
        raise ValueError(f"sparse {name} has {what} indices out of range [0, {bound}): "
                         f"min {idx.min()}, max {idx.max()}")
