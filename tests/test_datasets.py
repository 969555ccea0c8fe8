"""Tests for fastmlp.datasets (no network access needed)."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from fastmlp import datasets as ds_mod
from fastmlp.datasets import (
    Dataset,
    load_data,
    load_embedded_fashion_mnist,
    load_fashion_mnist,
    read_idx,
    write_idx,
)

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


# ---------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------

IDX_DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(42)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True,
                        dtype=dt)


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
def test_idx_roundtrip(tmp_path, dtype, suffix, shape):
    arr = _sample(dtype, shape)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, arr)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    out = read_idx(path)
    assert out.shape == shape
    assert out.dtype == np.dtype(dtype)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_idx_header_is_big_endian(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.array([1, 258], dtype=np.int16))
    data = path.read_bytes()
    assert data[:4] == bytes([0, 0, 0x0B, 1])
    assert struct.unpack(">I", data[4:8]) == (2,)
    assert data[8:] == b"\x00\x01\x01\x02"


def test_idx_gzip_detected_by_magic_not_extension(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz = tmp_path / "a.gz"
    write_idx(gz, arr)
    disguised = tmp_path / "plain-name-idx2-ubyte"
    disguised.write_bytes(gz.read_bytes())
    np.testing.assert_array_equal(read_idx(disguised), arr)
    raw = tmp_path / "raw"
    write_idx(raw, arr)
    named_gz = tmp_path / "raw-but-named.gz"
    named_gz.write_bytes(raw.read_bytes())
    np.testing.assert_array_equal(read_idx(named_gz), arr)


def test_idx_result_is_writable(tmp_path):
    path = tmp_path / "w.gz"
    write_idx(path, np.zeros((2, 2), dtype=np.float32))
    out = read_idx(path)
    out[0, 0] = 1.0
    assert out[0, 0] == 1.0


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_truncated(tmp_path, compress):
    data = _header(0x08, (60000, 28, 28)) + b"\x00" * 1000
    path = tmp_path / "train-images-idx3-ubyte"
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"truncated: expected 47040000 bytes "
                                         r"of image data.*found 1000") as ei:
        read_idx(path)
    assert str(path) in str(ei.value)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_trailing_bytes(tmp_path, compress):
    data = _header(0x08, (4,)) + b"\x01\x02\x03\x04" + b"junk!"
    if compress:
        data = gzip.compress(data)
    path = tmp_path / "labels"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"5 trailing bytes") as ei:
        read_idx(path)
    assert str(path) in str(ei.value)


def test_idx_truncated_header_dims(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02")
    with pytest.raises(ValueError, match=r"truncated: header declares 3 dim"):
        read_idx(path)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=r"bad magic number") as ei:
        read_idx(path)
    assert "bad" in str(ei.value)


def test_idx_bad_type_code(tmp_path):
    path = tmp_path / "badtype"
    path.write_bytes(_header(0x0A, (1,)) + b"\x00")
    with pytest.raises(ValueError, match=r"unsupported IDX type code 0x0A"):
        read_idx(path)


@pytest.mark.parametrize("ndim", [0, 5])
def test_idx_bad_ndim(tmp_path, ndim):
    path = tmp_path / "badndim"
    path.write_bytes(bytes([0, 0, 8, ndim]) + b"\x00\x00\x00\x01" * ndim)
    with pytest.raises(ValueError, match=r"number of dimensions"):
        read_idx(path)


def test_idx_absurd_dims_rejected_before_allocation(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(_header(0x0E, (0xFFFFFFFF, 0xFFFFFFFF, 16)) + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"implausible dimensions"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path):
    good = gzip.compress(_header(0x08, (100,)) + bytes(range(100)))
    bad = bytearray(good)
    for i in range(12, len(bad) - 8):
        bad[i] ^= 0xFF
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"gzip") as ei:
        read_idx(path)
    assert "corrupt.gz" in str(ei.value)


def test_idx_truncated_gzip_stream(tmp_path):
    good = gzip.compress(_header(0x08, (1000,)) + bytes(1000))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz"):
        read_idx(path)


def test_idx_foreign_file_png(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ValueError, match=r"picture\.png.*not an IDX file"):
        read_idx(path)


def test_idx_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not an IDX file"):
        read_idx(path)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_write_idx_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"cannot be stored in IDX"):
        write_idx(tmp_path / "a", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"1 to 4 dimensions"):
        write_idx(tmp_path / "b", np.zeros((1, 1, 1, 1, 1), dtype=np.uint8))


# ---------------------------------------------------------------------------
# Fashion-MNIST from directories
# ---------------------------------------------------------------------------

def _write_fashion(directory: Path, n_train: int = 20, n_test: int = 10, *,
                   gz: bool | tuple[bool, bool, bool, bool] = False,
                   train_labels: np.ndarray | None = None,
                   test_labels: np.ndarray | None = None) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28),
                                                dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8)
        if train_labels is None else train_labels,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28),
                                               dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)
        if test_labels is None else test_labels,
    }
    flags = gz if isinstance(gz, tuple) else (gz,) * 4
    for (name, arr), g in zip(arrays.items(), flags):
        write_idx(directory / (name + (".gz" if g else "")), arr)
    return arrays


@pytest.mark.parametrize("gz", [False, True, (True, False, False, True)])
def test_load_fashion_from_dir(tmp_path, gz):
    arrays = _write_fashion(tmp_path / "fm", gz=gz)
    d = load_fashion_mnist(tmp_path / "fm")
    assert isinstance(d, Dataset)
    assert d.X_train.shape == (20, 784) and d.X_test.shape == (10, 784)
    assert d.X_train.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    expected = arrays["train-images-idx3-ubyte"].reshape(20, -1) / 255.0
    np.testing.assert_allclose(d.X_train, expected, rtol=1e-6)
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert d.class_names == CLASS_NAMES
    assert str(tmp_path / "fm") in d.source


def test_load_fashion_options(tmp_path):
    arrays = _write_fashion(tmp_path)
    d = load_fashion_mnist(str(tmp_path), dtype="float64", flatten=False)
    assert d.X_train.shape == (20, 28, 28) and d.X_train.dtype == np.float64
    assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    raw = load_fashion_mnist(tmp_path, normalize=False)
    assert raw.X_train.dtype == np.uint8 and raw.X_train.shape == (20, 784)
    np.testing.assert_array_equal(
        raw.X_test, arrays["t10k-images-idx3-ubyte"].reshape(10, 784))
    with pytest.raises(ValueError, match=r"float32 or float64"):
        load_fashion_mnist(tmp_path, dtype="int32")


def test_load_fashion_from_env(tmp_path, monkeypatch):
    _write_fashion(tmp_path / "direct", n_train=30)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "direct"))
    d = load_fashion_mnist()
    assert d.X_train.shape[0] == 30
    assert str(tmp_path / "direct") in d.source


def test_load_fashion_from_env_subdir(tmp_path, monkeypatch):
    _write_fashion(tmp_path / "root" / "fashion-mnist", n_train=40, gz=True)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "root"))
    d = load_fashion_mnist()
    assert d.X_train.shape[0] == 40
    assert "fashion-mnist" in d.source


def test_explicit_path_beats_env(tmp_path, monkeypatch):
    _write_fashion(tmp_path / "env", n_train=30)
    _write_fashion(tmp_path / "explicit", n_train=50)
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "env"))
    assert load_fashion_mnist(tmp_path / "explicit").X_train.shape[0] == 50


def test_env_set_but_empty_raises(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FASTMLP_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError,
                       match=r"FASTMLP_DATA.*train-images-idx3-ubyte"):
        load_fashion_mnist()


def test_explicit_missing_path_raises(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"does-not-exist"):
        load_fashion_mnist(tmp_path / "does-not-exist")
    (tmp_path / "partial").mkdir()
    write_idx(tmp_path / "partial" / "train-images-idx3-ubyte",
              np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path / "partial")


def test_label_out_of_range(tmp_path):
    labels = (np.arange(20) % 10).astype(np.uint8)
    labels[3] = 12
    _write_fashion(tmp_path, train_labels=labels)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        load_fashion_mnist(tmp_path)


def test_count_mismatch(tmp_path):
    _write_fashion(tmp_path, n_test=10,
                   test_labels=(np.arange(9) % 10).astype(np.uint8))
    with pytest.raises(ValueError, match=r"count mismatch.*10 images.*9 labels"):
        load_fashion_mnist(tmp_path)


def test_wrong_image_shape(tmp_path):
    _write_fashion(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte",
              np.zeros((20, 14, 14), np.uint8))
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        load_fashion_mnist(tmp_path)


def test_corrupt_file_in_dir_raises_value_error(tmp_path):
    _write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path)


def test_fallback_to_embedded(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    monkeypatch.setattr(ds_mod, "SYSTEM_DATA_DIR", tmp_path / "no-system")
    d = load_fashion_mnist()
    assert d.source.startswith("embedded subset")


def test_system_dir_used(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    _write_fashion(tmp_path / "sys", n_train=30, gz=True)
    monkeypatch.setattr(ds_mod, "SYSTEM_DATA_DIR", tmp_path / "sys")
    d = load_fashion_mnist()
    assert d.X_train.shape[0] == 30
    assert d.source == str(tmp_path / "sys")


# ---------------------------------------------------------------------------
# Embedded subset
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return load_embedded_fashion_mnist()


def test_embedded_shapes_and_values(embedded):
    d = embedded
    assert d.X_train.ndim == 2 and d.X_train.shape[1] == 784
    assert d.X_test.shape[1] == 784
    assert d.X_train.shape[0] == d.y_train.shape[0] >= 1000
    assert d.X_test.shape[0] == d.y_test.shape[0] >= 200
    assert d.X_train.dtype == np.float32
    assert d.y_train.dtype == np.int64
    assert float(d.X_train.min()) >= 0.0 and float(d.X_train.max()) <= 1.0
    assert float(d.X_train.max()) == 1.0  # some pixels saturate
    assert d.class_names == CLASS_NAMES
    assert d.source.startswith("embedded subset")
    assert str(d.X_train.shape[0]) in d.source


def test_embedded_is_stratified(embedded):
    for y in (embedded.y_train, embedded.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.size == 10
        assert np.all(counts == counts[0]) and counts[0] > 0


def test_embedded_dtype_options(embedded):
    d64 = load_embedded_fashion_mnist(dtype="float64", flatten=False)
    assert d64.X_train.dtype == np.float64
    assert d64.X_train.shape == (embedded.X_train.shape[0], 28, 28)
    raw = load_embedded_fashion_mnist(normalize=False)
    assert raw.X_train.dtype == np.uint8
    np.testing.assert_allclose(raw.X_train[:200] / 255.0,
                               embedded.X_train[:200], rtol=1e-6)
    np.testing.assert_array_equal(d64.y_test, embedded.y_test)
    with pytest.raises(ValueError):
        load_embedded_fashion_mnist(dtype="float16")


def test_embedded_file_layout():
    from importlib.resources import files
    res = files("fastmlp") / "data" / "fashion_mnist_subset.npz"
    with res.open("rb") as fh, np.load(fh) as npz:
        assert set(npz.files) == {"X_train", "y_train", "X_test", "y_test"}
        assert npz["X_train"].dtype == np.uint8
        assert npz["X_train"].shape[1:] == (28, 28)
        assert npz["y_train"].dtype == np.uint8


# ---------------------------------------------------------------------------
# load_data
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("keys", [("X", "y"), ("x", "y"), ("data", "target")])
def test_load_data_npz(tmp_path, keys):
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    y = np.array([0, 1, 1, 2])
    path = tmp_path / "d.npz"
    np.savez(path, **{keys[0]: X, keys[1]: y})
    Xo, yo = load_data(path)
    assert Xo.dtype == np.float32 and yo.dtype == np.int64
    np.testing.assert_array_equal(Xo, X)
    np.testing.assert_array_equal(yo, y)


def test_load_data_npz_bad_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((2, 2)), labels=np.zeros(2))
    with pytest.raises(ValueError, match=r"keys found.*features.*labels"):
        load_data(path)


def test_load_data_npz_bad_shapes(tmp_path):
    p1 = tmp_path / "a.npz"
    np.savez(p1, X=np.zeros(5), y=np.zeros(5))
    with pytest.raises(ValueError, match=r"must be 2-D"):
        load_data(p1)
    p2 = tmp_path / "b.npz"
    np.savez(p2, X=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"5 rows.*4 labels"):
        load_data(p2)


def test_load_data_npy(tmp_path):
    table = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0], [5.0, 6.0, 1.0]])
    path = tmp_path / "t.npy"
    np.save(path, table)
    X, y = load_data(path, dtype="float64")
    assert X.dtype == np.float64 and X.shape == (3, 2)
    np.testing.assert_array_equal(y, [0, 1, 1])
    assert y.dtype == np.int64
    X0, y0 = load_data(path, label_column=0)
    np.testing.assert_array_equal(y0, [1, 3, 5])
    np.testing.assert_array_equal(X0, table[:, 1:])
    with pytest.raises(ValueError, match=r"label_column=3 out of range"):
        load_data(path, label_column=3)


def test_load_data_npy_wrong_ndim(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.zeros(6))
    with pytest.raises(ValueError, match=r"expected a 2-D array"):
        load_data(path)


def test_load_data_float_labels(tmp_path):
    path = tmp_path / "r.npy"
    np.save(path, np.array([[1.0, 0.5], [2.0, 1.25]]))
    X, y = load_data(path)
    assert y.dtype.kind == "f"
    np.testing.assert_allclose(y, [0.5, 1.25])


def test_load_data_csv_without_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("0.5,1.5,2\n1,2,0\n\n")
    X, y = load_data(path)
    np.testing.assert_allclose(X, [[0.5, 1.5], [1.0, 2.0]])
    np.testing.assert_array_equal(y, [2, 0])
    assert y.dtype == np.int64


def test_load_data_csv_with_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,f1,f2\n1,0.1,0.2\n0,0.3,0.4\n")
    X, y = load_data(path, label_column=0)
    assert X.shape == (2, 2)
    np.testing.assert_allclose(X, [[0.1, 0.2], [0.3, 0.4]], rtol=1e-6)
    np.testing.assert_array_equal(y, [1, 0])


def test_load_data_csv_errors(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match=r"ragged.*line 2"):
        load_data(ragged)
    nonnum = tmp_path / "nonnum.csv"
    nonnum.write_text("a,b,label\n1,2,3\n4,x,6\n")
    with pytest.raises(ValueError, match=r"non-numeric value 'x' at line 3"):
        load_data(nonnum)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty"):
        load_data(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"no data rows"):
        load_data(header_only)
    one_col = tmp_path / "one.csv"
    one_col.write_text("1\n2\n")
    with pytest.raises(ValueError, match=r"at least 2 columns"):
        load_data(one_col)


def test_load_data_misc_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "missing.csv")
    txt = tmp_path / "d.txt"
    txt.write_text("1,2\n")
    with pytest.raises(ValueError, match=r"unsupported file type"):
        load_data(txt)
    empty = tmp_path / "e.npy"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty file"):
        load_data(empty)
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match=r"g\.npz"):
        load_data(garbage)


@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz"])
def test_write_idx_never_leaves_a_half_written_file(tmp_path, monkeypatch, name):
    path = tmp_path / name
    old = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(path, old)
    before = path.read_bytes()

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.ones((500, 40), dtype=np.float64))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [name]
    np.testing.assert_array_equal(read_idx(path), old)
