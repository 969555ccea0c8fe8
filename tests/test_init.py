"""Initializers: distributions, parameters, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp.model.init import INITIALIZERS, initialize

FAN_IN, FAN_OUT = 400, 300


def draw(name, **kw):
    return initialize(name, FAN_IN, FAN_OUT, np.random.default_rng(0), **kw)


@pytest.mark.parametrize(
    "name,std",
    [
        ("he_normal", np.sqrt(2 / FAN_IN)),
        ("xavier_normal", np.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("lecun_normal", np.sqrt(1 / FAN_IN)),
        ("he_uniform", np.sqrt(6 / FAN_IN) / np.sqrt(3)),
        ("xavier_uniform", np.sqrt(6 / (FAN_IN + FAN_OUT)) / np.sqrt(3)),
        ("normal", 0.01),
        ("uniform", 0.05 / np.sqrt(3)),
    ],
)
def test_standard_deviations(name, std):
    W = draw(name)
    assert W.shape == (FAN_IN, FAN_OUT)
    assert W.std() == pytest.approx(std, rel=0.02)
    assert abs(W.mean()) < 0.02 * std * 10


def test_uniform_bounds():
    a = np.sqrt(6 / (FAN_IN + FAN_OUT))
    W = draw("xavier_uniform", gain=2.0)
    assert np.abs(W).max() <= 2 * a and np.abs(W).max() > 1.9 * a
    W = draw("uniform", low=0.0, high=1.0)
    assert W.min() >= 0 and W.max() <= 1


def test_zeros_constant_and_sparse():
    assert not draw("zeros").any()
    assert np.all(draw("constant", value=0.25) == 0.25)
    W = draw("sparse", k=7, std=2.0)
    assert (np.count_nonzero(W, axis=0) == 7).all()
    assert W[W != 0].std() == pytest.approx(2.0, rel=0.1)
    small = initialize("sparse", 3, 5, np.random.default_rng(0))  # k capped at fan_in
    assert (np.count_nonzero(small, axis=0) == 3).all()


def test_every_initializer_reaches_the_model_with_bias_init():
    for name in INITIALIZERS:
        model = fastmlp.MLP([20, 10, 2], init=name, bias_init=0.1, seed=3, dtype="float64")
        expected = initialize(name, 20, 10, np.random.default_rng(3))
        np.testing.assert_array_equal(model.weights[0], expected)
        assert np.all(model.biases[0] == 0.1)


def test_seed_reproducible_and_dtype():
    a = fastmlp.MLP([5, 4, 3], seed=1).weights
    b = fastmlp.MLP([5, 4, 3], seed=1).weights
    c = fastmlp.MLP([5, 4, 3], seed=2).weights
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32
    assert fastmlp.MLP([5, 3], dtype="float64").weights[0].dtype == np.float64


def test_seed_none_draws_and_records_a_seed():
    m1, m2 = fastmlp.MLP([5, 3]), fastmlp.MLP([5, 3])
    assert m1.seed != m2.seed
    again = fastmlp.MLP([5, 3], seed=m1.seed)
    assert np.array_equal(again.weights[0], m1.weights[0])
