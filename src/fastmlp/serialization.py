"""Model files that cannot execute code on load: a fixed binary frame around a JSON
header and raw little-endian arrays, versioned and checksummed, written atomically.

Layout::

    magic      8 bytes   b"FASTMLP\\x00"
    version    u32 LE    FORMAT_VERSION
    hlen       u64 LE    length of the JSON header
    header     hlen bytes UTF-8 JSON: {"kind", "config", "arrays": [{"name", "dtype",
                         "shape", "offset", "nbytes"}...], "payload_sha256"}
    payload    the arrays' bytes, one after the other at the offsets the header gives
    trailer    32 bytes  SHA-256 of everything before it

Loading checks the magic, version, sizes (against the file's real length and sane limits),
both digests and every field of the header (types, nesting depth, each array's shape
against the bytes it occupies, the arrays tiling the payload exactly) before it allocates
anything from what the file claims; then it rebuilds the model from plain values. Nothing
in the file is executed or unpickled. Every problem is a ValueError naming the source.

Writing goes to a temporary file in the same directory (created with the permissions the
umask gives, or those of the file it replaces), fsync, then ``os.replace``. The writer
holds an advisory lock on its temporary file, so the next save to the same path removes
the temporaries of writers that were killed, and only those.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import stat
import struct
from pathlib import Path

import numpy as np

MAGIC = b"FASTMLP\x00"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20
MAX_HEADER_DEPTH = 64  # nesting of the JSON header (ours is at most ~8 deep)
MAX_NDIM = 32
MAX_FILE_BYTES = 1 << 34  # 16 GiB: larger files are refused before reading
_ALLOWED_DTYPES = {"<f4", "<f8", "<i8", "<u8"}
_PREFIX = struct.Struct("<8sIQ")
_HEADER_KEYS = {"kind": str, "config": dict, "arrays": list, "payload_sha256": str}
_ENTRY_KEYS = {"name", "dtype", "shape", "offset", "nbytes"}
_TMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile's, so older leftovers match


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
    """(kind, config, arrays) from bytes made by :func:`dumps`.

    Parameters
    ----------
    data : bytes-like
        The file's bytes (not copied: the arrays are the only allocation).
    source : str
        Names the file in error messages.

    Returns
    -------
    kind : str
    config : dict
    arrays : dict of str to numpy.ndarray
        Native-endian copies, each exactly as large as its bytes in `data`.

    Raises
    ------
    ValueError
        For anything but an intact file of this format, naming the problem.
    """
    try:
        view = memoryview(data).cast("B")
    except TypeError as exc:
        raise ValueError(f"{source}: expected the bytes of a fastmlp model file, got "
                         f"{type(data).__name__}") from exc
    if len(view) < _PREFIX.size + 32:
        raise ValueError(f"{source}: too short to be a fastmlp model file ({len(view)} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ValueError(f"{source}: not a fastmlp model file (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"{source}: model file format version {version} is not supported "
                         f"(this fastmlp reads version {FORMAT_VERSION})")
    if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen + 32 > len(view):
        raise ValueError(f"{source}: truncated or corrupt (header of {hlen} bytes does not fit)")
    body, trailer = view[:-32], view[-32:]
    if hashlib.sha256(body).digest() != bytes(trailer):
        raise ValueError(f"{source}: checksum mismatch: the file is truncated or corrupted")
    header = _parse_header(view[_PREFIX.size : _PREFIX.size + hlen], source)
    payload = body[_PREFIX.size + hlen :]
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise ValueError(f"{source}: corrupt model file: payload checksum mismatch")
    return header["kind"], header["config"], _read_arrays(header["arrays"], payload, source)


def _parse_header(raw: memoryview, source: str) -> dict:
    """The JSON header, its top-level fields type-checked and its nesting bounded."""
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{source}: corrupt model file header: {exc}") from exc
    _check_depth(header, source)
    if not isinstance(header, dict) or set(header) != set(_HEADER_KEYS):
        found = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"{source}: corrupt model file header: expected the fields "
                         f"{sorted(_HEADER_KEYS)}, found {found}")
    for key, kind in _HEADER_KEYS.items():
        if not isinstance(header[key], kind):
            raise ValueError(f"{source}: corrupt model file header: {key!r} must be a "
                             f"{kind.__name__}, got {type(header[key]).__name__}")
    return header


def _check_depth(value: object, source: str) -> None:
    """Refuse JSON nested deeper than MAX_HEADER_DEPTH (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_HEADER_DEPTH:
                raise ValueError(f"{source}: corrupt model file header: nested more than "
                                 f"{MAX_HEADER_DEPTH} levels deep")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def _read_arrays(index: list, payload: memoryview, source: str) -> dict[str, np.ndarray]:
    """The arrays the header's index describes; they must tile the payload exactly, each
    entry's shape matching its byte count, before any array is allocated."""
    entries, end = [], 0
    for i, entry in enumerate(index):
        what = f"{source}: corrupt model file: array entry {i}"
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise ValueError(f"{what} must have the fields {sorted(_ENTRY_KEYS)}")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or any(name == e[0] for e in entries):
            raise ValueError(f"{what} has a missing or repeated name {name!r}")
        what = f"{source}: corrupt model file: array {name!r}"
        if dtype not in _ALLOWED_DTYPES:
            raise ValueError(f"{what} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or \
                not all(_is_count(s) for s in shape):
            raise ValueError(f"{what} has an invalid shape {shape!r}")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if not all(type(entry[k]) is int for k in ("offset", "nbytes")) or \
                (entry["offset"], entry["nbytes"]) != (end, nbytes):
            raise ValueError(f"{what} (shape {shape}, offset {entry['offset']!r}, nbytes "
                             f"{entry['nbytes']!r}) does not match its place in the payload")
        end += nbytes
        if end > len(payload):
            raise ValueError(f"{what} runs past the end of the payload ({len(payload)} bytes)")
        entries.append((name, dtype, shape, end - nbytes))
    if end != len(payload):
        raise ValueError(f"{source}: corrupt model file: {len(payload) - end} payload bytes "
                         "belong to no array")
    return {name: np.frombuffer(payload, dtype=dtype, count=math.prod(shape), offset=start)
            .reshape(shape).astype(dtype[1:], copy=True)
            for name, dtype, shape, start in entries}


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value < 1 << 63


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that the file is either the old one or the complete new
    one: a temporary file in the same directory, fsync, then ``os.replace``.

    A new file gets the permissions ``open(path, "w")`` would give it (0666 less the
    umask); a replaced file keeps its permissions. Temporary files that killed writers
    left next to `path` are removed first.
    """
    path = Path(path)
    _remove_stale_temporaries(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # before closing: the lock marks it in use until then
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _temporary_pattern(path: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(path.name)}\.[{_TMP_ALPHABET}]{{8}}\.tmp")


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, locked temporary file next to `path` (its descriptor and name)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    while True:
        name = "".join(secrets.choice(_TMP_ALPHABET) for _ in range(8))
        tmp = path.parent / f".{path.name}.{name}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # a cleaner may have taken it for stale between open and flock: then retry
            if _same_file(fd, tmp):
                if mode is not None:
                    os.fchmod(fd, mode)
                return fd, tmp
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _same_file(fd: int, name: Path) -> bool:
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of earlier saves to `path` whose writer is gone (a
    writer holds its file's lock until the file has its final name)."""
    pattern = _temporary_pattern(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in filter(pattern.fullmatch, names):
        candidate = path.parent / name
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, candidate):
                    os.unlink(candidate)
        except OSError:
            pass  # in use by a live writer, or already gone
        finally:
            os.close(fd)


def read_file(path: str | os.PathLike) -> bytes:
    """The file's bytes, refusing files over MAX_FILE_BYTES before reading them."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES}-byte limit")
    return path.read_bytes()
