"""Model files that cannot execute code on load: a fixed binary frame around a JSON
header and raw little-endian arrays, versioned and checksummed, written atomically.

Layout::

    magic      8 bytes   b"FASTMLP\\x00"
    version    u32 LE    FORMAT_VERSION
    hlen       u64 LE    length of the JSON header
    header     hlen bytes UTF-8 JSON: {"kind", "config", "arrays": [{"name", "dtype",
                         "shape", "offset", "nbytes"}...], "payload_sha256"}
    payload    the arrays' bytes, at the offsets the header gives
    trailer    32 bytes  SHA-256 of everything before it

Loading checks the magic, version, sizes (against the file's real length and sane limits)
and both digests before it trusts anything, and then rebuilds the model from plain
values; nothing in the file is executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

MAGIC = b"FASTMLP\x00"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 34  # 16 GiB: larger files are refused before reading
_ALLOWED_DTYPES = {"<f4", "<f8", "<i8", "<u8"}
_PREFIX = struct.Struct("<8sIQ")


def dumps(kind: str, config: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """The file's bytes for `config` (JSON-able) and named arrays."""
    index, chunks, offset = [], [], 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        if a.dtype.str not in _ALLOWED_DTYPES:
            raise TypeError(f"cannot store array {name!r} of dtype {a.dtype}")
        data = a.tobytes()
        index.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                      "offset": offset, "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    payload = b"".join(chunks)
    header = json.dumps({"kind": kind, "config": config, "arrays": index,
                         "payload_sha256": hashlib.sha256(payload).hexdigest()},
                        sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + payload
    return body + hashlib.sha256(body).digest()


def loads(data: bytes, source: str = "data") -> tuple[str, dict, dict[str, np.ndarray]]:
    """(kind, config, arrays) from bytes made by dumps; ValueError names any problem."""
    if len(data) < _PREFIX.size + 32:
        raise ValueError(f"{source}: too short to be a fastmlp model file ({len(data)} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"{source}: not a fastmlp model file (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"{source}: model file format version {version} is not supported "
                         f"(this fastmlp reads version {FORMAT_VERSION})")
    if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen + 32 > len(data):
        raise ValueError(f"{source}: truncated or corrupt (header of {hlen} bytes does not fit)")
    body, trailer = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != trailer:
        raise ValueError(f"{source}: checksum mismatch: the file is truncated or corrupted")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + hlen].decode())
        payload = body[_PREFIX.size + hlen :]
        if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
            raise ValueError("payload checksum mismatch")
        arrays = {}
        for entry in header["arrays"]:
            dtype, shape = entry["dtype"], tuple(int(s) for s in entry["shape"])
            start, nbytes = int(entry["offset"]), int(entry["nbytes"])
            if dtype not in _ALLOWED_DTYPES or min(shape, default=0) < 0:
                raise ValueError(f"bad array entry {entry['name']!r}")
            if start < 0 or start + nbytes > len(payload) or \
                    nbytes != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
                raise ValueError(f"array {entry['name']!r} does not fit the payload")
            arr = np.frombuffer(payload, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize,
                                offset=start)
            arrays[str(entry["name"])] = arr.reshape(shape).astype(dtype[1:], copy=True)
        return str(header["kind"]), dict(header["config"]), arrays
    except ValueError as exc:
        raise ValueError(f"{source}: corrupt model file: {exc}") from None
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: corrupt model file header ({exc!r})") from None


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that the file is either the old one or the complete new
    one: a temporary file in the same directory, fsync, then os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent or ".", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def read_file(path: str | os.PathLike) -> bytes:
    """The file's bytes, refusing files over MAX_FILE_BYTES before reading them."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit")
    return path.read_bytes()
