"""Every loader against damaged and crafted files: bit flips, truncation at every length,
and headers with valid checksums that claim huge or impossible sizes. Each case must end
in a ValueError (or, where the format has no checksum and the damage leaves a valid
file, a consistent result), and the load may allocate no more than a small multiple of
the file's size: measured with tracemalloc (NumPy reports its allocations to it), and
for two crafted files also under an address-space limit in a subprocess."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import make_problem

import fastmlp
from fastmlp import serialization
from fastmlp.datasets import load_data, read_idx, write_idx
from fastmlp.io.untrusted import read_npz
from fastmlp.train import checkpoint

SLACK = 256 * 1024  # bytes a load may allocate whatever the file: parsing, messages


class Traced:
    """tracemalloc for the whole test; `peak(fn)` is what one call allocated at most."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        tracemalloc.stop()

    @staticmethod
    def peak(fn, *args):
        """(result or the ValueError raised, bytes allocated at the peak)."""
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            result = fn(*args)
        except ValueError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1] - base


def check_rejected(fn, *args, size: int, match: str | None = None, factor: int = 4):
    """`fn(*args)` raises ValueError (matching `match`) allocating at most
    factor * size + SLACK bytes."""
    with Traced() as t:
        result, peak = t.peak(fn, *args)
    assert isinstance(result, ValueError), f"accepted: {result!r}"
    if match is not None:
        assert match in str(result), str(result)
    assert peak <= factor * size + SLACK, f"{peak} bytes allocated for a {size}-byte file"
    return result


def bit_flips(data: bytes, positions) -> list[bytes]:
    out = []
    for i, pos in enumerate(positions):
        damaged = bytearray(data)
        damaged[pos] ^= 1 << (i % 8)
        out.append(bytes(damaged))
    return out


def damaged_versions(data: bytes, n_flips: int, seed: int) -> list[bytes]:
    """Every truncation, and bit flips at n_flips positions (all when n_flips >= size)."""
    rng = np.random.default_rng(seed)
    positions = range(len(data)) if n_flips >= len(data) else \
        rng.choice(len(data), n_flips, replace=False)
    return [data[:n] for n in range(len(data))] + bit_flips(data, positions)


# -- model files (fastmlp.load, pickles, estimators) --------------------------------------

def small_model():
    X, y = make_problem("cross_entropy", 24, 4, 3, seed=0)
    m = fastmlp.MLP([4, 5, 3], seed=1, batch_norm=True, threads=1)
    m.fit(X, y, epochs=1, batch_size=8)
    m.prune(0.2)
    return m


def split_frame(data: bytes) -> tuple[dict, bytes]:
    hlen = struct.unpack_from("<Q", data, 12)[0]
    return json.loads(data[20 : 20 + hlen]), data[20 + hlen : -32]


def frame(header, payload: bytes = b"", fix_payload_digest: bool = True) -> bytes:
    """A model file around `header` (dict or raw bytes) whose checksums are valid."""
    if isinstance(header, dict):
        if fix_payload_digest:
            header = {**header, "payload_sha256": hashlib.sha256(payload).hexdigest()}
        header = json.dumps(header).encode()
    body = struct.pack("<8sIQ", serialization.MAGIC, serialization.FORMAT_VERSION,
                       len(header)) + header + payload
    return body + hashlib.sha256(body).digest()


@pytest.fixture
def from_memory(monkeypatch):
    """fastmlp.load / checkpoint.load read `files[path]` instead of the disk (thousands
    of cases per test; the disk read itself is one call tested in test_serialization)."""
    files = {}
    monkeypatch.setattr(serialization, "read_file", lambda path: files[str(path)])
    return files


def test_model_file_truncated_at_every_length_or_bit_flipped(from_memory):
    good = serialization.dumps(*_kind_config_arrays(small_model()))
    from_memory["m"] = good
    assert fastmlp.load("m").layer_sizes == (4, 5, 3)
    for data in damaged_versions(good, n_flips=400, seed=0):
        from_memory["m"] = data
        check_rejected(fastmlp.load, "m", size=len(data) + 1)


