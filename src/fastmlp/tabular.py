"""CSV tables of features and labels: one reader for training, evaluation and prediction.

The fast path is pandas' C parser when pandas is installed, otherwise ``numpy.loadtxt``;
both give the same result. A file the fast path cannot read cleanly is scanned once
more, row by row, to name the first problem (file, line, column); that scan runs only
on failure.

Layout rules: an optional header row (detected: a column that is numeric in the first
data row but not in the first row), the label column chosen by ``label_column`` (an
index or a header name), else by a header name in :data:`LABEL_NAMES`, else (no header)
the last column. Labels may be integers (with gaps), other numbers, or strings.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

__all__ = ["LABEL_NAMES", "Table", "read_csv"]

#: Header names taken as the label column when ``label_column`` is not given
#: (compared case-insensitively, in this order of preference).
LABEL_NAMES: tuple[str, ...] = ("label", "labels", "target", "class", "y")

_ENCODING = "utf-8-sig"  # a byte-order mark, as spreadsheet programs write it, is dropped
_ENGINES = ("auto", "pandas", "numpy")


@dataclass(frozen=True, eq=False)
class Table:
    """Features and labels read from a CSV file.

    Attributes
    ----------
    X : numpy.ndarray
        Features, shape ``(n_samples, n_features)``, of the requested float dtype.
    y : numpy.ndarray or None
        Labels, shape ``(n_samples,)``: ``int64`` when every label is an integer,
        ``float64`` when they are other numbers, otherwise strings (``numpy.str_``).
        None when the table was read without a label column.
    feature_names : tuple of str or None
        The header's names of the feature columns; None without a header.
    label_name : str or None
        The header's name of the label column, or None.
    label_index : int or None
        Position of the label column in the file (0-based), or None.
    """

    X: np.ndarray
    y: Optional[np.ndarray]
    feature_names: Optional[tuple[str, ...]]
    label_name: Optional[str]
    label_index: Optional[int]


def read_csv(
    path: Union[str, os.PathLike],
    *,
    label_column: Union[int, str, None] = None,
    labels: Optional[bool] = True,
    header: Optional[bool] = None,
    dtype: str = "float32",
    engine: str = "auto",
) -> Table:
    """Read a comma-separated table of numeric features and (optionally) labels.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file (UTF-8; blank lines are skipped; fields may be quoted).
    label_column : int or str, optional
        The label column: a 0-based index (negative counts from the end) or a header
        name. By default a header column named ``label``, ``labels``, ``target``,
        ``class`` or ``y`` (any case); without a header, the last column. A file with a
        header that names none of these needs ``label_column``.
    labels : bool or None, default True
        False reads every column as a feature (``y`` is None). None (for prediction
        inputs) reads a header's label-named column as labels and every column as a
        feature when there is none.
    header : bool, optional
        Whether the first row is a header. By default it is detected: the first row is
        a header when one of its fields is not a number where the next row has one.
    dtype : {"float32", "float64"}, default "float32"
        dtype of the features.
    engine : {"auto", "pandas", "numpy"}, default "auto"
        The parser: pandas when it is installed (fastest), else ``numpy.loadtxt``.

    Returns
    -------
    Table
        ``X``, ``y`` and the header's names.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        For an empty file, a header without data rows, fewer than two columns (with
        labels), rows of different lengths, a feature that is not a finite number, an
        empty label, an unknown or ambiguous label column; the message names the file
        and, where there is one, the line and column.
    """
    p = Path(os.fspath(path))
    name = str(p)
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {_ENGINES}, got {engine!r}")
    if not p.is_file():
        raise FileNotFoundError(f"{name}: no such file")
    first_rows = list(_rows(p, name, limit=2))
    if not first_rows:
        raise ValueError(f"{name}: empty CSV file")
    has_header = _detect_header(first_rows) if header is None else bool(header)
    names = tuple(first_rows[0][1]) if has_header else None
    skip = first_rows[0][0] if has_header else 0  # lines up to and including the header
    if has_header and len(first_rows) == 1:
        raise ValueError(f"{name}: CSV file has a header but no data rows")
    n_cols = len(first_rows[0][1])
    if labels:
        label = _label_index(label_column, names, n_cols, name)
    elif label_column is not None:
        raise ValueError("label_column needs labels=True")
    else:
        label = None if labels is False or names is None else _named_label(names, name)
    if engine == "auto":
        engine = "pandas" if _have_pandas() else "numpy"
    reader = _read_pandas if engine == "pandas" else _read_numpy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a parser's complaint is a failure here
            X, raw = reader(p, skip, n_cols, label, dt)
        X, y = _checked(X, raw)
    except (ValueError, TypeError, Warning) as exc:
        _diagnose(p, name, skip, n_cols, label)
        raise ValueError(f"{name}: cannot read the CSV file ({exc})") from None
    if X.shape[0] == 0:
        raise ValueError(f"{name}: no data rows")
    if label is None:
        features = names
    else:
        features = None if names is None else names[:label] + names[label + 1:]
    return Table(X=np.ascontiguousarray(X, dtype=dt), y=y, feature_names=features,
                 label_name=None if names is None or label is None else names[label],
                 label_index=label)


def _rows(p: Path, name: str, limit: Optional[int] = None) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped fields) of the non-blank rows, up to `limit` of them."""
    try:
        with open(p, newline="", encoding=_ENCODING) as fh:
            reader = csv.reader(fh)
            count = 0
            for row in reader:
                if row and any(c.strip() for c in row):
                    yield reader.line_num, [c.strip() for c in row]
                    count += 1
                    if count == limit:
                        return
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not a UTF-8 text file ({exc.reason} at byte "
                         f"{exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{name}: malformed CSV: {exc}") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _detect_header(first_rows: list[tuple[int, list[str]]]) -> bool:
    """A header has a non-number where the first data row has a number (with one row
    only: when none of its fields is a number)."""
    head = first_rows[0][1]
    if len(first_rows) == 1:
        return not any(_is_number(c) for c in head)
    data = first_rows[1][1]
    return any(_is_number(d) and not _is_number(h) for h, d in zip(head, data))


