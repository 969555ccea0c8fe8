"""predict's NaN/infinity check on dense float input runs in the engine, each block after
its forward pass, instead of in a pass of its own before: the same errors (naming NaN or
infinity and a conversion), wherever the bad value lies, on one thread and with the rows
split between threads, on every kernel path; integer and sparse input keep their checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastmlp
from fastmlp import _engine
from fastmlp.io import inputs


def python_message(model, X):
    """The error the model's own input check raises for X."""
    with pytest.raises(ValueError) as info:
        model._check_input(X)
    return str(info.value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
def test_bad_values_anywhere_raise_the_usual_error(kernel, dtype, threads):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1300, 9))  # blocks of 512 rows (of 256 a thread when split)
    model = fastmlp.MLP([9, 12, 4], seed=0, dtype=dtype, threads=threads)
    model.adaptive_threads = False
    expected = model.predict(X)
    for row in (0, 1, 511, 512, 700, 1299):
        for bad, what in ((np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")):
            for source in (np.float64, np.float32):
                Y = X.astype(source)
                Y[row, row % 9] = bad
                message = python_message(model, Y)
                assert what in message
                for call in (model.predict, model.predict_logits):
                    with pytest.raises(ValueError) as info:
                        call(Y)
                    assert str(info.value) == message
    np.testing.assert_array_equal(model.predict(X), expected)  # (nothing changed)


def test_overflow_in_the_conversion_and_the_transform_is_caught():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 5))
    model = fastmlp.MLP([5, 6, 2], seed=0)  # float32
    Y = X.copy()
    Y[555, 3] = 1e300  # finite float64, infinite float32
    with pytest.raises(ValueError, match=r"X contains infinity \(after conversion to float32\)"):
        model.predict(Y)
    scaled = fastmlp.MLP([5, 6, 2], seed=0, input_scale=np.array([1, 1, 1e38, 1, 1]),
                         input_shift=np.zeros(5))
    Z = X.astype(np.float32)
    Z[599, 2] = 10.0  # 1e39 after the transform
    message = python_message(scaled, Z)
    with pytest.raises(ValueError) as info:
        scaled.predict(Z)
    assert str(info.value) == message and "infinity" in message


def test_the_engine_checks_float_rows_and_python_the_others(monkeypatch):
    """Finite float input makes no separate pass (the model's check would raise here);
    integer input with a transform and sparse input keep theirs."""
    X = np.random.default_rng(5).normal(size=(50, 4))
    model = fastmlp.MLP([4, 3, 2], seed=0, input_scale=np.ones(4), input_shift=np.zeros(4))
    expected = model.predict(X)

    def refuse(*args, **kwargs):
        raise AssertionError("a separate finiteness pass")

    monkeypatch.setattr(inputs, "_check_finite", refuse)
    np.testing.assert_array_equal(model.predict(X), expected)
    with pytest.raises(AssertionError, match="separate finiteness pass"):
        model.predict(np.ones((5, 4), dtype=np.uint8))
    with pytest.raises(AssertionError, match="separate finiteness pass"):
        fastmlp.MLP([4, 3, 2], seed=0).predict(X.astype(np.int32))
    monkeypatch.undo()
    sparse = sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0))
    sparse.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastmlp.MLP([4, 3, 2], seed=0).predict(sparse)


def test_engine_flag():
    """The engine call itself: NonFiniteInput with check_finite, outputs without it."""
    model = fastmlp.MLP([3, 2], seed=0)
    rows = model._check_input(np.array([[1.0, np.nan, 2.0]]), finite=False)
    with pytest.raises(_engine.NonFiniteInput):
        model._engine.predict(rows, 512, False, True)
    assert np.isnan(model._engine.predict(rows, 512, False, False)).any()
