"""Model inputs read in place: the rows ``fit``, ``predict`` and ``evaluate`` hand to the
engine without a float copy of the whole data set.

The engine reads rows of float32, float64, float16, uint8, int8, uint16, int16 and int32
data with any row stride (a row's own elements contiguous), from memory or from a
memory-mapped file (``np.memmap``, ``np.load(path, mmap_mode="r")``), and converts each
batch's rows to the model's dtype as it gathers them. So a uint8 image set costs its own
bytes, not four times as many, and a memory-mapped file larger than memory trains with
only the pages of the batches in flight resident. Other numeric data (bool, 64-bit
integers, big-endian or non-native types) and arrays whose rows are not contiguous are
copied first, into the narrower of their own type (where the engine reads it) and the
model's dtype: a uint8 array stays uint8, a float64 one for a float32 model becomes
float32, with the bits the engine's conversion would give. A memory-mapped array that
would need that copy is refused, since the copy is what mapping it avoids.

The model's input transform (``input_scale``, ``input_shift``; see
:class:`fastmlp.model.base.BaseMLP`) is applied in the same pass: the network sees
``x.astype(dtype) * scale + shift`` per feature, in the model's dtype, the product and the
sum each rounded (never one fused multiply-add), so the result has the bits NumPy gives.
"""

from __future__ import annotations

import numpy as np

from fastmlp import _engine
from fastmlp.validation import all_finite, check_shape

# The element types the engine converts as it copies rows (csrc/input.c)
ENGINE_TYPES = tuple(_engine.INPUT_TYPES)
_CHECK_BYTES = 1 << 23  # converted bytes per block of the finiteness pass


class Features:
    """Checked input rows of a model, as the engine reads them.

    Attributes
    ----------
    data : numpy.ndarray
        The stored rows, shape ``(m, n_features)``, of one of :data:`ENGINE_TYPES`, each
        row's elements contiguous (any row stride); a memory map stays one.
    rows : numpy.ndarray or None
        int64 indices of the stored rows in use, in order (None: all of them).
    scale, shift : numpy.ndarray or None
        The model's input transform, ``(n_features,)`` of `dtype` (None: none).
    dtype : numpy.dtype
        The model's dtype.
    """

    __slots__ = ("data", "rows", "scale", "shift", "dtype")

    def __init__(self, data: np.ndarray, rows: np.ndarray | None, scale: np.ndarray | None,
                 shift: np.ndarray | None, dtype: np.dtype) -> None:
        self.data, self.rows, self.scale, self.shift, self.dtype = data, rows, scale, shift, dtype

    @property
    def shape(self) -> tuple[int, int]:
        n = self.data.shape[0] if self.rows is None else self.rows.shape[0]
        return (n, self.data.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, index: np.ndarray) -> Features:
        """The rows `index` (integers into ``range(len(self))``), without copying data."""
        index = np.asarray(index, dtype=np.int64)
        rows = index if self.rows is None else self.rows[index]
        return Features(self.data, np.ascontiguousarray(rows), self.scale, self.shift,
                        self.dtype)

    def dense(self) -> np.ndarray:
        """The rows as the network sees them: a C-contiguous array of the model's dtype,
        converted and transformed, for the calls that need one array (a copy, except of
        all rows of such an array with no transform: then the data themselves)."""
        if self.rows is None and self.scale is None and self.data.dtype == self.dtype and \
                self.data.flags.c_contiguous:
            return self.data
        data = self.data if self.rows is None else self.data[self.rows]
        return _convert(data, self.dtype, self.scale, self.shift)


