"""predict with sparse (CSR) weights for pruned layers: the same outputs as the dense
path up to rounding, for every shape tail, batch norm, classic dropout, both dtypes and
any thread count."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp


def pruned_pair(sizes, dtype, amount, **kw):
    """Two identical pruned models: one predicting through CSR, one dense."""
    models = []
    for density in (1.0, 0.0):
        m = fastmlp.MLP(sizes, seed=3, dtype=dtype, **kw)
        m.prune(amount)
        m.sparse_density = density
        models.append(m)
    return models


TOL = {"float32": 2e-6, "float64": 1e-13}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1, 15, 17, 64, 200])
def test_csr_predict_equals_dense_predict(dtype, n):
    sparse, dense = pruned_pair([37, 70, 33, 5], dtype, 0.9, activation="tanh")
    X = np.random.default_rng(n).normal(size=(n, 37)).astype(dtype)
    out, expected = sparse.predict(X), dense.predict(X)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, expected, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(sparse.predict_logits(X), dense.predict_logits(X),
                               rtol=TOL[dtype], atol=TOL[dtype])


def test_batch_norm_classic_dropout_and_an_all_zero_layer():
    sparse, dense = pruned_pair([12, 20, 16, 3], "float64", 0.8,
                                batch_norm=["before", "after"], dropout=0.3,
                                dropout_mode="classic", input_dropout=0.1)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 12)), rng.integers(0, 3, size=40)
    for m in (sparse, dense):
        m.fit(X, y, epochs=2, batch_size=8, lr=0.05)
    np.testing.assert_allclose(sparse.predict(X), dense.predict(X), rtol=1e-13, atol=1e-13)
    for m in (sparse, dense):  # a layer whose weights are all zero: bias only
        weights = m.weights
        weights[1][:] = 0
        m.set_params(weights, m.biases)
    np.testing.assert_allclose(sparse.predict(X), dense.predict(X), rtol=1e-13, atol=1e-13)


def test_results_do_not_depend_on_the_thread_count():
    X = np.random.default_rng(1).normal(size=(300, 100)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        m = fastmlp.MLP([100, 300, 10], seed=5, threads=threads)
        m.prune(0.95)
        outs.append(m.predict(X))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_only_sparse_layers_use_csr_and_the_density_knob():
    """Layer-wise: pruning one layer only changes nothing for the others; the threshold is
    checked and a change of it takes effect at the next predict."""
    m = fastmlp.MLP([20, 30, 4], seed=0, dtype="float64")
    m.prune([0.95, 0.0])
    X = np.random.default_rng(2).normal(size=(25, 20))
    first = m.predict(X)
    m.sparse_density = 0.0
    np.testing.assert_allclose(m.predict(X), first, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="sparse_density"):
        m.sparse_density = 1.5
    assert m.sparse_density == 0.0


def test_training_after_prediction_sees_the_new_weights():
    """The CSR copy follows the parameters: predictions after more training are the
    dense path's for the new weights."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(50, 10)), rng.integers(0, 2, size=50)
    sparse, dense = pruned_pair([10, 40, 2], "float64", 0.9)
    for _ in range(2):
        for m in (sparse, dense):
            m.fit(X, y, epochs=1, lr=0.1)
        np.testing.assert_allclose(sparse.predict(X), dense.predict(X), rtol=1e-13,
                                   atol=1e-14)