def _kind_config_arrays(m):
    return m._kind(), m.config(), m._state_arrays()


def crafted_model_files(m) -> dict[str, tuple[bytes, str]]:
    """name -> (file with valid checksums, expected message)."""
    header, payload = split_frame(serialization.dumps(*_kind_config_arrays(m)))
    arrays = header["arrays"]

    def with_config(**changes):
        return frame({**header, "config": {**header["config"], **changes}}, payload)

    def with_entry(i, **changes):
        entries = [dict(e) for e in arrays]
        entries[i].update(changes)
        return frame({**header, "arrays": entries}, payload)

    def with_array(name, value):
        state = m._state_arrays()
        state[name] = value
        return serialization.dumps(m._kind(), m.config(), state)

    nested = b'{"kind": "fastmlp.model.MLP", "config": ' + b"[" * 100_000 + b"]" * 100_000 + \
        b', "arrays": [], "payload_sha256": ""}'
    return {
        "huge layers": (with_config(layer_sizes=[100_000, 100_000, 10]), "need at least"),
        "layer of 2**31": (with_config(layer_sizes=[4, 2**31, 3]), "<= 2147483647"),
        "negative layer": (with_config(layer_sizes=[4, -5, 3]), "must be >= 1"),
        "seed 2**64": (with_config(seed=2**64), "seed must be <= "),
        "bias 1e39": (with_config(bias_init=1e39), "does not fit in float32"),
        "unknown option": (with_config(threads=4), "invalid model configuration"),
        "wrong dtype": (with_config(dtype="float64"), "must be 1-D float64"),
        "huge shape": (with_entry(0, shape=[2**40, 2**40]), "does not match its place"),
        "wrapping shape": (with_entry(0, shape=[2**32, 2**32], nbytes=0), "does not match"),
        "negative shape": (with_entry(0, shape=[-1]), "invalid shape"),
        "float shape": (with_entry(0, shape=[37.0]), "invalid shape"),
        "deep shape": (with_entry(0, shape=[1] * 40), "invalid shape"),
        "negative offset": (with_entry(1, offset=-8), "does not match its place"),
        "offset 2**64": (with_entry(1, offset=2**64), "does not match its place"),
        "huge nbytes": (with_entry(0, nbytes=2**62), "does not match its place"),
        "object dtype": (with_entry(0, dtype="|O"), "unsupported dtype"),
        "big-endian": (with_entry(0, dtype=">f4"), "unsupported dtype"),
        "no name": (with_entry(0, name=None), "repeated name"),
        "repeated name": (with_entry(1, name=arrays[0]["name"]), "repeated name"),
        "extra field": (with_entry(0, extra=1), "must have the fields"),
        "foreign kind": (frame({**header, "kind": "os.system"}, payload), "unknown model kind"),
        "kind not a string": (frame({**header, "kind": 5}, payload), "'kind' must be a str"),
        "config not a dict": (frame({**header, "config": []}, payload), "must be a dict"),
        "header a list": (frame(b"[1, 2]"), "expected the fields"),
        "header not utf-8": (frame(b'{"kind": "\xff"}'), "header"),
        "deep nesting": (frame(nested), "header"),
        "depth 100": (frame({**header, "config": {**header["config"], "init_kwargs": {
            "a": json.loads("[" * 100 + "]" * 100)}}}, payload), "nested more than"),
        "bad payload digest": (frame(header, payload + b"x", fix_payload_digest=False),
                               "payload checksum"),
        "bytes outside arrays": (frame(header, payload + b"12345678"), "belong to no array"),
        "empty counter": (with_array("counter", np.zeros(0, np.int64)), "step counter"),
        "negative counter": (with_array("counter", np.array([-1])), "step counter"),
        "float counter": (with_array("counter", np.array([1.5])), "step counter"),
        "NaN parameters": (with_array("params", np.full(m._n_params, np.nan, np.float32)),
                           "NaN or infinity"),
        "params as float64": (with_array("params", m.get_flat_params().astype(np.float64)),
                              "must be 1-D float32"),
        "params 2-D": (with_array("params", m.get_flat_params()[None]), "must be 1-D"),
        "mask of 2s": (with_array("prune_mask", np.full(m._n_params, 2, np.float32)),
                       "other than 0 and 1"),
        "short running": (with_array("running", np.zeros(1, np.float32)), "wrong shape"),
        "no running": (serialization.dumps(m._kind(), m.config(), {
            k: v for k, v in m._state_arrays().items() if k != "running"}), "missing"),
    }


