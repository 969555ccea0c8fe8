"""Inputs read in place (fastmlp.io.inputs, csrc/input.c): uint8/int8/uint16/int16/int32/
float16/float64 arrays and memory maps, converted and transformed per batch; IDX files
mapped without reading them (fastmlp.datasets.open_idx).

The comparisons are bitwise: the engine computes ``x.astype(dtype) * scale + shift`` with
two roundings, so a model with the transform on raw data must equal, bit for bit, a model
without it trained on the float array NumPy makes with that same per-element formula
(``float32(x) * float32(scale) + float32(shift)``). ``1/255`` itself is not exact in
float32; the comparison does not need it to be, only that both sides round alike.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import optim
from fastmlp.datasets import open_idx, read_idx, write_idx
from fastmlp.io.inputs import ENGINE_TYPES, check_input

SCALE, SHIFT = 1 / 255, -0.5
N, F, K = 240, 24, 3


def network_view(X: np.ndarray, dtype=np.float32, scale=SCALE, shift=SHIFT) -> np.ndarray:
    """What the network sees, computed by NumPy with the engine's formula."""
    dt = np.dtype(dtype).type
    return X.astype(dtype) * dt(scale) + dt(shift)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(N, F), dtype=np.uint8)
    y = rng.integers(0, K, size=N)
    return X, y


@pytest.fixture
def mapped(images, tmp_path):
    """The images as a read-only memory map (np.load(..., mmap_mode="r"))."""
    path = tmp_path / "images.npy"
    np.save(path, images[0])
    return np.load(path, mmap_mode="r")


def pair(dtype="float32", **kwargs):
    """(a model with the input transform, the same model without it)."""
    with_t = fastmlp.MLP([F, 16, K], seed=3, dtype=dtype, input_scale=SCALE,
                         input_shift=SHIFT, **kwargs)
    without = fastmlp.MLP([F, 16, K], seed=3, dtype=dtype, **kwargs)
    return with_t, without


def assert_same_model(a, b, Xa, Xb, y):
    np.testing.assert_array_equal(a.get_flat_params(), b.get_flat_params())
    np.testing.assert_array_equal(a.predict(Xa), b.predict(Xb))
    np.testing.assert_array_equal(a.predict_logits(Xa), b.predict_logits(Xb))
    assert a.evaluate(Xa, y) == b.evaluate(Xb, y)
    assert a.score(Xa, y) == b.score(Xb, y)


@pytest.mark.parametrize("make_opt", [
    lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    lambda: optim.Adam(lr=0.003),
    lambda: optim.RMSprop(lr=0.001, centered=True),
    lambda: optim.Adagrad(lr=0.05),
], ids=["sgd-nesterov", "adam", "rmsprop", "adagrad"])
def test_uint8_memmap_fit_equals_float32_fit(images, mapped, make_opt):
    X, y = images
    a, b = pair()
    ha = a.fit(mapped, y, epochs=4, batch_size=16, optimizer=make_opt(), early_stopping=True,
               validation_fraction=0.2, patience=2)
    hb = b.fit(network_view(X), y, epochs=4, batch_size=16, optimizer=make_opt(),
               early_stopping=True, validation_fraction=0.2, patience=2)
    assert ha.val_loss == hb.val_loss and ha.loss == hb.loss
    assert ha.best_epoch == hb.best_epoch
    assert_same_model(a, b, mapped, network_view(X), y)


@pytest.mark.parametrize("model_dtype", ["float32", "float64"])
@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.float32, np.uint8, np.int8,
                                   np.uint16, np.int16, np.int32])
def test_every_engine_dtype_equals_its_numpy_conversion(images, dtype, model_dtype):
    X, y = images
    Xd = (X.astype(np.int32) - (128 if np.dtype(dtype).kind in "if" else 0)).astype(dtype)
    assert np.dtype(dtype) in ENGINE_TYPES
    a, b = pair(model_dtype)
    a.fit(Xd, y, epochs=2, batch_size=32, validation_data=(Xd[:50], y[:50]))
    b.fit(network_view(Xd, model_dtype), y, epochs=2, batch_size=32,
          validation_data=(network_view(Xd[:50], model_dtype), y[:50]))
    assert_same_model(a, b, Xd, network_view(Xd, model_dtype), y)
    # without a transform: the plain conversion
    c, d = (fastmlp.MLP([F, 8, K], seed=1, dtype=model_dtype) for _ in range(2))
    c.fit(Xd, y, epochs=1, batch_size=32)
    d.fit(Xd.astype(model_dtype), y, epochs=1, batch_size=32)
    np.testing.assert_array_equal(c.get_flat_params(), d.get_flat_params())
    np.testing.assert_array_equal(c.predict(Xd), d.predict(Xd.astype(model_dtype)))


