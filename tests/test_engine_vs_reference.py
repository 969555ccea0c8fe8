"""The C engine against the NumPy reference: outputs, loss, gradients and SGD
training, in float32 and float64, over activations x losses and over shapes that
hit every tile tail of the kernels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import ACTIVATIONS, LOSSES, make_problem, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
import fastmlp.reference
from fastmlp.model.losses import LOSSES as LOSS_TABLE

# relative tolerances: float64 kernels vs reference, float32 (matmul + reductions)
TOL = {"float64": 1e-10, "float32": 1e-4}


def pair(sizes, dtype, **kw):
    kw.setdefault("init", "xavier_normal")
    kw.setdefault("bias_init", 0.1)
    kw.setdefault("seed", 11)
    return (
        fastmlp.MLP(sizes, dtype=dtype, **kw),
        fastmlp.reference.MLP(sizes, dtype=dtype, **kw),
    )


def assert_close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(), 1e-30)
    assert np.abs(a - b).max() <= TOL[dtype] * scale


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_outputs_loss_and_gradients_match(dtype, act, loss):
    sizes = [13, 70, 33, 10]  # widths that leave tails for every tile size
    X, y = make_problem(loss, 37, 13, 10, seed=5)
    eng, ref = pair(sizes, dtype, activation=act, loss=loss)
    assert_close(eng.predict(X), ref.predict(X), dtype)
    le, dWe, dbe, dXe = eng.loss_and_grad(X, y, return_input_grad=True)
    lr_, dWr, dbr, dXr = ref.loss_and_grad(X, y, return_input_grad=True)
    assert abs(le - lr_) <= TOL[dtype] * abs(lr_)
    for a, b in zip(dWe + dbe + [dXe], dWr + dbr + [dXr]):
        assert a.dtype == np.dtype(dtype)
        assert_close(a, b, dtype)
    me, mr = eng.evaluate(X, y), ref.evaluate(X, y)
    assert me["loss"] == pytest.approx(mr["loss"], rel=TOL[dtype])
    if not LOSS_TABLE[loss].has_accuracy:
        assert me["accuracy"] is None and mr["accuracy"] is None
    else:
        assert me["accuracy"] == pytest.approx(mr["accuracy"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("shuffle,batch_size", [(True, 8), ("once", 1), (False, 50), (True, 17)])
def test_sgd_training_matches(dtype, loss, shuffle, batch_size):
    X, y = make_problem(loss, 50, 6, 4, seed=2)
    eng, ref = pair([6, 9, 4], dtype, activation="tanh", loss=loss)
    he = eng.fit(X, y, epochs=3, batch_size=batch_size, lr=0.05, shuffle=shuffle)
    hr = ref.fit(X, y, epochs=3, batch_size=batch_size, lr=0.05, shuffle=shuffle)
    tol = {"float64": 1e-9, "float32": 1e-4}[dtype]
    assert relative_error(eng.weights + eng.biases, ref.weights + ref.biases) <= tol
    assert np.allclose(he.loss, hr.loss, rtol=tol)
    if LOSS_TABLE[loss].has_accuracy:
        assert np.allclose(he.accuracy, hr.accuracy, atol=0.05)
    assert he.loss[-1] < he.loss[0]


def test_probability_targets_match_labels():
    X, y = make_problem("cross_entropy", 20, 5, 3, seed=1)
    onehot = np.eye(3)[y]
    for impl in (fastmlp.MLP, fastmlp.reference.MLP):
        m = impl([5, 6, 3], dtype="float64", seed=0)
        a, b = m.loss_and_grad(X, y), m.loss_and_grad(X, onehot)
        assert a[0] == pytest.approx(b[0], rel=1e-12)
        assert relative_error(a[1] + a[2], b[1] + b[2]) <= 1e-12


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 70), min_size=2, max_size=4),
    batch=st.integers(1, 70),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_random_shapes_match(sizes, batch, dtype):
    X, y = make_problem("mse", batch, sizes[0], sizes[-1], seed=batch)
    eng, ref = pair(sizes, dtype, activation="leaky_relu", loss="mse")
    assert_close(eng.predict(X), ref.predict(X), dtype)
    _, dWe, dbe = eng.loss_and_grad(X, y)
    _, dWr, dbr = ref.loss_and_grad(X, y)
    assert relative_error(dWe + dbe, dWr + dbr) <= TOL[dtype]


@pytest.mark.parametrize("size", [1, 2, 3, 15, 16, 17, 31, 63, 64, 65, 129, 1000])
def test_layer_widths_at_tile_tails(size):
    X, y = make_problem("cross_entropy", size % 23 + 1, size, 7, seed=size)
    eng, ref = pair([size, size, 7], "float64", activation="relu", loss="cross_entropy")
    assert_close(eng.predict(X), ref.predict(X), "float64")
    _, dWe, dbe = eng.loss_and_grad(X, y)
    _, dWr, dbr = ref.loss_and_grad(X, y)
    assert relative_error(dWe + dbe, dWr + dbr) <= 1e-10


def test_strided_fortran_and_readonly_inputs_give_the_same_results():
    X, y = make_problem("cross_entropy", 40, 8, 3, seed=0)
    model = fastmlp.MLP([8, 16, 3], dtype="float64", seed=0)
    expected = model.predict(X)
    wide = np.zeros((40, 16))
    wide[:, ::2] = X
    readonly = X.copy()
    readonly.setflags(write=False)
    for variant in (np.asfortranarray(X), wide[:, ::2], readonly, X.astype(np.float32), X.tolist()):
        np.testing.assert_allclose(model.predict(variant), expected, rtol=1e-6)
    loss, dW, db = model.loss_and_grad(np.asfortranarray(X), y[::-1].copy()[::-1])
    assert loss == model.loss_and_grad(X, y)[0]


def test_threads_do_not_change_results_bitwise():
    X, y = make_problem("cross_entropy", 300, 64, 10, seed=4)
    weights = []
    for threads in (1, 2, 3):
        m = fastmlp.MLP([64, 128, 96, 10], seed=9, threads=threads)
        assert m.threads == threads
        m.fit(X, y, epochs=2, batch_size=64, lr=0.05)
        weights.append(m.weights + m.biases + [m.predict(X)])
    for other in weights[1:]:
        for a, b in zip(weights[0], other):
            assert np.array_equal(a, b)


def test_same_seed_same_run_and_other_seed_differs():
    X, y = make_problem("cross_entropy", 100, 5, 3, seed=4)
    runs = []
    for seed in (1, 1, 2):
        m = fastmlp.MLP([5, 8, 3], seed=seed)
        runs.append((m.fit(X, y, epochs=2, batch_size=10).loss, m.weights))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert runs[0][0] != runs[2][0]


def test_engine_and_reference_shuffle_identically():
    for seed in (0, 1, 12345, 2**63 - 1):
        a, b = fastmlp.MLP([2, 2], seed=seed), fastmlp.reference.MLP([2, 2], seed=seed)
        oa, ob = np.arange(1000, dtype=np.int64), np.arange(1000, dtype=np.int64)
        a._backend_shuffle(oa)
        b._backend_shuffle(ob)
        assert np.array_equal(oa, ob)
        assert sorted(oa) == list(range(1000)) and not np.array_equal(oa, np.arange(1000))