def test_crafted_model_files_are_refused_before_allocating(from_memory):
    m = small_model()
    for name, (data, match) in crafted_model_files(m).items():
        from_memory[name] = data
        check_rejected(fastmlp.load, name, size=len(data), match=match)


def test_crafted_pickles_are_refused_before_allocating():
    m = small_model()
    for name, (data, match) in crafted_model_files(m).items():
        if name in ("foreign kind", "kind not a string"):
            continue  # a pickle names its class itself; the file's kind is not used
        target = fastmlp.MLP.__new__(fastmlp.MLP)  # what pickle.loads calls __setstate__ on
        check_rejected(target.__setstate__, {"fastmlp": data, "threads": None},
                       size=len(data), match=match)
    with pytest.raises(ValueError, match="expected the bytes of a fastmlp model file"):
        fastmlp.MLP.__new__(fastmlp.MLP).__setstate__({"fastmlp": "text", "threads": None})


def test_crafted_estimator_files_are_refused_before_allocating(tmp_path, from_memory):
    X, y = make_problem("cross_entropy", 30, 4, 3, seed=0)
    clf = fastmlp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, random_state=0,
                                threads=1)
    with pytest.warns(Warning):  # max_iter=2 does not converge
        clf.fit(X, y)
    clf.save(tmp_path / "clf")
    from_memory["good"] = (tmp_path / "clf").read_bytes()
    assert np.array_equal(fastmlp.load("good").predict(X), clf.predict(X))
    header, payload = split_frame(from_memory["good"])
    config = header["config"]
    cases = {
        "huge model": ({**config, "model": {**config["model"],
                                            "layer_sizes": [4, 10**8, 3]}},
                       "need at least"),
        "threads 100000": ({**config, "params": {**config["params"], "threads": 100000}},
                           "threads must be <= 1024"),
        "2000 classes": ({**config, "extra": {"classes": list(range(2000)),
                                                   "y_type": "multilabel-indicator"}},
                              "classes do not fit"),
        "params a list": ({**config, "params": []}, "invalid MLPClassifier file"),
    }
    for name, (cfg, match) in cases.items():
        data = frame({**header, "config": cfg}, payload)
        from_memory[name] = data
        check_rejected(fastmlp.load, name, size=len(data), match=match, factor=8)


def test_load_threads_argument_is_range_checked(tmp_path):
    small_model().save(tmp_path / "m")
    for threads, match in [(0, ">= 1"), (100_000, "<= 1024"), (2**31, "<= 1024")]:
        with pytest.raises(ValueError, match=f"threads must be {match}"):
            fastmlp.load(tmp_path / "m", threads=threads)


# -- checkpoints ---------------------------------------------------------------------------

def small_run(tmp_path):
    X, y = make_problem("cross_entropy", 20, 3, 2, seed=0)
    m = fastmlp.MLP([3, 4, 2], seed=0, threads=1)
    m.fit(X, y, epochs=2, batch_size=10, optimizer=fastmlp.optim.Adam(lr=0.01),
          checkpoint=tmp_path / "ckpt")
    return X, y, (tmp_path / "ckpt").read_bytes()