def test_engine_matches_the_reference_in_float64(images):
    X, y = images
    Xs = X.astype(np.int16) - 100
    kwargs = dict(seed=5, dtype="float64", input_scale=np.linspace(0.01, 0.02, F),
                  input_shift=np.linspace(-1, 1, F), dropout=0.2)
    fast = fastmlp.MLP([F, 12, K], **kwargs)
    ref = fastmlp.reference.MLP([F, 12, K], **kwargs)
    for m in (fast, ref):
        m.fit(Xs, y, epochs=2, batch_size=20, optimizer=optim.Adam(lr=0.01),
              validation_fraction=0.25)
    np.testing.assert_allclose(fast.get_flat_params(), ref.get_flat_params(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(fast.predict(Xs), ref.predict(Xs), rtol=1e-10, atol=1e-12)


def test_results_do_not_depend_on_the_thread_count(mapped, images):
    # batch 64 x 24 features: the gather runs on two threads when they are there
    y = images[1]
    models = [fastmlp.MLP([F, 16, K], seed=2, threads=t, input_scale=SCALE) for t in (1, 2)]
    for m in models:
        m.adaptive_threads = False
        m.fit(mapped, y, epochs=2, batch_size=200)
    np.testing.assert_array_equal(models[0].get_flat_params(), models[1].get_flat_params())
    np.testing.assert_array_equal(models[0].predict(mapped), models[1].predict(mapped))


def test_strided_reversed_and_read_only_rows_are_read_in_place(images):
    X, y = images
    wide = np.zeros((2 * N, F + 7), np.uint8)
    wide[::2, 3 : 3 + F] = X
    views = {
        "row-strided": wide[::2, 3 : 3 + F],  # rows 2 * (F + 7) bytes apart
        "reversed": X[::-1],  # a negative row stride
        "broadcast": np.broadcast_to(X[:1], (N, F)),  # row stride 0, read-only
    }
    frozen = X.copy()
    frozen.flags.writeable = False
    views["read-only"] = frozen
    for name, V in views.items():
        features = check_input(V, F, np.dtype(np.float32))
        assert np.shares_memory(features.data, V), name
        a, b = pair()
        a.fit(V, y, epochs=1, batch_size=32)
        b.fit(network_view(np.array(V)), y, epochs=1, batch_size=32)
        assert_same_model(a, b, V, network_view(np.array(V)), y)


def test_other_layouts_and_types_are_copied_not_widened(images):
    X, y = images
    fortran = np.asfortranarray(X)
    f32 = np.dtype(np.float32)
    assert check_input(fortran, F, f32).data.dtype == np.uint8  # 1 byte each
    assert check_input(X.astype(">u2"), F, f32).data.dtype == np.float32
    assert check_input(np.asfortranarray(X, np.float64), F, f32).data.dtype == np.float32
    with pytest.raises(ValueError, match=r"infinity \(after conversion to float32\)"):
        check_input(np.full((3, F), 1e300, order="F"), F, f32)
    for V in (fortran, X.astype(">u2"), X.astype(np.int64), X.astype(bool),
              np.asfortranarray(X / 7)):
        a, b = pair()
        a.fit(V, y, epochs=1, batch_size=32)
        b.fit(network_view(np.array(V)), y, epochs=1, batch_size=32)
        assert_same_model(a, b, V, network_view(np.array(V)), y)


def test_a_memmap_that_cannot_be_read_in_place_is_refused(images, tmp_path):
    X, y = images
    path = tmp_path / "fortran.npy"
    np.save(path, np.asfortranarray(X))
    fortran = np.load(path, mmap_mode="r")
    wrong_type = np.memmap(tmp_path / "u32.bin", dtype=np.uint32, mode="w+", shape=(N, F))
    wide = np.memmap(tmp_path / "wide.bin", dtype=np.uint8, mode="w+", shape=(N, 2 * F))
    model = fastmlp.MLP([F, 8, K], seed=0)
    for M in (fortran, wrong_type, wide[:, ::2]):
        for call in (lambda M=M: model.fit(M, y, epochs=1), lambda M=M: model.predict(M)):
            with pytest.raises(ValueError, match="memory-mapped .* cannot read in place"):
                call()


def test_non_finite_inputs_are_refused_after_conversion_and_transform(images):
    X, y = images
    model = fastmlp.MLP([F, 8, K], seed=0)
    half = X.astype(np.float16)
    half[3, 4] = np.inf
    for call in (lambda: model.fit(half, y, epochs=1), lambda: model.predict(half),
                 lambda: model.evaluate(half, y), lambda: model.gradients(half, y)):
        with pytest.raises(ValueError, match=r"X contains infinity \(after conversion"):
            call()
    huge = fastmlp.MLP([F, 8, K], seed=0, input_scale=1e37)
    with pytest.raises(ValueError, match="infinity .*the input transform"):
        huge.fit(X, y, epochs=1)  # 255 * 1e37 overflows float32
    small = X // 64  # 0..3: the type's extremes would overflow, these values do not
    assert huge.predict(small).shape == (N, K)
    with pytest.raises(ValueError, match="infinity .*the input transform"):
        huge.predict(small * 64)


def test_the_transform_is_saved_pickled_and_checked(images, tmp_path):
    X, y = images
    scale = np.linspace(1, 2, F) / 255
    model = fastmlp.MLP([F, 8, K], seed=0, input_scale=scale, input_shift=0.25)
    model.fit(X, y, epochs=1)
    assert model.input_scale == scale.tolist() and model.input_shift == 0.25
    model.save(tmp_path / "m.fastmlp")
    for again in (fastmlp.load(tmp_path / "m.fastmlp"), pickle.loads(pickle.dumps(model))):
        assert again.config() == model.config()
        np.testing.assert_array_equal(again.predict(X), model.predict(X))
    plain = fastmlp.MLP([F, 8, K], seed=0)
    plain.set_flat_params(model.get_flat_params())
    np.testing.assert_array_equal(
        plain.predict(X.astype(np.float32) * scale.astype(np.float32) + np.float32(0.25)),
        model.predict(X))
    for bad, match in [({"input_scale": [1.0] * (F - 1)}, "input_scale must have shape"),
                       ({"input_shift": float("nan")}, "input_shift must be finite"),
                       ({"input_scale": 1e300}, "does not fit in float32"),
                       ({"input_scale": "x"}, "input_scale must be a number")]:
        with pytest.raises((ValueError, TypeError), match=match):
            fastmlp.MLP([F, 8, K], **bad)


def test_gradients_and_jvp_are_taken_with_respect_to_the_raw_inputs(images):
    X, y = images
    a, b = pair("float64")
    ga, gb = a.gradients(X[:30], y[:30]), b.gradients(network_view(X[:30], np.float64), y[:30])
    np.testing.assert_array_equal(ga["flat"], gb["flat"])
    np.testing.assert_array_equal(ga["input"], gb["input"] * SCALE)  # d(x s + t)/dx = s
    v = np.random.default_rng(0).normal(size=(30, F))
    np.testing.assert_array_equal(a.jvp(X[:30], v_inputs=v),
                                  b.jvp(network_view(X[:30], np.float64), v_inputs=v * SCALE))
    h = 1e-4  # central differences of the mean loss in one raw input
    Xp, Xm = X[:30].astype(np.float64), X[:30].astype(np.float64)
    Xp[2, 5] += h
    Xm[2, 5] -= h
    numeric = (a.evaluate(Xp, y[:30])["loss"] - a.evaluate(Xm, y[:30])["loss"]) / (2 * h)
    assert numeric == pytest.approx(ga["input"][2, 5], rel=1e-6)


def test_no_float_copy_of_the_data_is_made(images):
    """NumPy allocations (tracemalloc sees them, the engine's workspaces included) while
    training on and predicting from uint8 data stay below half the data's own size: a
    float32 copy would be four times it. (What they hold is a window of fixed size, about
    11 MB here, mostly the evaluation workspace of 512-row blocks, and a few bytes a row.)"""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, size=(40_000, 784), dtype=np.uint8)
    y = rng.integers(0, 10, size=len(X))
    model = fastmlp.MLP([784, 32, 10], seed=0, input_scale=SCALE)
    model.fit(X[:300], y[:300], epochs=1, batch_size=256)  # workspaces, imports
    tracemalloc.start()
    try:
        model.fit(X, y, epochs=1, batch_size=256, validation_fraction=0.1)
        model.predict(X)
        model.evaluate(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 2, (peak, X.nbytes)


def test_engine_boundary_checks_the_rows_it_is_given(images):
    X, y = images
    model = fastmlp.MLP([F, 8, K], seed=0)
    features = check_input(X, F, np.dtype(np.float32)).take(np.arange(10))
    features.rows = features.rows + N  # past the end of the stored rows
    with pytest.raises(ValueError, match=r"input rows must lie in \[0, 240\)"):
        model._engine.predict(features)


_RSS_CHILD = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    import fastmlp

    def anon_kib():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])

    X = np.load(sys.argv[1], mmap_mode="r")
    y = np.random.default_rng(0).integers(0, 10, size=len(X))
    model = fastmlp.MLP([784, 64, 10], seed=0, input_scale=1 / 255, threads=2)
    model.fit(X[:512], y[:512], epochs=1, batch_size=256)  # workspaces, imports
    base = anon_kib()
    peak, running = [base], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], anon_kib())
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    model.fit(X, y, epochs=1, batch_size=256, progress=lambda *a: peak.__setitem__(
        0, max(peak[0], anon_kib())))
    model.predict(X[:100_000])
    running[0] = False
    t.join()
    print(peak[0] - base)
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer's shadow memory and red zones are anonymous "
                           "resident memory of their own (tools/sanitize.sh)")
