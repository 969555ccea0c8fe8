"""Reading data whose headers are not trusted: a size a file claims never decides an
allocation on its own.

:func:`read_declared` reads exactly the bytes a header declared: from a regular file
only after its size is checked, from a stream (gzip, a zip member) as the data arrives,
failing as soon as the stream ends short of the claim or goes past it.
:func:`read_npy` and :func:`read_npz` read ``.npy`` arrays (numeric dtypes only, no
pickles) with it, parsing the header here rather than in ``numpy.lib.format``, which
reads a header of any claimed length and allocates an array from the claimed shape
before it knows whether the data is there."""

from __future__ import annotations

import ast
import io
import lzma
import math
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

CHUNK_BYTES = 1 << 16  # what one read may allocate before it knows the data is there
MAX_NPY_HEADER_BYTES = 10_000  # numpy.lib.format's own limit
_NPY_MAGIC = b"\x93NUMPY"
_NPY_KEYS = {"descr", "fortran_order", "shape"}
# what a damaged zip archive or compressed member raises, besides ValueError
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
                  NotImplementedError, RuntimeError, struct.error)


def read_declared(fh: BinaryIO, nbytes: int, name: str, what: str) -> np.ndarray:
    """The `nbytes` bytes a header declared, as a writable uint8 array, checking that the
    stream ends right after them.

    Parameters
    ----------
    fh : binary file object
        Positioned at the data.
    nbytes : int
        The size the header claims.
    name, what : str
        The file, and what the bytes are (``"image data (dims 2x3, uint8)"``), for messages.

    Raises
    ------
    ValueError
        ``truncated`` when fewer bytes follow, ``trailing bytes`` when more do.
    """
    size = _remaining_size(fh)
    if size is not None and size < nbytes:
        raise _truncated(name, nbytes, what, size)
    if size is not None:
        buf = np.empty(nbytes, dtype=np.uint8)
        got = _readinto_exact(fh, memoryview(buf))
    else:  # a stream: allocate as the data arrives
        grown = bytearray()
        while len(grown) < nbytes:
            chunk = fh.read(min(CHUNK_BYTES, nbytes - len(grown)))
            if not chunk:
                break
            grown += chunk
        buf, got = np.frombuffer(grown, dtype=np.uint8), len(grown)
    if got < nbytes:
        raise _truncated(name, nbytes, what, got)
    extra = _count_remaining(fh)
    if extra:
        raise ValueError(f"{name}: {extra} trailing bytes after the {nbytes} bytes of {what} "
                         "declared by the header; the file is corrupt or not of this format")
    return buf


def _truncated(name: str, nbytes: int, what: str, found: int) -> ValueError:
    return ValueError(f"{name}: truncated: expected {nbytes} bytes of {what}, found {found}")


def _remaining_size(fh: BinaryIO) -> int | None:
    """Bytes left in a regular file, or None for a stream whose size is unknown (a
    GzipFile's fileno is the compressed file's)."""
    if not isinstance(fh, (io.BufferedReader, io.FileIO)):
        return None
    try:
        st = os.fstat(fh.fileno())
        return st.st_size - fh.tell() if stat.S_ISREG(st.st_mode) else None
    except OSError:  # io.UnsupportedOperation is one
        return None


def _readinto_exact(fh: BinaryIO, buf: memoryview) -> int:
    """Fill ``buf`` from ``fh``; return the number of bytes actually read."""
    total = 0
    while total < len(buf):
        got = fh.readinto(buf[total:])  # type: ignore[attr-defined]
        if not got:
            break
        total += got
    return total


def _count_remaining(fh: BinaryIO) -> int:
    """Count (and discard) the bytes left in ``fh``, a chunk at a time."""
    count = 0
    while chunk := fh.read(CHUNK_BYTES):
        count += len(chunk)
    return count


def read_npy(fh: BinaryIO, name: str) -> np.ndarray:
    """The numeric array of the ``.npy`` stream `fh` (versions 1 to 3).

    Raises
    ------
    ValueError
        For a bad magic string or header, a non-numeric dtype (object arrays, that is
        pickles, included), or data that does not match the header's shape.
    """
    prefix = fh.read(len(_NPY_MAGIC) + 2)
    if len(prefix) < len(_NPY_MAGIC) + 2 or not prefix.startswith(_NPY_MAGIC):
        raise ValueError(f"{name}: not a .npy array (bad magic string {prefix[:8]!r})")
    major = prefix[len(_NPY_MAGIC)]
    if major not in (1, 2, 3):
        raise ValueError(f"{name}: unsupported .npy format version {major}")
    length_format = "<H" if major == 1 else "<I"
    raw = fh.read(struct.calcsize(length_format))
    hlen = struct.unpack(length_format, raw)[0] if len(raw) == struct.calcsize(
        length_format) else -1
    if not 0 <= hlen <= MAX_NPY_HEADER_BYTES:
        raise ValueError(f"{name}: .npy header length {hlen} is not in [0, "
                         f"{MAX_NPY_HEADER_BYTES}]")
    header = fh.read(hlen)
    if len(header) < hlen:
        raise ValueError(f"{name}: truncated .npy header")
    shape, fortran, dtype = _parse_npy_header(header, "utf-8" if major == 3 else "latin-1",
                                              name)
    what = f"array data (shape {shape}, {dtype})"
    buf = read_declared(fh, math.prod(shape) * dtype.itemsize, name, what)
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _parse_npy_header(header: bytes, encoding: str,
                      name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from a .npy header dict literal."""
    try:
        d = ast.literal_eval(header.decode(encoding))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError,
            UnicodeDecodeError) as exc:
        raise ValueError(f"{name}: cannot parse the .npy header: {exc}") from exc
    if not isinstance(d, dict) or set(d) != _NPY_KEYS:
        raise ValueError(f"{name}: the .npy header must be a dict with the keys "
                         f"{sorted(_NPY_KEYS)}, got {header[:80]!r}")
    shape, fortran, descr = d["shape"], d["fortran_order"], d["descr"]
    if not isinstance(shape, tuple) or len(shape) > 32 or \
            not all(type(s) is int and 0 <= s < 2**63 for s in shape):
        raise ValueError(f"{name}: invalid .npy shape {shape!r}")
    if not isinstance(fortran, bool):
        raise ValueError(f"{name}: invalid .npy fortran_order {fortran!r}")
    try:
        dtype = np.dtype(descr) if isinstance(descr, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        raise ValueError(f"{name}: the array must hold numbers (bool, integer or float), "
                         f"got dtype {descr!r}")
    return shape, fortran, dtype


def read_npz(file: str | os.PathLike | BinaryIO, name: str,
             choose: Callable[[list[str]], list[str]]) -> dict[str, np.ndarray]:
    """Arrays of the ``.npz`` archive `file`: ``choose(keys)`` gets the archive's keys
    and returns those to read (or raises ValueError).

    Raises
    ------
    ValueError
        For a damaged archive or member (message naming the file and key).
    """
    try:
        with zipfile.ZipFile(file) as zf:
            members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
            arrays = {}
            for key in choose(list(members)):
                if key not in members:
                    raise ValueError(f"{name}: the archive holds no array {key!r}")
                with zf.open(members[key]) as fh:
                    arrays[key] = read_npy(fh, f"{name}[{key!r}]")
            return arrays
    except ARCHIVE_ERRORS as exc:
        raise ValueError(f"{name}: cannot read .npz file: {type(exc).__name__}: {exc}") \
            from exc
