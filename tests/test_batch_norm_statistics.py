"""recompute_batch_norm_statistics: each batch-norm layer's inference mean and unbiased
variance from a whole data set, checked against NumPy on the hidden activations."""

from __future__ import annotations

import numpy as np
import pytest


def relu(z):
    return np.maximum(z, 0)


def bn_model(impl, dtype="float64", **kw):
    """784-free small net: BN before the activation in layer 0, after it in layer 1,
    random weights and BN parameters, classic input dropout (scaled at inference)."""
    model = impl([5, 7, 6, 3], batch_norm=["before", "after"], dtype=dtype, seed=4,
                 input_dropout=0.2, dropout_mode="classic", **kw)
    rng = np.random.default_rng(8)
    model.set_batch_norm_state([
        {"gamma": rng.uniform(0.5, 2, 7), "beta": rng.normal(size=7)},
        {"gamma": rng.uniform(0.5, 2, 6), "beta": rng.normal(size=6)},
    ])
    return model


def expected_statistics(model, X):
    """Layer 0's statistics on its pre-activations, then layer 1's on its activations
    computed with layer 0's new statistics; float64, the whole set at once."""
    W, b = model.get_params()
    st = model.batch_norm_state()
    x = X * 0.8  # classic input dropout at inference
    z0 = x @ W[0] + b[0]
    m0, v0 = z0.mean(axis=0), z0.var(axis=0, ddof=1)
    h0 = relu(st[0]["gamma"] * (z0 - m0) / np.sqrt(v0 + 1e-5) + st[0]["beta"])
    a1 = relu(h0 @ W[1] + b[1])
    return (m0, v0), (a1.mean(axis=0), a1.var(axis=0, ddof=1))


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_statistics_match_numpy_on_the_hidden_activations(impl, batch_size):
    X = np.random.default_rng(0).normal(loc=1.5, size=(50, 5))
    model = bn_model(impl)
    gamma_before = model.batch_norm_state()[0]["gamma"]
    model.recompute_batch_norm_statistics(X, batch_size=batch_size)
    state = model.batch_norm_state()
    for layer, (mean, var) in enumerate(expected_statistics(model, X)):
        np.testing.assert_allclose(state[layer]["running_mean"], mean, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(state[layer]["running_var"], var, rtol=1e-12)
    np.testing.assert_array_equal(state[0]["gamma"], gamma_before)  # parameters untouched


def test_float32_agrees_with_float64_and_inference_uses_the_statistics(impl):
    X = np.random.default_rng(1).normal(size=(300, 5))
    m64, m32 = bn_model(impl), bn_model(impl, dtype="float32")
    m32.set_params(m64.weights, m64.biases)
    m32.set_batch_norm_state([{k: v for k, v in s.items()} for s in m64.batch_norm_state()])
    before = m64.predict(X)
    for m in (m64, m32):
        m.recompute_batch_norm_statistics(X, batch_size=64)
    for s64, s32 in zip(m64.batch_norm_state(), m32.batch_norm_state()):
        for key in ("running_mean", "running_var"):
            np.testing.assert_allclose(s32[key], s64[key], rtol=1e-4, atol=1e-5)
    after = m64.predict(X)
    assert np.abs(after - before).max() > 1e-3  # predict now uses the new statistics
    np.testing.assert_allclose(m32.predict(X), after, rtol=1e-3, atol=1e-4)


def test_after_training_the_statistics_are_the_population_ones(impl):
    """After fit, the running averages differ from the population statistics; the
    recomputation replaces them (checked on layer 0, whose input does not depend on
    other statistics)."""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, size=64)
    model = bn_model(impl)
    model.fit(X, y, epochs=2, batch_size=16, lr=0.05)
    W, b = model.get_params()
    z0 = X * 0.8 @ W[0] + b[0]
    assert np.abs(model.batch_norm_state()[0]["running_mean"] - z0.mean(axis=0)).max() > 1e-3
    model.recompute_batch_norm_statistics(X)
    np.testing.assert_allclose(model.batch_norm_state()[0]["running_mean"], z0.mean(axis=0),
                               rtol=1e-12, atol=1e-13)


def test_bad_arguments_are_refused(impl):
    model = bn_model(impl)
    with pytest.raises(ValueError, match="at least 2 samples"):
        model.recompute_batch_norm_statistics(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="batch_size"):
        model.recompute_batch_norm_statistics(np.zeros((4, 5)), batch_size=0)
    with pytest.raises(ValueError, match="features"):
        model.recompute_batch_norm_statistics(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="no batch normalization"):
        impl([5, 3]).recompute_batch_norm_statistics(np.zeros((4, 5)))