def test_a_memmap_larger_than_its_share_of_memory_trains_in_bounded_memory(tmp_path):
    """A 512 MiB uint8 file (684,784 MNIST-sized rows; a float32 copy would be 2 GiB),
    one epoch at batch 256 in a fresh process: its anonymous resident memory (the file's
    own pages are file-backed and can be dropped) grows by less than 64 MiB plus 16 bytes
    a row (the shuffle order and the labels)."""
    n = (512 << 20) // 784
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 784))
    rng = np.random.default_rng(0)
    for r0 in range(0, n, 65536):
        X[r0 : r0 + 65536] = rng.integers(0, 256, size=X[r0 : r0 + 65536].shape, dtype=np.uint8)
    X.flush()
    del X
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    growth = int(out.stdout.split()[-1]) * 1024
    assert growth < (64 << 20) + 16 * n, growth


# -- fastmlp.datasets.open_idx -------------------------------------------------------------
def test_open_idx_maps_the_file_read_only_and_equals_read_idx(images, tmp_path):
    X, y = images
    cubes = X.reshape(N, 4, 6)
    write_idx(tmp_path / "images.idx", cubes)
    write_idx(tmp_path / "labels.idx", y.astype(np.uint8))
    write_idx(tmp_path / "floats.idx", X.astype(np.float32) / 7)
    mapped = open_idx(tmp_path / "images.idx")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, read_idx(tmp_path / "images.idx"))
    flat = open_idx(tmp_path / "images.idx", flatten=True)
    assert isinstance(flat, np.memmap) and flat.shape == (N, F)
    labels = open_idx(tmp_path / "labels.idx", flatten=True)
    assert labels.shape == (N,) and labels.dtype == np.uint8
    floats = open_idx(tmp_path / "floats.idx")
    assert floats.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(floats, read_idx(tmp_path / "floats.idx"))
    a, b = pair()
    a.fit(flat, labels, epochs=1, batch_size=32)
    b.fit(network_view(X), y, epochs=1, batch_size=32)
    assert_same_model(a, b, flat, network_view(X), y)


