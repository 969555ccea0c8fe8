"""The course's demonstrations: a 2-3-5-3-1 sigmoid network separates two 2-D
Gaussian clouds (with MSE and with hinge loss), and constant initialization keeps
hidden units identical."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
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


def test_step_records_and_step_callbacks():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 3, 200)
    schedule = fastmlp.schedules.StepLR(step_size=5, gamma=0.5, interval="batch")
    m = fastmlp.MLP([5, 8, 3], seed=0)
    calls = []
    history = m.fit(X, y, epochs=3, batch_size=16, lr=0.1, lr_schedule=schedule,
                    record="step", step_every=7,
                    step_callbacks=[lambda model, h: calls.append((h.steps, len(h)))])
    steps = 3 * 13  # 200 / 16 -> 13 batches per epoch
    assert history.steps == steps and len(history.step_loss) == steps
    assert history.step_lr == [0.1 * 0.5 ** (t // 5) for t in range(steps)]
    assert [c[0] for c in calls] == list(range(7, steps + 1, 7))
    assert calls[1] == (14, 1)  # step 14 lies in epoch 2: one epoch recorded then
    # the epoch losses are the batch-size-weighted means of the step losses
    rows = np.array([16] * 12 + [8], dtype=float)
    for e in range(3):
        assert history.loss[e] == pytest.approx(
            np.dot(history.step_loss[13 * e : 13 * (e + 1)], rows) / 200)
    # the same fit without records or callbacks takes the same steps
    twin = fastmlp.MLP([5, 8, 3], seed=0)
    twin.fit(X, y, epochs=3, batch_size=16, lr=0.1,
             lr_schedule=fastmlp.schedules.StepLR(step_size=5, gamma=0.5, interval="batch"))
    np.testing.assert_array_equal(twin.get_flat_params(), m.get_flat_params())
    assert twin.fit(X, y, epochs=1).step_loss == []


def test_a_step_callback_stops_training_inside_an_epoch():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(100, 4)), rng.integers(0, 2, 100)
    m = fastmlp.MLP([4, 6, 2], seed=0)
    history = m.fit(X, y, epochs=5, batch_size=10, step_every=25,
                    step_callbacks=[lambda model, h: h.steps >= 25])
    assert history.steps == 25 and len(history) == 2 and history.stopped_epoch == 3
    assert m.training_step == 25
    with pytest.raises(ValueError, match="record"):
        m.fit(X, y, record="batch")
    with pytest.raises(ValueError, match="step_every"):
        m.fit(X, y, step_every=0)