def test_checkpoint_truncated_at_every_length_or_bit_flipped(tmp_path, from_memory):
    _, _, good = small_run(tmp_path)
    from_memory["c"] = good
    assert checkpoint.load("c")[0]["epoch"] == 2
    for data in damaged_versions(good, n_flips=300, seed=1):
        from_memory["c"] = data
        check_rejected(checkpoint.load, "c", size=len(data) + 1)


def crafted_checkpoints(good: bytes) -> dict[str, tuple[bytes, str]]:
    header, payload = split_frame(good)
    config, arrays = header["config"], header["arrays"]
    kind, _, state = serialization.loads(good)

    def with_config(**changes):
        return frame({**header, "config": {**config, **changes}}, payload)

    def with_arrays(**changes):
        new = {**state, **changes}
        return serialization.dumps(kind, config, {k: v for k, v in new.items()
                                                  if v is not None})

    history = config["history"]
    return {
        "unknown optimizer": (with_config(optimizer="Nope"), "corrupt checkpoint: optimizer"),
        "bad hyper-parameter": (with_config(optimizer_hyper={"lr": "fast"}),
                                "cannot rebuild the optimizer"),
        "unknown hyper-parameter": (with_config(optimizer_hyper={"momentum": 0.9}),
                                    "cannot rebuild the optimizer"),
        "negative step": (with_config(optimizer_step=-1), "corrupt checkpoint: optimizer"),
        "step 2**64": (with_config(optimizer_step=2**64), "corrupt checkpoint: optimizer"),
        "epoch 2**40": (with_config(epoch=2**40), "epoch must be an integer"),
        "epoch a string": (with_config(epoch="2"), "epoch must be an integer"),
        "history short": (with_config(history={**history, "loss": [0.5]}), "history 'loss'"),
        "history of strings": (with_config(history={**history, "lr": ["a", "b"]}),
                               "history 'lr'"),
        "history attribute": (with_config(history={**history, "__class__": []}),
                              "must hold the series"),
        "best without arrays": (with_config(best=[0.5, 1]), "does not match 'best'"),
        "best of strings": (with_config(best=["a", 1]), "'best' must be null"),
        "schedule a list": (with_config(schedule=[]), "'schedule' must be an object"),
        "missing field": (frame({**header, "config": {k: v for k, v in config.items()
                                                      if k != "history"}}, payload),
                          "expected the fields"),
        "order not a permutation": (with_arrays(order=np.zeros(20, np.int64)),
                                    "must be a permutation"),
        "order of floats": (with_arrays(order=np.arange(20.0)), "must be a permutation"),
        "rng state short": (with_arrays(rng_state=np.ones(3, np.uint64)), "'rng_state'"),
        "rng state zero": (with_arrays(rng_state=np.zeros(4, np.uint64)), "not all zero"),
        "no rng state": (with_arrays(rng_state=None), "'rng_state'"),
        "Adam state of float64": (with_arrays(**{"opt.exp_avg": state["opt.exp_avg"]
                                                 .astype(np.float64)}), "must be 1-D float32"),
        "Adam state missing": (with_arrays(**{"opt.exp_avg": None}),
                               "cannot rebuild the optimizer"),
        "unknown array": (with_arrays(extra=np.zeros(2)), "unknown arrays"),
        "huge model": (with_config(model_config={**config["model_config"],
                                                 "layer_sizes": [3, 10**6, 10**6, 2]}),
                       "need at least"),
        "empty counter": (with_arrays(**{"model.counter": np.zeros(0, np.int64)}),
                          "step counter"),
        "wrong entry": (frame({**header, "arrays": [{**arrays[0], "shape": [-3]}]
                               + arrays[1:]}, payload), "invalid shape"),
    }


def test_crafted_checkpoints_are_refused_before_allocating(tmp_path, from_memory):
    _, _, good = small_run(tmp_path)
    for name, (data, match) in crafted_checkpoints(good).items():
        from_memory[name] = data
        check_rejected(checkpoint.load, name, size=len(data), match=match)


