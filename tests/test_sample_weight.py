"""Per-sample weights: a batch's loss is sum(w * loss) / sum(w). Integer weights equal
repeating samples, zero weights equal removing them, and the engine matches the
reference in float32 and float64 (gradients and training)."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from conftest import IMPLEMENTATIONS, LOSSES, make_problem, relative_error


def weights_for(n, seed=3):
    w = np.random.default_rng(seed).integers(0, 4, size=n).astype(np.float64)
    w[0] = 2.0  # never all zero
    return w


@pytest.mark.parametrize("impl_name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("loss", LOSSES)
def test_integer_weights_equal_repeated_samples(impl_name, loss):
    X, y = make_problem(loss, 23, 6, 4, seed=1)
    w = weights_for(23)
    model = IMPLEMENTATIONS[impl_name]([6, 9, 4], loss=loss, dtype="float64", seed=2)
    weighted = model.gradients(X, y, sample_weight=w, l2=0.01)
    reps = w.astype(int)
    repeated = model.gradients(np.repeat(X, reps, 0), np.repeat(y, reps, 0), l2=0.01)
    assert weighted["loss"] == pytest.approx(repeated["loss"], rel=1e-12)
    assert relative_error([weighted["flat"]], [repeated["flat"]]) < 1e-12
    # each copy of sample i gets 1/w_i of the weighted sample's input gradient
    first_copy = np.cumsum(reps) - reps
    keep = reps > 0
    np.testing.assert_allclose(weighted["input"][keep],
                               reps[keep, None] * repeated["input"][first_copy[keep]],
                               rtol=1e-10, atol=1e-14)
    assert not weighted["input"][~keep].any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
def test_weighted_gradients_engine_match_reference(dtype, loss):
    X, y = make_problem(loss, 37, 13, 10, seed=5)
    w = np.random.default_rng(0).random(37) * 3
    eng = fastmlp.MLP([13, 70, 10], loss=loss, dtype=dtype, seed=4, bias_init=0.1)
    ref = fastmlp.reference.MLP([13, 70, 10], loss=loss, dtype=dtype, seed=4, bias_init=0.1)
    ge, gr = eng.gradients(X, y, sample_weight=w), ref.gradients(X, y, sample_weight=w)
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert ge["loss"] == pytest.approx(gr["loss"], rel=tol)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) < tol


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_training_engine_matches_reference(dtype):
    X, y = make_problem("cross_entropy", 61, 8, 3, seed=7)
    w = weights_for(61, seed=8)
    hists, params = [], []
    for cls in (fastmlp.MLP, fastmlp.reference.MLP):
        m = cls([8, 12, 3], dtype=dtype, seed=5, dropout=0.2)
        hists.append(m.fit(X, y, epochs=3, batch_size=16, sample_weight=w,
                           optimizer=fastmlp.optim.Adam(lr=0.01)))
        params.append(m.get_flat_params())
    tol = 1e-9 if dtype == "float64" else 1e-4
    assert relative_error([params[0]], [params[1]]) < tol
    np.testing.assert_allclose(hists[0].loss, hists[1].loss, rtol=tol)


@pytest.mark.parametrize("impl_name", list(IMPLEMENTATIONS))
def test_zero_weights_equal_removing_samples_in_training(impl_name):
    X, y = make_problem("cross_entropy", 30, 5, 3, seed=2)
    w = np.ones(30)
    w[::3] = 0
    cls = IMPLEMENTATIONS[impl_name]
    a = cls([5, 7, 3], dtype="float64", seed=1)
    b = cls([5, 7, 3], dtype="float64", seed=1)
    ha = a.fit(X, y, epochs=4, batch_size=30, shuffle=False, sample_weight=w, l2=1e-3)
    hb = b.fit(X[w > 0], y[w > 0], epochs=4, batch_size=30, shuffle=False, l2=1e-3)
    np.testing.assert_allclose(a.get_flat_params(), b.get_flat_params(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
    assert ha.accuracy == pytest.approx(hb.accuracy)


def test_epoch_loss_is_weighted_and_unit_weights_change_nothing():
    X, y = make_problem("cross_entropy", 40, 5, 3, seed=4)
    a = fastmlp.MLP([5, 6, 3], seed=3, dtype="float64")
    b = fastmlp.MLP([5, 6, 3], seed=3, dtype="float64")
    ha = a.fit(X, y, epochs=2, batch_size=7, sample_weight=np.full(40, 2.5))
    hb = b.fit(X, y, epochs=2, batch_size=7)
    np.testing.assert_allclose(a.get_flat_params(), b.get_flat_params(), rtol=1e-13)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-13)
    # a weighted epoch loss: the mass of each batch weighs its mean
    c = fastmlp.MLP([5, 6, 3], seed=3, dtype="float64")
    w = weights_for(40)
    hc = c.fit(X, y, epochs=1, batch_size=40, shuffle=False, sample_weight=w, lr=1e-12)
    per = -np.log(fastmlp.MLP([5, 6, 3], seed=3, dtype="float64").predict(X)[np.arange(40), y])
    assert hc.loss[0] == pytest.approx(np.sum(w * per) / w.sum(), rel=1e-9)


@pytest.mark.parametrize("bad,message", [
    (np.ones(5), "shape"),
    (-np.ones(6), "non-negative"),
    (np.zeros(6), "zero for every sample"),
    (np.array([1, 1, np.nan, 1, 1, 1.0]), "NaN"),
    (np.array(["a"] * 6), "numbers"),
    (np.ones((6, 1)), "shape"),
    (0.0, "scalar"),
])
def test_bad_sample_weights_are_rejected_and_change_nothing(bad, message):
    X, y = make_problem("cross_entropy", 6, 4, 2)
    m = fastmlp.MLP([4, 3, 2], seed=0)
    before = m.get_flat_params()
    with pytest.raises((ValueError, TypeError), match=message):
        m.fit(X, y, epochs=1, sample_weight=bad)
    with pytest.raises((ValueError, TypeError), match=message):
        m.gradients(X, y, sample_weight=bad)
    np.testing.assert_array_equal(m.get_flat_params(), before)
