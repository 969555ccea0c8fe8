"""Dataset loading utilities for fastmlp.

This module only depends on the Python standard library and NumPy.  It
provides

* :func:`read_idx` / :func:`write_idx` -- a strict reader and a writer for
  the IDX format used by MNIST and Fashion-MNIST (raw or gzip-compressed),
* :func:`load_fashion_mnist` -- Fashion-MNIST from a user directory,
  ``$FASTMLP_DATA``, the Debian ``dataset-fashion-mnist`` package or the
  small stratified subset embedded in the package,
* :func:`load_embedded_fashion_mnist` -- the embedded subset directly,
* :func:`load_data` -- generic features/labels from ``.npz``, ``.npy`` or
  ``.csv`` files.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from fastmlp import tabular
from fastmlp.io.untrusted import read_declared, read_npy, read_npz

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "SYSTEM_DATA_DIR",
    "Dataset",
    "read_idx",
    "write_idx",
    "load_fashion_mnist",
    "load_embedded_fashion_mnist",
    "load_data",
]

PathLike = Union[str, "os.PathLike[str]"]

#: IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Refuse to allocate IDX arrays with more elements than this.
_MAX_IDX_ELEMENTS = 2**31

_GZIP_MAGIC = b"\x1f\x8b"

#: Fashion-MNIST class names, indexed by label.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Base names of the four Fashion-MNIST IDX files (each may carry ``.gz``).
FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: Directory used by Debian's ``dataset-fashion-mnist`` package.
SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Name of the environment variable pointing to a data directory.
DATA_ENV_VAR = "FASTMLP_DATA"

_EMBEDDED_NAME = "fashion_mnist_subset.npz"


# --------------------------------------------------------------------------
# IDX reading / writing
# --------------------------------------------------------------------------


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads."""
    chunks = []
    remaining = n
    while remaining > 0:
        chunk = fh.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _idx_kind(ndim: int) -> str:
    return "label" if ndim == 1 else "image" if ndim == 3 else "array"