def test_a_checkpoint_that_does_not_fit_changes_nothing(tmp_path):
    X, y, good = small_run(tmp_path)
    kind, config, state = serialization.loads(good)
    model_config = config["model_config"]
    cases = {  # each passes checkpoint.load; restore refuses it before changing anything
        "foreign schedule": (config | {"schedule": {"gamma": 0.5, "interval": "epoch"}},
                             state, "schedule state"),
        "schedule field type": (config | {"schedule": {"interval": 3}}, state,
                                "schedule field 'interval'"),
        "long optimizer state": (config, state | {"opt.exp_avg": np.zeros(99, np.float32)},
                                 "'opt.exp_avg' has shape (99,)"),
        "other seed": (config | {"model_config": model_config | {"seed": 5}}, state,
                       "different model"),
        "other data": (config, state | {"order": np.arange(19)}, "not 20"),
    }
    for name, (cfg, arrays, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(serialization.dumps(kind, cfg, arrays))
        m = fastmlp.MLP([3, 4, 2], seed=0, threads=1)
        m.prune(0.5)
        before = (m.get_flat_params(), m.training_step, m._backend_rng_state(), m.sparsity())
        opt = fastmlp.optim.Adam(lr=0.01)
        with pytest.raises(ValueError, match=re.escape(match)):
            m.fit(X, y, epochs=3, batch_size=10, optimizer=opt, resume_from=path)
        after = (m.get_flat_params(), m.training_step, m._backend_rng_state(), m.sparsity())
        assert np.array_equal(before[0], after[0]) and before[1] == after[1]
        assert np.array_equal(before[2], after[2]) and before[3] == after[3]
        assert all(s["step"] == 0 for s in opt.state)  # the checkpoint's state not loaded
    # a checkpoint that fits replaces everything, the pruning mask (none here) included
    (tmp_path / "good").write_bytes(good)
    m = fastmlp.MLP([3, 4, 2], seed=0, threads=1)
    m.prune(0.5)
    m.fit(X, y, epochs=3, batch_size=10, resume_from=tmp_path / "good")
    assert m.sparsity() == [0.0, 0.0]


# -- IDX -------------------------------------------------------------------------------------

def idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "images.gz", images)
    return images, {"plain": (tmp_path / "images").read_bytes(),
                    "gzip": (tmp_path / "images.gz").read_bytes()}


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_idx_truncated_at_every_length_or_bit_flipped(tmp_path, kind):
    images, files = idx_files(tmp_path)
    good = files[kind]
    path = tmp_path / "case"
    with Traced() as t:
        for i, data in enumerate(damaged_versions(good, n_flips=150, seed=2)):
            path.write_bytes(data)
            result, peak = t.peak(read_idx, path)
            assert peak <= 4 * len(good) + SLACK
            if i < len(good):  # a truncated file
                assert isinstance(result, ValueError), i
            elif not isinstance(result, ValueError):  # IDX has no checksum: a flip in the
                assert result.shape == images.shape    # data (or gzip's mtime) can be valid


def gzip_member(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def crafted_idx(kind: str) -> dict[str, bytes]:
    wrap = gzip_member if kind == "gzip" else (lambda d: d)
    return {
        "16 GiB claimed": wrap(bytes([0, 0, 0x0E, 1]) + struct.pack(">I", 2**31) + bytes(8)),
        "2 GiB claimed": wrap(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**16, 2**8, 2**7)
                              + bytes(100)),
        "implausible": wrap(bytes([0, 0, 0x08, 4]) + struct.pack(">4I", *[2**32 - 1] * 4)),
        "bad type": wrap(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7])),
        "five dims": wrap(bytes([0, 0, 0x08, 5]) + bytes(20)),
        "zero dims": wrap(bytes([0, 0, 0x08, 0])),
        "trailing": wrap(bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 7, 8])),
    }


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_crafted_idx_headers_are_refused_before_allocating(tmp_path, kind):
    for name, data in crafted_idx(kind).items():
        path = tmp_path / name
        path.write_bytes(data)
        error = check_rejected(read_idx, path, size=len(data))
        assert str(path) in str(error)


