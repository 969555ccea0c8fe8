"""The engine's vector math (csrc/vmath.h: exp and the logistic function, float32 and
float64) on every kernel path: within 2 ulp of the correctly rounded value over the whole
range, the special values as libm gives them, each element's bits independent of where it
lies in the array; and the softmax, cross-entropy and logistic activation built on it
against the float64 reference, also past the loss's 64-class block."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import _engine
from conftest import make_problem, relative_error

INT = {np.float32: np.int32, np.float64: np.int64}


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Representable numbers between a and b (same dtype; equal infinities: 0)."""
    ia, ib = (x.view(INT[x.dtype.type]).astype(np.int64) for x in (a, b))
    sign_bit = np.int64(np.iinfo(INT[a.dtype.type]).min)
    ia = np.where(ia < 0, sign_bit - ia, ia)  # monotonic integer order of the floats
    ib = np.where(ib < 0, sign_bit - ib, ib)
    return np.abs(ia - ib)


def exact_exp(x: np.ndarray) -> np.ndarray:
    """exp in float64 (float32 inputs: computed in float64, rounded once)."""
    return np.exp(x.astype(np.float64)).astype(x.dtype)


def exact_sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        v = x.astype(np.float64)
        e = np.exp(-np.abs(v))
        return (np.where(v >= 0, 1.0, e) / (1.0 + e)).astype(x.dtype)


def dense_grid(dtype) -> np.ndarray:
    """Every region of exp's range: far below underflow, the subnormal results, the
    normal range (densely near 0), overflow; plus the special values."""
    lo, hi = (-110.0, 95.0) if dtype == np.float32 else (-760.0, 715.0)
    grid = np.concatenate([np.linspace(lo, hi, 400_001), np.linspace(-1, 1, 100_001),
                           np.geomspace(1e-30, 1, 2000), -np.geomspace(1e-30, 1, 2000)])
    special = [0.0, -0.0, np.inf, -np.inf, np.finfo(dtype).max, -np.finfo(dtype).max,
               np.finfo(dtype).tiny, np.log(np.finfo(dtype).max), np.log(np.finfo(dtype).tiny)]
    return np.concatenate([grid, special]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_within_two_ulp_over_the_whole_range(kernel, dtype):
    x = dense_grid(dtype)
    with np.errstate(over="ignore"):
        want = exact_exp(x)
    got = _engine.vector_math("exp", x)
    assert got.dtype == dtype
    assert ulp_distance(got, want).max() <= 2
    # overflow to inf, underflow to +0 (through the subnormals), exact at 0
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert got[x == -np.inf][0] == 0 and not np.signbit(got[x == -np.inf][0])
    assert np.all(got[x == 0] == 1)
    assert np.any((got > 0) & (got < np.finfo(dtype).tiny))  # subnormal results occur


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logistic_within_two_ulp(kernel, dtype):
    x = dense_grid(dtype)
    got = _engine.vector_math("sigmoid", x)
    assert ulp_distance(got, exact_sigmoid(x)).max() <= 2
    assert got[x == np.inf][0] == 1 and got[x == -np.inf][0] == 0
    assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("name", ["exp", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_propagates(kernel, name, dtype):
    x = np.array([1.0, np.nan, -np.nan, 2.0, np.nan], dtype=dtype)
    got = _engine.vector_math(name, x)
    assert np.array_equal(np.isnan(got), np.isnan(x))


@pytest.mark.parametrize("name", ["exp", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_elements_bits_do_not_depend_on_its_position(kernel, name, dtype):
    """Vector body and remainder compute alike: what the loss's blocks and a split of rows
    over threads rely on."""
    x = np.random.default_rng(0).normal(scale=30, size=203).astype(dtype)
    whole = _engine.vector_math(name, x)
    for shift in (1, 3, 5, 64, 67):
        assert np.array_equal(np.roll(_engine.vector_math(name, np.roll(x, shift)), -shift),
                              whole)
    alone = np.concatenate([_engine.vector_math(name, x[i:i + 1]) for i in range(x.size)])
    assert np.array_equal(alone, whole)


def test_the_paths_agree_within_rounding():
    x = np.linspace(-700, 700, 10_001)
    before = _engine.kernel()
    outs = []
    try:
        for k in _engine.available_kernels():
            _engine.set_kernel(k)
            outs.append(_engine.vector_math("exp", x))
    finally:
        _engine.set_kernel(before)
    assert all(ulp_distance(o, outs[0]).max() <= 2 for o in outs[1:])


def test_bad_arguments():
    with pytest.raises(ValueError, match="name must be"):
        _engine.vector_math("log", np.ones(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        _engine.vector_math("exp", np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="float32 or float64"):
        _engine.vector_math("exp", [1.0, 2.0])
    assert _engine.vector_math("exp", np.ones(0)).shape == (0,)
    two_d = np.zeros((2, 3), dtype=np.float32)[:, ::2]  # not contiguous: copied
    assert np.array_equal(_engine.vector_math("exp", two_d), np.ones((2, 2), np.float32))


@pytest.mark.parametrize("K", [1, 2, 10, 63, 64, 65, 130])
@pytest.mark.parametrize("dense_ce", [False, True])
def test_softmax_and_cross_entropy_against_the_reference(kernel, K, dense_ce):
    """float64, every class count around the loss's 64-class block (FM_CE_KEEP)."""
    X, y = make_problem("cross_entropy", 23, 7, K, seed=K, dense_ce=dense_ce)
    eng, ref = (impl([7, 9, K], activation="tanh", dtype="float64", seed=2, bias_init=0.05)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    assert relative_error([eng.predict(X)], [ref.predict(X)]) <= 1e-12
    ge, gr = eng.gradients(X, y), ref.gradients(X, y)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=1e-12)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) <= 1e-12


@pytest.mark.parametrize("loss", ["kl_divergence", "symmetric_kl", "bhattacharyya"])
def test_distribution_losses_past_one_block(kernel, loss):
    X, t = make_problem(loss, 9, 5, 70, seed=3)
    eng, ref = (impl([5, 70], activation="identity", loss=loss, dtype="float64", seed=4)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    ge, gr = eng.gradients(X, t), ref.gradients(X, t)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=1e-12)
    assert relative_error([ge["flat"]], [gr["flat"]]) <= 1e-12


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logistic_layers_bitwise_over_threads(kernel, dtype):
    X, y = make_problem("cross_entropy", 300, 40, 10, seed=5)
    results = []
    for threads in (1, 2):
        m = fastmlp.MLP([40, 300, 10], activation="sigmoid", seed=9, threads=threads,
                        dtype=dtype)
        m.fit(X, y, epochs=2, batch_size=100, optimizer=fastmlp.optim.Adam(lr=1e-3))
        results.append((m.get_flat_params(), m.predict(X)))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])