def _parse_idx(fh: BinaryIO, name: str) -> np.ndarray:
    """Parse an IDX stream; ``name`` is used in error messages."""
    magic = _read_exact(fh, 4)
    if len(magic) < 4:
        raise ValueError(
            f"{name}: not an IDX file: file is only {len(magic)} bytes long "
            "(an IDX header needs at least 4 bytes)"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"{name}: not an IDX file: bad magic number 0x{magic.hex()} "
            "(the first two bytes must be zero)"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"{name}: unsupported IDX type code 0x{type_code:02X} "
            f"(expected one of {known})"
        )
    if not 1 <= ndim <= 4:
        raise ValueError(
            f"{name}: unsupported number of dimensions {ndim} in IDX header "
            "(expected 1 to 4)"
        )
    raw_dims = _read_exact(fh, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{name}: truncated: header declares {ndim} dimensions "
            f"({4 * ndim} bytes) but only {len(raw_dims)} bytes follow"
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    n_elements = math.prod(dims)
    if n_elements > _MAX_IDX_ELEMENTS:
        raise ValueError(
            f"{name}: implausible dimensions {'x'.join(map(str, dims))} "
            f"({n_elements} elements, limit is {_MAX_IDX_ELEMENTS}); "
            "the file is probably corrupt"
        )
    dtype = _IDX_DTYPES[type_code]
    what = f"{_idx_kind(ndim)} data (dims {'x'.join(map(str, dims))}, {dtype.name})"
    buf = read_declared(fh, n_elements * dtype.itemsize, name, what)
    native = dtype.newbyteorder("=")
    arr = buf.view(dtype)
    if dtype != native:  # big-endian data on a little-endian machine
        arr.byteswap(inplace=True)
    return arr.view(native).reshape(dims)


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format).

    The file may be raw or gzip-compressed; compression is detected from
    the magic bytes ``1f 8b``, not from the file name.

    Parameters
    ----------
    path : str or os.PathLike
        Path of the file to read.

    Returns
    -------
    numpy.ndarray
        Array with the shape given in the header and a native-endian dtype
        (``uint8``, ``int8``, ``int16``, ``int32``, ``float32`` or
        ``float64``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid IDX file: bad magic number, unknown type
        code, unsupported number of dimensions, implausibly large
        dimensions, truncated data, trailing bytes, or a corrupt gzip
        stream.  The message names the file and the problem.
    """
    p = Path(os.fspath(path))
    name = str(p)
    with open(p, "rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        if head != _GZIP_MAGIC:
            return _parse_idx(raw, name)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                return _parse_idx(gz, name)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{name}: corrupt or truncated gzip stream ({type(exc).__name__}: {exc})"
            ) from exc


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write an array to an IDX file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.  The file is gzip-compressed when the name ends with
        ``.gz``.
    array : array_like
        Array with 1 to 4 dimensions and dtype ``uint8``, ``int8``,
        ``int16``, ``int32``, ``float32`` or ``float64``.

    Raises
    ------
    ValueError
        If the dtype or number of dimensions cannot be represented in IDX.
    """
    arr = np.asarray(array)
    if not 1 <= arr.ndim <= 4:
        raise ValueError(
            f"{path}: IDX supports 1 to 4 dimensions, got an array with "
            f"{arr.ndim}"
        )
    code = None
    for c, dt in _IDX_DTYPES.items():
        if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize:
            code = c
            break
    if code is None:
        raise ValueError(
            f"{path}: dtype {arr.dtype} cannot be stored in IDX (supported: "
            "uint8, int8, int16, int32, float32, float64)"
        )
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"{path}: dimension too large for IDX: {arr.shape}")
    big = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code])
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(
        f">{arr.ndim}I", *arr.shape
    )
    p = Path(os.fspath(path))
    if p.name.endswith(".gz"):
        with open(p, "wb") as raw, gzip.GzipFile(
            filename="", fileobj=raw, mode="wb", mtime=0
        ) as gz:
            gz.write(header)
            gz.write(big.tobytes())
    else:
        with open(p, "wb") as fh:
            fh.write(header)
            fh.write(big.tobytes())


# --------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of a classification dataset.

    Attributes
    ----------
    X_train, X_test : numpy.ndarray
        Features, shape ``(n, 784)`` or ``(n, 28, 28)``.
    y_train, y_test : numpy.ndarray
        Integer labels (``int64``), shape ``(n,)``.
    source : str
        Human-readable description of where the data came from.
    class_names : tuple of str
        Name of each class, indexed by label.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...] = FASHION_MNIST_CLASSES

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Dataset(X_train={self.X_train.shape} {self.X_train.dtype}, "
            f"y_train={self.y_train.shape}, X_test={self.X_test.shape} "
            f"{self.X_test.dtype}, y_test={self.y_test.shape}, "
            f"source={self.source!r}, n_classes={self.n_classes})"
        )