def test_gzip_bomb_with_a_small_claim_stops_at_the_claim(tmp_path):
    # 1 label claimed, then 16 MiB of zeros (16 KiB compressed): caught as trailing data
    # while decompressing a chunk at a time, never held in memory
    data = gzip_member(bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 7]) + bytes(16 << 20))
    path = tmp_path / "bomb.gz"
    path.write_bytes(data)
    check_rejected(read_idx, path, size=len(data), match="trailing bytes", factor=40)


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_corrupt_idx_raises_only_value_errors(tmp_path, kind):
    # random garbage after a plausible header: never another exception
    rng = np.random.default_rng(3)
    path = tmp_path / "garbage"
    for _ in range(60):
        head = bytes([0, 0, int(rng.choice([8, 9, 11, 12, 13, 14])), int(rng.integers(1, 5))])
        body = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        data = head + body
        if kind == "gzip":
            data = gzip_member(data)
            cut = int(rng.integers(10, len(data) + 1))
            data = data[:cut] + rng.integers(0, 256, int(rng.integers(0, 4)),
                                             dtype=np.uint8).tobytes()
        path.write_bytes(data)
        try:
            read_idx(path)
        except ValueError:
            pass


# -- .npy / .npz (load_data) ------------------------------------------------------------------

def npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npz_bytes(compressed: bool, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npy_header(header: str, version: int = 1) -> bytes:
    raw = header.encode("latin-1")
    length = struct.pack("<H" if version == 1 else "<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + length + raw


TABLE = np.arange(15, dtype=np.float64).reshape(5, 3) % 2


@pytest.mark.parametrize("kind", ["npy", "npz", "npz-compressed"])
def test_npy_npz_truncated_at_every_length_or_bit_flipped(tmp_path, kind):
    if kind == "npy":
        good = npy_bytes(TABLE)
    else:
        good = npz_bytes(kind == "npz-compressed", X=TABLE[:, :2], y=TABLE[:, 2])
    path = tmp_path / f"case.{kind[:3]}"
    path.write_bytes(good)
    X, y = load_data(path)
    assert X.shape == (5, 2) and np.array_equal(y, TABLE[:, 2])
    with Traced() as t:
        for i, data in enumerate(damaged_versions(good, n_flips=120, seed=4)):
            path.write_bytes(data)
            result, peak = t.peak(load_data, path)
            assert peak <= 4 * len(good) + SLACK
            if i < len(good):
                assert isinstance(result, ValueError), i
            elif not isinstance(result, ValueError):
                assert result[0].shape == (5, 2)


def crafted_npy() -> dict[str, tuple[bytes, str]]:
    fits = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }"
    return {
        "shape 2**40": (npy_header(fits % "(2**40, 2)") + bytes(16), "cannot parse"),
        "huge shape": (npy_header(fits % "(1099511627776, 2)") + bytes(16), "truncated"),
        "64 GiB": (npy_header(fits % "(4294967296, 2)") + bytes(16), "truncated"),
        "negative": (npy_header(fits % "(-1, 2)"), "invalid .npy shape"),
        "float shape": (npy_header(fits % "(2.0, 2)"), "invalid .npy shape"),
        "object": (npy_header("{'descr': '|O', 'fortran_order': False, 'shape': (2, 2), }"),
                   "must hold numbers"),
        "structured": (npy_header("{'descr': [('a', '<f8')], 'fortran_order': False, "
                                  "'shape': (2, 2), }"), "must hold numbers"),
        "bad descr": (npy_header("{'descr': 'zz', 'fortran_order': False, 'shape': (1, 2),}"),
                      "must hold numbers"),
        "deep nesting": (npy_header("(" * 5000 + ")" * 5000), "cannot parse"),
        "not a dict": (npy_header("[1, 2]"), "must be a dict"),
        "extra key": (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), "
                                 "'x': 1}"), "must be a dict"),
        "header 4 GiB": (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + bytes(64),
                         "header length"),
        "header cut": (b"\x93NUMPY\x01\x00" + struct.pack("<H", 500) + b"{'descr'",
                       "truncated .npy header"),
        "version 9": (b"\x93NUMPY\x09\x00" + bytes(10), "version 9"),
        "bad magic": (b"\x93NUMPZ\x01\x00" + bytes(10), "bad magic"),
        "trailing": (npy_bytes(TABLE) + b"extra", "trailing bytes"),
    }