def test_open_idx_reads_no_data_into_memory(tmp_path):
    big = np.zeros((2000, 28, 28), np.uint8)
    write_idx(tmp_path / "big.idx", big)
    tracemalloc.start()
    try:
        mapped = open_idx(tmp_path / "big.idx", flatten=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert mapped.shape == (2000, 784) and peak < big.nbytes / 20, peak


def test_open_idx_checks_the_header_against_the_file_size(images, tmp_path):
    X = images[0]
    write_idx(tmp_path / "ok.idx", X)
    raw = (tmp_path / "ok.idx").read_bytes()
    cases = {
        "short.idx": (raw[:-1], "truncated: .* 5760 bytes\\) but 5759 bytes follow"),
        "long.idx": (raw + b"\0", "has trailing bytes"),
        "huge.idx": (b"\0\0\x08\x03" + b"\xff\xff\xff\xff" * 3 + b"\0" * 10, "truncated"),
        "magic.idx": (b"\1" + raw[1:], "bad magic number"),
        "type.idx": (raw[:2] + b"\x07" + raw[3:], "unsupported IDX type code 0x07"),
        "dims.idx": (raw[:3] + b"\x05" + raw[4:], "unsupported number of dimensions 5"),
        "header.idx": (raw[:6], "header declares 2 dimensions"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=match):
            open_idx(tmp_path / name)
    write_idx(tmp_path / "packed.idx.gz", X)
    with pytest.raises(ValueError, match="gzip-compressed"):
        open_idx(tmp_path / "packed.idx.gz")
    with pytest.raises(FileNotFoundError):
        open_idx(tmp_path / "missing.idx")
    write_idx(tmp_path / "empty.idx", np.zeros((0, 28, 28), np.uint8))
    empty = open_idx(tmp_path / "empty.idx", flatten=True)
    assert empty.shape == (0, 784) and not empty.flags.writeable
    (tmp_path / "vast.idx").write_bytes(b"\0\0\x08\x04" + b"\0" * 4 + b"\xff\xff\xff\xff" * 3)
    for flatten in (False, True):  # no array of 0 x (2**32 - 1)**3 elements can exist
        with pytest.raises(ValueError, match="implausible dimensions 0x4294967295"):
            open_idx(tmp_path / "vast.idx", flatten=flatten)
    with pytest.raises(ValueError, match="vast.idx: implausible dimensions 0x4294967295"):
        read_idx(tmp_path / "vast.idx")  # (NumPy's own error before, without the file)
