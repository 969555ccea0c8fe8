"""Model files: bitwise round trips, a loader that rejects every damaged or foreign file
with a clear error, atomic writes, and pickling."""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import serialization
from conftest import make_problem


@pytest.fixture
def trained():
    X, y = make_problem("cross_entropy", 40, 6, 3, seed=0)
    m = fastmlp.MLP([6, 9, 7, 3], seed=2, dropout=0.2, input_dropout=0.1,
                    batch_norm=["before", "after"], activation=["tanh", "relu"])
    m.fit(X, y, epochs=2, batch_size=8, optimizer=fastmlp.optim.Adam(lr=0.01))
    m.prune([0.3, 0.2, 0.0])
    return m, X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
def test_round_trip_is_bitwise(tmp_path, impl, dtype):
    X, y = make_problem("mse", 30, 5, 2, seed=1)
    m = impl([5, 8, 2], loss="mse", dtype=dtype, seed=3, batch_norm=True, dropout=0.1)
    m.fit(X, y, epochs=2, batch_size=10)
    path = tmp_path / "model.fmlp"
    m.save(path)
    back = fastmlp.load(path)
    assert type(back) is impl
    assert np.array_equal(back.predict(X), m.predict(X))
    assert np.array_equal(back.get_flat_params(), m.get_flat_params())
    assert back.config() == m.config() and back.training_step == m.training_step


def test_round_trip_keeps_pruning_and_batch_norm(tmp_path, trained):
    m, X, y = trained
    m.save(tmp_path / "m")
    back = fastmlp.load(tmp_path / "m", threads=1)
    assert back.threads == 1
    assert back.sparsity() == m.sparsity()
    for a, b in zip(back.batch_norm_state(), m.batch_norm_state()):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    # training continues identically (same masks, same step counter)
    for model in (m, back):
        model.threads = 1
        model.fit(X, y, epochs=1, batch_size=8, lr=0.05, shuffle=False)
    assert np.array_equal(back.get_flat_params(), m.get_flat_params())


def test_pickle_round_trip(trained):
    m, X, _ = trained
    back = pickle.loads(pickle.dumps(m))
    assert np.array_equal(back.predict(X), m.predict(X))


def test_loader_rejects_foreign_truncated_and_corrupted_files(tmp_path, trained):
    m, _, _ = trained
    good = serialization.dumps(m._kind(), m.config(), m._state_arrays())
    cases = {
        "foreign": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a fastmlp model file"),
        "empty": (b"", "too short"),
        "version": (good[:8] + struct.pack("<I", 99) + good[12:], "version 99 is not supported"),
        "truncated": (good[: len(good) // 2], "truncated|checksum"),
        "flipped": (good[:200] + bytes([good[200] ^ 1]) + good[201:], "checksum mismatch"),
        "huge header": (good[:12] + struct.pack("<Q", 1 << 40) + good[20:], "does not fit"),
    }
    for name, (data, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=match):
            fastmlp.load(path)


def test_fuzzed_files_never_crash(tmp_path, trained):
    m, _, _ = trained
    good = serialization.dumps(m._kind(), m.config(), m._state_arrays())
    rng = np.random.default_rng(0)
    path = tmp_path / "fuzz"
    for i in range(300):
        data = bytearray(good)
        if i % 3 == 0:
            data = data[: rng.integers(0, len(data))]
        else:
            for _ in range(rng.integers(1, 5)):
                data[rng.integers(0, len(data))] = rng.integers(0, 256)
        path.write_bytes(bytes(data))
        try:
            fastmlp.load(path)
        except ValueError:
            pass  # the only acceptable failure
    # a consistent file with a hostile header is still checked field by field
    forged = serialization.dumps("os.system", {"command": "rm -rf /"}, {})
    path.write_bytes(forged)
    with pytest.raises(ValueError, match="unknown model kind 'os.system'"):
        fastmlp.load(path)
    bad_config = serialization.dumps("fastmlp.model.MLP", {"layer_sizes": [3, -1]}, {})
    path.write_bytes(bad_config)
    with pytest.raises(ValueError, match="invalid model configuration"):
        fastmlp.load(path)


def test_oversized_file_is_refused(tmp_path, trained, monkeypatch):
    m, _, _ = trained
    m.save(tmp_path / "m")
    monkeypatch.setattr(serialization, "MAX_FILE_BYTES", 100)
    with pytest.raises(ValueError, match="larger than the 100-byte limit"):
        fastmlp.load(tmp_path / "m")


def test_failed_write_leaves_the_old_file_and_no_temporaries(tmp_path, trained, monkeypatch):
    m, X, _ = trained
    path = tmp_path / "m"
    m.save(path)
    before = path.read_bytes()

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    m.prune([0.5, 0.5, 0.5])
    with pytest.raises(OSError, match="disk full"):
        m.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


WRITER = r"""
import sys, fastmlp
m = fastmlp.MLP([784, 256, 10], seed=int(sys.argv[2]))
print("ready", flush=True)
while True:
    m.save(sys.argv[1])
"""


def test_killing_a_writer_never_leaves_a_corrupt_model(tmp_path):
    path = tmp_path / "model.fmlp"
    fastmlp.MLP([784, 256, 10], seed=0).save(path)
    for seed in range(1, 6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.05 * seed)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        model = fastmlp.load(path)  # whole, old or new
        assert model.layer_sizes == (784, 256, 10)