def _label_index(label_column: Union[int, str, None], names: Optional[tuple[str, ...]],
                 n_cols: int, name: str) -> int:
    if n_cols < 2:
        raise ValueError(f"{name}: need at least 2 columns (features + label), got {n_cols}")
    if isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool):
        if not -n_cols <= label_column < n_cols:
            raise ValueError(f"{name}: label_column={label_column} out of range for "
                             f"{n_cols} columns")
        return int(label_column) % n_cols
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(f"{name}: label_column={label_column!r} is a column name, but "
                             "the file has no header row; give the column's index")
        hits = [j for j, n in enumerate(names) if n == label_column] or \
               [j for j, n in enumerate(names) if n.lower() == label_column.lower()]
        if not hits:
            raise ValueError(f"{name}: no column named {label_column!r} (columns: "
                             f"{_some(names)})")
        if len(hits) > 1:
            raise ValueError(f"{name}: {len(hits)} columns are named {label_column!r} "
                             f"(columns {', '.join(str(j) for j in hits)}); give an index")
        return hits[0]
    if label_column is not None:
        raise TypeError(f"label_column must be an int, a str or None, got {label_column!r}")
    if names is None:
        return n_cols - 1  # the documented layout of a file without a header: label last
    found = _named_label(names, name)
    if found is not None:
        return found
    raise ValueError(
        f"{name}: cannot tell which column holds the labels: the header ({_some(names)}) "
        f"names none of {', '.join(LABEL_NAMES)}; give label_column (CLI: --label-column "
        "NAME|INDEX)")


def _named_label(names: tuple[str, ...], name: str) -> Optional[int]:
    """The column a name in LABEL_NAMES marks as the labels, or None."""
    lowered = [n.lower() for n in names]
    for wanted in LABEL_NAMES:
        hits = [j for j, n in enumerate(lowered) if n == wanted]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(f"{name}: {len(hits)} columns are named {wanted!r}; choose "
                             "one with label_column (CLI: --label-column)")
    return None