def check_input(X: object, n_features: int, dtype: np.dtype,
                transform: tuple[np.ndarray, np.ndarray] | None = None,
                name: str = "X", threads: int = 0, finite: bool = True) -> Features:
    """`X` as :class:`Features` of a model with `n_features` inputs, `dtype` and input
    `transform` ((scale, shift) arrays of `dtype`, or None), checked: 2-D, the right
    width, at least one row, numbers, and finite as the network sees them (after
    conversion and transform). Features checked for this model already (the same dtype
    and transform arrays) come back as they are; other Features are checked again, rows
    and all. The finiteness pass runs on `threads` threads (0: all; a model passes its
    own count, so that a one-thread model starts no threads). With ``finite=False``
    float data skip that pass: for a caller whose engine call checks the rows itself
    (:func:`engine_checks_finite`); integer data are checked as always.

    Raises
    ------
    TypeError
        For data that are not numbers (complex, strings, objects).
    ValueError
        For the wrong shape, NaN or infinity, or a memory-mapped array the engine cannot
        read in place; the message names `name` and the problem.
    """
    scale, shift = (None, None) if transform is None else transform
    if isinstance(X, Features):
        if X.dtype == dtype and X.scale is scale and X.shift is shift and \
                X.shape[1] == n_features:
            return X
        checked = check_input(X.data, n_features, dtype, transform, name, threads)
        return checked if X.rows is None else checked.take(X.rows)
    mapped = isinstance(X, np.memmap)
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (bool, integer or float), got dtype "
                        f"{arr.dtype}")
    check_shape(arr, n_features, name)
    source, readable = arr.dtype, arr.dtype in ENGINE_TYPES
    if not readable or (n_features > 1 and arr.strides[1] != arr.dtype.itemsize):
        if mapped:
            raise ValueError(
                f"{name} is a memory-mapped {arr.dtype} array with strides {arr.strides}, "
                f"which fastmlp cannot read in place (it reads {', '.join(map(str, ENGINE_TYPES))} "
                "with each row's elements contiguous) and will not copy into memory; map "
                "the file with a supported dtype in C order"
            )
        narrow = readable and arr.dtype.itemsize < dtype.itemsize
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            arr = np.ascontiguousarray(arr, dtype=arr.dtype if narrow else dtype)
    if finite or arr.dtype.kind != "f":
        _check_finite(arr, dtype, scale, shift, name, source, threads)
    return Features(arr, None, scale, shift, dtype)


def engine_checks_finite(X: object, features: Features) -> bool:
    """Whether `features`, made from `X` by ``check_input(..., finite=False)``, skipped the
    finiteness pass (float data that were not checked Features already)."""
    return not isinstance(X, Features) and features.data.dtype.kind == "f"


def _convert(data: np.ndarray, dtype: np.dtype, scale: np.ndarray | None,
             shift: np.ndarray | None) -> np.ndarray:
    """``data.astype(dtype) * scale + shift`` (without the transform when scale is None),
    C-contiguous: the engine's conversion, in NumPy."""
    with np.errstate(over="ignore", invalid="ignore"):  # the callers check finiteness
        out = np.array(data, dtype=dtype, order="C", copy=True)
        if scale is not None:
            out *= scale
            out += shift
    return out


def _check_finite(data: np.ndarray, dtype: np.dtype, scale: np.ndarray | None,
                  shift: np.ndarray | None, name: str, source: np.dtype,
                  threads: int) -> None:
    """ValueError unless every row of `data` (given as `source` data) is finite as the
    network sees it. Integers
    convert to finite values, and the transform is monotone in x, so an integer array is
    checked through its type's two extremes; float data take one pass, in blocks, on
    `threads` threads."""
    if data.dtype.kind in "iu":
        if scale is None:
            return
        info = np.iinfo(data.dtype)
        ends = np.repeat(np.array([[info.min], [info.max]], data.dtype), data.shape[1], axis=1)
        if all_finite(_convert(ends, dtype, scale, shift)):
            return
    if scale is None and data.dtype == dtype and data.flags.c_contiguous:
        if all_finite(data, threads):
            return
        bad = data
    else:
        step = max(1, _CHECK_BYTES // (data.shape[1] * dtype.itemsize))
        for r0 in range(0, data.shape[0], step):
            bad = _convert(data[r0 : r0 + step], dtype, scale, shift)
            if not all_finite(bad, threads):
                break
        else:
            return
    what = "NaN" if np.isnan(bad).any() else "infinity"
    how = []
    if source != dtype:
        how.append(f"conversion to {dtype}")
    if scale is not None:
        how.append("the input transform")
    raise ValueError(f"{name} contains {what}" + (f" (after {' and '.join(how)})" if how else ""))