def _check_float_dtype(dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise ValueError(
            f"dtype must be float32 or float64, got {dtype!r}"
        ) from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _find_idx_files(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Locate the four files in ``directory``; return (found, missing)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, base in FASHION_MNIST_FILES.items():
        for candidate in (base, base + ".gz"):
            f = directory / candidate
            if f.is_file():
                found[key] = f
                break
        else:
            missing.append(f"{base}[.gz]")
    return found, missing


def _resolve_dir(directory: Path, what: str) -> dict[str, Path]:
    """Find the files in ``directory`` or ``directory/fashion-mnist``.

    Raises FileNotFoundError naming what was looked for.
    """
    if not directory.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST {what} {str(directory)!r} does not exist or is "
            "not a directory"
        )
    tried = []
    for d in (directory, directory / "fashion-mnist"):
        if not d.is_dir():
            continue
        found, missing = _find_idx_files(d)
        if not missing:
            return found
        tried.append(f"{d} (missing: {', '.join(missing)})")
    raise FileNotFoundError(
        f"Fashion-MNIST files not found for {what} {str(directory)!r}; "
        f"looked for {', '.join(b + '[.gz]' for b in FASHION_MNIST_FILES.values())} "
        f"in: {'; '.join(tried)}"
    )


def _finish(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    source: str,
    dtype: object,
    flatten: bool,
    normalize: bool,
) -> Dataset:
    dt = _check_float_dtype(dtype)

    def fx(X: np.ndarray) -> np.ndarray:
        if normalize:
            X = X.astype(dt)
            X /= dt.type(255.0)
        else:
            X = np.ascontiguousarray(X, dtype=np.uint8)
        if flatten:
            X = X.reshape(X.shape[0], -1)
        return X

    return Dataset(
        X_train=fx(X_train),
        y_train=np.asarray(y_train, dtype=np.int64),
        X_test=fx(X_test),
        y_test=np.asarray(y_test, dtype=np.int64),
        source=source,
        class_names=FASHION_MNIST_CLASSES,
    )


def _validate_split(
    images: np.ndarray, labels: np.ndarray, img_name: str, lbl_name: str
) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{img_name}: expected images of shape (n, 28, 28), got "
            f"{images.shape}"
        )
    if images.dtype != np.uint8:
        raise ValueError(
            f"{img_name}: expected uint8 pixels, got {images.dtype}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{lbl_name}: expected a 1-D label array, got shape {labels.shape}"
        )
    if labels.dtype.kind not in "ui":
        raise ValueError(
            f"{lbl_name}: expected integer labels, got {labels.dtype}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"count mismatch: {img_name} has {images.shape[0]} images but "
            f"{lbl_name} has {labels.shape[0]} labels"
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > 9:
            bad = labels[(labels < 0) | (labels > 9)]
            raise ValueError(
                f"{lbl_name}: labels must be in 0..9, found {bad.size} out of "
                f"range (e.g. {int(bad[0])}; min {lo}, max {hi})"
            )


def _load_from_dir(
    files: dict[str, Path], dtype: object, flatten: bool, normalize: bool,
    source: str,
) -> Dataset:
    arrays = {key: read_idx(p) for key, p in files.items()}
    _validate_split(
        arrays["train_images"], arrays["train_labels"],
        str(files["train_images"]), str(files["train_labels"]),
    )
    _validate_split(
        arrays["test_images"], arrays["test_labels"],
        str(files["test_images"]), str(files["test_labels"]),
    )
    return _finish(
        arrays["train_images"], arrays["train_labels"],
        arrays["test_images"], arrays["test_labels"],
        source, dtype, flatten, normalize,
    )


def _embedded_path():  # -> importlib.resources.abc.Traversable
    return resources.files("fastmlp") / "data" / _EMBEDDED_NAME


def load_embedded_fashion_mnist(
    *, dtype: str = "float32", flatten: bool = True, normalize: bool = True
) -> Dataset:
    """Load the stratified Fashion-MNIST subset shipped with fastmlp.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        Floating dtype of the features when ``normalize`` is true.
    flatten : bool, default True
        Return features of shape ``(n, 784)`` instead of ``(n, 28, 28)``.
    normalize : bool, default True
        Scale pixels to ``[0, 1]``; when false the ``uint8`` pixels are
        returned unchanged.

    Returns
    -------
    Dataset
        The subset; ``source`` starts with ``"embedded subset"``.

    Raises
    ------
    FileNotFoundError
        If the embedded file is missing from the installation.
    """
    res = _embedded_path()
    if not res.is_file():
        raise FileNotFoundError(
            f"embedded Fashion-MNIST subset not found at {res}; the fastmlp "
            "installation is incomplete"
        )
    name = f"embedded {_EMBEDDED_NAME}"
    with res.open("rb") as fh:
        arrays = read_npz(fh, name, lambda keys: ("X_train", "y_train", "X_test", "y_test"))
    _validate_split(arrays["X_train"], arrays["y_train"],
                    f"{name}[X_train]", f"{name}[y_train]")
    _validate_split(arrays["X_test"], arrays["y_test"],
                    f"{name}[X_test]", f"{name}[y_test]")
    n_tr, n_te = len(arrays["y_train"]), len(arrays["y_test"])
    source = (
        f"embedded subset ({n_tr} train / {n_te} test images, stratified "
        "sample of Fashion-MNIST)"
    )
    return _finish(
        arrays["X_train"], arrays["y_train"], arrays["X_test"],
        arrays["y_test"], source, dtype, flatten, normalize,
    )


def load_fashion_mnist(
    path: PathLike | None = None,
    *,
    dtype: str = "float32",
    flatten: bool = True,
    normalize: bool = True,
) -> Dataset:
    """Load Fashion-MNIST.

    The data is looked up in this order:

    1. ``path``, if given (a directory holding the four IDX files, directly
       or in a ``fashion-mnist/`` subdirectory);
    2. the directory named by ``$FASTMLP_DATA`` (same layout);
    3. ``/usr/share/datasets/fashion-mnist`` (Debian's
       ``dataset-fashion-mnist`` package);
    4. the stratified subset embedded in fastmlp.

    The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with or
    without a ``.gz`` suffix.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the IDX files.
    dtype : {"float32", "float64"}, default "float32"
        Floating dtype of the features when ``normalize`` is true.
    flatten : bool, default True
        Return features of shape ``(n, 784)`` instead of ``(n, 28, 28)``.
    normalize : bool, default True
        Scale pixels to ``[0, 1]``; when false the ``uint8`` pixels are
        returned unchanged.

    Returns
    -------
    Dataset
        Features ``X_*`` and ``int64`` labels ``y_*``; ``source`` tells
        where the data came from.

    Raises
    ------
    FileNotFoundError
        If ``path`` or ``$FASTMLP_DATA`` is given but does not contain the
        files (there is no silent fallback in that case).
    ValueError
        If a file is malformed, image and label counts disagree, or a label
        is outside ``0..9``.
    """
    _check_float_dtype(dtype)
    if path is not None:
        d = Path(os.fspath(path)).expanduser()
        files = _resolve_dir(d, "directory")
        return _load_from_dir(files, dtype, flatten, normalize,
                              str(files["train_images"].parent))
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        d = Path(env).expanduser()
        files = _resolve_dir(d, f"${DATA_ENV_VAR} directory")
        return _load_from_dir(files, dtype, flatten, normalize,
                              str(files["train_images"].parent))
    system = Path(SYSTEM_DATA_DIR)
    if system.is_dir():
        found, missing = _find_idx_files(system)
        if not missing:
            return _load_from_dir(found, dtype, flatten, normalize,
                                  str(system))
    return load_embedded_fashion_mnist(
        dtype=dtype, flatten=flatten, normalize=normalize
    )


# --------------------------------------------------------------------------
# Generic tabular data
# --------------------------------------------------------------------------

_NPZ_KEY_PAIRS = (("X", "y"), ("x", "y"), ("data", "target"))


def _npz_pair(keys: list[str], name: str) -> tuple[str, str]:
    """The first of the feature/label key pairs present in an .npz archive."""
    for kx, ky in _NPZ_KEY_PAIRS:
        if kx in keys and ky in keys:
            return kx, ky
    wanted = ", ".join(f"{a}/{b}" for a, b in _NPZ_KEY_PAIRS)
    raise ValueError(
        f"{name}: .npz file must contain one of the key pairs {wanted}; "
        f"keys found: {keys}"
    )


def _labels_out(y: np.ndarray, dt: np.dtype, name: str) -> np.ndarray:
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind in "ui":
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        raise ValueError(f"{name}: labels must be numeric, got dtype {y.dtype}")
    if y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    return y.astype(dt)


def _features_out(X: np.ndarray, dt: np.dtype, name: str) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise ValueError(
            f"{name}: features must be numeric, got dtype {X.dtype}"
        )
    return np.ascontiguousarray(X, dtype=dt)


def _split_label_column(
    table: np.ndarray, label_column: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    if table.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (rows x columns), got shape "
            f"{table.shape}"
        )
    n_rows, n_cols = table.shape
    if n_rows == 0:
        raise ValueError(f"{name}: no data rows")
    if n_cols < 2:
        raise ValueError(
            f"{name}: need at least 2 columns (features + label), got {n_cols}"
        )
    if not -n_cols <= label_column < n_cols:
        raise ValueError(
            f"{name}: label_column={label_column} out of range for "
            f"{n_cols} columns"
        )
    col = label_column % n_cols
    y = table[:, col]
    X = np.delete(table, col, axis=1)
    return X, y


def load_data(
    path: PathLike, *, label_column: int | str | None = None, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    """Load features and labels from a ``.npz``, ``.npy`` or ``.csv`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.  The format is chosen from the extension:

        ``.npz``
            Arrays under the keys ``X``/``y``, ``x``/``y`` or
            ``data``/``target``.  ``X`` must be 2-D and ``y`` 1-D (or
            ``(n, 1)``) with matching lengths.
        ``.npy``
            A 2-D array; column ``label_column`` holds the labels and the
            remaining columns the features.
        ``.csv``
            Numeric features and a label column, optionally under a header
            row (detected automatically), read by
            :func:`fastmlp.tabular.read_csv`: the label column is
            ``label_column``, else the header's ``label``/``labels``/
            ``target``/``class``/``y`` column, else (no header) the last
            column.  Labels may be integers, other numbers or strings.
    label_column : int or str, optional
        The label column of a ``.npy`` array (an index; default -1, the
        last) or of a CSV file (an index or a header name; default as
        above).  Ignored for ``.npz``.
    dtype : {"float32", "float64"}, default "float32"
        dtype of the returned features (and of non-integral labels).

    Returns
    -------
    X : numpy.ndarray
        Features, shape ``(n_samples, n_features)``.
    y : numpy.ndarray
        Labels, shape ``(n_samples,)``: ``int64`` when every label is
        integral, strings for a CSV label column that is not numeric,
        otherwise floating point of ``dtype``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For an unsupported extension, missing ``.npz`` keys, wrong array
        dimensions, empty files, mismatched lengths, or a CSV file that is
        ragged, has a non-numeric feature or an unknown label column (the
        message names the line and column).
    """
    dt = _check_float_dtype(dtype)
    p = Path(os.fspath(path))
    name = str(p)
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".npz", ".npy") and p.stat().st_size == 0:
        raise ValueError(f"{name}: empty file")

    if suffix == ".npz":
        (kx, X), (ky, y) = read_npz(p, name, lambda keys: _npz_pair(keys, name)).items()
        if X.ndim != 2:
            raise ValueError(
                f"{name}: {kx!r} must be 2-D (samples x features), got shape "
                f"{X.shape}"
            )
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                f"{name}: {ky!r} must be 1-D, got shape {y.shape}"
            )
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"{name}: {kx!r} has {X.shape[0]} rows but {ky!r} has "
                f"{y.shape[0]} labels"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{name}: no samples")
    elif suffix == ".npy":
        with open(p, "rb") as fh:
            table = read_npy(fh, name)  # numeric only, sizes checked against the bytes
        if isinstance(label_column, str):
            raise ValueError(f"{name}: a .npy array has no column names; give "
                             f"label_column as an index, not {label_column!r}")
        X, y = _split_label_column(
            table, -1 if label_column is None else label_column, name)
    elif suffix == ".csv":
        csv_table = tabular.read_csv(p, label_column=label_column, dtype=dt.name)
        y = csv_table.y
        return csv_table.X, y if y.dtype.kind in "iU" else y.astype(dt)
    else:
        raise ValueError(
            f"{name}: unsupported file type {suffix or '(no extension)'!r}; "
            "expected .npz, .npy or .csv"
        )
    return _features_out(X, dt, name), _labels_out(y, dt, name)