def _some(names: tuple[str, ...], k: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f", ... {len(names) - k} more" if len(names) > k else "")


def _have_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def _read_pandas(p: Path, skip: int, n_cols: int, label: Optional[int],
                 dt: np.dtype) -> tuple[np.ndarray, Optional[np.ndarray]]:
    import pandas as pd

    dtypes = {j: np.float64 for j in range(n_cols)}
    if label is not None:
        dtypes[label] = str
    # pandas < 3 parses floats by default with a fast method that can be off by one unit
    # in the last place; round_trip rounds correctly, as numpy does (and pandas 3 always)
    major = int(pd.__version__.split(".")[0])
    precision = {"float_precision": "round_trip"} if major < 3 else {}
    frame = pd.read_csv(p, sep=",", header=None, names=list(range(n_cols)), index_col=False,
                        skiprows=skip, dtype=dtypes, encoding=_ENCODING, engine="c",
                        skip_blank_lines=True, keep_default_na=False, na_values=[],
                        comment=None, quotechar='"', **precision)
    raw = None
    if label is not None:
        raw = frame.pop(label).to_numpy(dtype=object)
    return frame.to_numpy(dtype=np.float64), raw


def _read_numpy(p: Path, skip: int, n_cols: int, label: Optional[int],
                dt: np.dtype) -> tuple[np.ndarray, Optional[np.ndarray]]:
    converters = None
    codes: dict[str, float] = {}
    if label is not None:  # label strings become codes in the float table: one pass
        def code(field: str) -> float:
            return codes.setdefault(field.strip(), float(len(codes)))

        converters = {label: code}
    table = np.loadtxt(p, dtype=np.float64, delimiter=",", comments=None, skiprows=skip,
                       encoding=_ENCODING, ndmin=2, quotechar='"', converters=converters)
    if table.shape[1] != n_cols and table.size:
        raise ValueError(f"{table.shape[1]} columns, expected {n_cols}")
    if label is None:
        return table, None
    strings = np.array(list(codes), dtype=object)
    raw = strings[table[:, label].astype(np.intp)] if len(strings) else strings
    return np.delete(table, label, axis=1), raw


def _checked(X: np.ndarray,
             raw: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The features as float, the labels parsed; ValueError if something needs the
    diagnostic scan (a missing or non-finite value)."""
    if not np.isfinite(X).all():
        raise ValueError("a feature is missing or not a finite number")
    if raw is None:
        return X, None
    if not all(isinstance(v, str) and v.strip() for v in raw):
        raise ValueError("a label is missing")
    return X, _parse_labels(raw)


def _parse_labels(raw: np.ndarray) -> np.ndarray:
    """int64 when every label is an integer, float64 when every one is a finite number,
    else the stripped strings."""
    s = np.char.strip(raw.astype(str))
    try:
        return s.astype(np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        f = s.astype(np.float64)
    except ValueError:
        return s
    if not np.isfinite(f).all():
        return s
    return f.astype(np.int64) if np.all(f == np.round(f)) and np.abs(f).max() < 2**53 else f


def _diagnose(p: Path, name: str, skip: int, n_cols: int, label: Optional[int]) -> None:
    """Scan the file row by row and raise ValueError naming its first problem."""
    rows = _rows(p, name)
    if skip:
        next(rows)  # the header
    first = None
    for line, row in rows:
        first = first or line
        if len(row) != n_cols:
            raise ValueError(f"{name}: ragged CSV: line {line} has {len(row)} fields, "
                             f"expected {n_cols} (as in line {first})")
        for j, cell in enumerate(row):
            where = f"at line {line}, column {j + 1}"
            if j == label:
                if not cell:
                    raise ValueError(f"{name}: empty label {where}")
            elif not cell:
                raise ValueError(f"{name}: empty value {where}")
            elif not _is_number(cell):
                raise ValueError(f"{name}: non-numeric value {cell!r} {where}")
            elif not math.isfinite(float(cell)):
                raise ValueError(f"{name}: value {cell!r} {where} is not a finite number")
