"""The course's demonstrations: a 2-3-5-3-1 sigmoid network separates two 2-D
Gaussian clouds (with MSE and with hinge loss), and constant initialization keeps
hidden units identical."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import IMPLEMENTATIONS


def clouds(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    centers = np.array([[-1.0, -1.0], [1.0, 1.0]])
    X = centers[y] + rng.normal(scale=0.6, size=(n, 2))
    return X, y


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("loss", ["mse", "hinge"])
def test_sigmoid_network_learns_two_clouds(name, loss):
    X, y = clouds()
    targets = y.astype(float) if loss == "mse" else 2.0 * y - 1
    model = IMPLEMENTATIONS[name](
        [2, 3, 5, 3, 1], activation="sigmoid", loss=loss, init="xavier_uniform",
        dtype="float64", seed=1,
    )

    def accuracy():
        out = model.predict(X)[:, 0]
        return np.mean((out > (0.5 if loss == "mse" else 0.0)) == y)

    before = model.evaluate(X, targets)["loss"], accuracy()
    epochs = 300 if name == "engine" else 60
    history = model.fit(X, targets, epochs=epochs, batch_size=10, lr=0.5 if loss == "mse" else 0.2)
    after = model.evaluate(X, targets)["loss"], accuracy()
    assert after[0] < 0.5 * before[0]
    assert history.loss[-1] < history.loss[0]
    assert after[1] >= 0.95 > before[1]


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("init,kwargs", [("zeros", {}), ("constant", {"value": 0.3})])
def test_constant_init_keeps_hidden_units_symmetric(name, init, kwargs):
    X, y = clouds(60)
    model = IMPLEMENTATIONS[name](
        [2, 4, 4, 2], activation="sigmoid", init=init, init_kwargs=kwargs, dtype="float64",
        seed=0,
    )
    history = model.fit(X, y, epochs=20, batch_size=6, lr=0.5)
    assert history.loss[-1] != history.loss[0]  # it did train
    Ws, bs = model.get_params()
    for W, b in zip(Ws[:-1], bs[:-1]):  # every hidden unit has the same weights
        assert np.allclose(W, W[:, :1], rtol=0, atol=1e-12)
        assert np.allclose(b, b[0], rtol=0, atol=1e-12)
    # ...and so the same outgoing role: the output layer's rows stay equal too
    assert np.allclose(Ws[-1], Ws[-1][:1, :], rtol=0, atol=1e-12)