def test_crafted_npy_headers_are_refused_before_allocating(tmp_path):
    for name, (data, match) in crafted_npy().items():
        path = tmp_path / f"{name}.npy"
        path.write_bytes(data)
        error = check_rejected(load_data, path, size=len(data), match=match)
        assert str(path) in str(error)


def zip_of(members: dict[str, bytes], compressed: bool) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_crafted_npz_members_are_refused_before_allocating(tmp_path, compressed):
    big = "{'descr': '<f8', 'fortran_order': False, 'shape': (1073741824, 2), }"
    y = npy_bytes(np.zeros(5))
    cases = {
        "claims 16 GiB": ({"X.npy": npy_header(big) + bytes(4096), "y.npy": y}, "truncated"),
        "object member": ({"X.npy": npy_header("{'descr': '|O', 'fortran_order': False, "
                                               "'shape': (5, 2), }"), "y.npy": y},
                          "must hold numbers"),
        "not npy": ({"X.npy": b"hello", "y.npy": y}, "bad magic"),
        "no pair": ({"features.npy": y}, "keys found"),
    }
    for name, (members, match) in cases.items():
        data = zip_of(members, compressed)
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        check_rejected(load_data, path, size=len(data), match=match)


def test_npz_central_directory_size_lies_are_caught(tmp_path):
    good = npz_bytes(False, X=TABLE[:, :2], y=TABLE[:, 2])
    entry = good.index(b"PK\x01\x02")  # the first member's central directory entry
    lied = bytearray(good)
    lied[entry + 20 : entry + 28] = struct.pack("<II", 2**31, 2**31)  # its sizes
    path = tmp_path / "lie.npz"
    path.write_bytes(bytes(lied))
    check_rejected(load_data, path, size=len(lied))
    with pytest.raises(ValueError, match="no array 'Z'"):  # (a file object, as embedded)
        read_npz(io.BytesIO(good), "mem", lambda keys: ["Z"])


# -- under an address-space limit -------------------------------------------------------------

LIMITED = """
import resource, sys, json
import numpy as np
import fastmlp
from fastmlp.datasets import read_idx, load_data
def vm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
limit = vm() + (512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    np.empty(1 << 30, np.uint8)  # the limit works: 1 GiB cannot be had
    print("limit not effective")
    sys.exit(3)
except MemoryError:
    pass
loader = {"idx": read_idx, "model": fastmlp.load, "npy": load_data}[sys.argv[1]]
try:
    loader(sys.argv[2])
except ValueError as exc:
    print("ValueError", exc)
"""


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer reserves terabytes of shadow address space, so "
                           "no address-space limit can hold under it (tools/sanitize.sh); "
                           "the tracemalloc caps above still run there")
@pytest.mark.parametrize("case", ["gzip idx claiming 16 GiB", "model of 40 GB",
                                  "npy claiming 64 GiB"])
def test_crafted_files_under_an_address_space_limit(tmp_path, case):
    if case.startswith("gzip"):
        loader, path = "idx", tmp_path / "x.gz"
        path.write_bytes(crafted_idx("gzip")["16 GiB claimed"])
    elif case.startswith("model"):
        loader, path = "model", tmp_path / "m.fmlp"
        path.write_bytes(crafted_model_files(small_model())["huge layers"][0])
    else:
        loader, path = "npy", tmp_path / "a.npy"
        path.write_bytes(crafted_npy()["64 GiB"][0])
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(LIMITED), loader, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ValueError"), proc.stdout + proc.stderr
