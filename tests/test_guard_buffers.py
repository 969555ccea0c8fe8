"""The divergence guard's snapshot buffers are kept for the model's next fit
(fastmlp.train.state.Guard): reused only when every shape matches, never shared by two
fits at once, never read before a fill, and freed with the model."""

import gc
import weakref

import numpy as np
import pytest

import fastmlp
from fastmlp import optim
from fastmlp.errors import TrainingDivergedError
from fastmlp.train import state as guard_state


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, size=n)


def _spare(model):
    with guard_state._SPARE_LOCK:
        return guard_state._SPARE.get(model)


def test_a_fit_takes_the_buffers_its_models_last_fit_gave_back(impl):
    X, y = _data()
    model, other = impl([4, 8, 3], seed=0), impl([4, 8, 3], seed=0)
    opt = optim.Adam(lr=0.01)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt)
    first = _spare(model)
    assert first is not None and first[0].shape == model.get_flat_params().shape
    assert set(first[2]) == set(opt.state[0])
    seen = []
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt,
              callbacks=[lambda m, h: seen.append(_spare(m))])
    assert seen == [None]  # taken by the running fit: no other fit can have them
    again = _spare(model)
    assert again[0] is first[0] and again[1] is first[1]
    assert all(again[2][k] is first[2][k] for k in first[2] if isinstance(first[2][k],
                                                                            np.ndarray))
    other.fit(X, y, epochs=1, batch_size=8, optimizer=optim.Adam(lr=0.01))
    assert _spare(other)[0] is not first[0]  # another model's fit makes its own


def test_a_new_optimizer_state_gets_new_buffers_of_its_shape(impl):
    X, y = _data()
    model = impl([4, 8, 3], seed=0)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=optim.Adam(lr=0.01))
    adam = _spare(model)
    opt = optim.SGD(lr=0.01, momentum=0.9)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt)
    sgd = _spare(model)
    assert sgd[0] is not adam[0]
    assert set(sgd[2]) == set(opt.state[0]) != set(adam[2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_first_step_divergence_after_a_fit_leaves_the_model_as_it_is_now(impl, dtype):
    """The reused buffers hold the previous fit's last state: a fit whose first step
    diverges must not put that back (it was never filled in this fit)."""
    X, y = _data(2)
    model = impl([4, 8, 3], seed=0, dtype=dtype)
    opt = optim.Adam(lr=0.01)
    model.fit(X, y, epochs=2, batch_size=8, optimizer=opt)
    assert _spare(model) is not None
    weights = model.weights
    weights[-1][...] = np.finfo(dtype).max
    model.set_params(weights, model.biases)
    start = model.get_flat_params()
    moments = {k: v.copy() for k, v in opt.state[0].items() if isinstance(v, np.ndarray)}
    step = opt.state[0]["step"]
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 1:"):
        model.fit(X, y, epochs=2, batch_size=8, optimizer=opt)
    np.testing.assert_array_equal(model.get_flat_params(), start)
    assert opt.state[0]["step"] == step
    for k, v in moments.items():
        np.testing.assert_array_equal(opt.state[0][k], v)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_later_fit_on_reused_buffers_rewinds_as_a_fresh_one(impl, dtype):
    """Divergence in a second fit (buffers reused) goes back to the state its own last
    finite chunk started from: the same model, optimizer state and step count as a twin
    whose buffers are new."""
    X, y = _data(3, 24)
    models = [impl([4, 8, 3], seed=0, dtype=dtype) for _ in range(2)]
    opts = [optim.Adam(lr=0.01) for _ in range(2)]

    def blow_up(m, history):
        if len(history) == 2:
            big = np.finfo(dtype).max / 4
            m.set_params([np.full_like(W, big) for W in m.weights], m.biases)

    models[0].fit(X, y, epochs=1, batch_size=24, optimizer=opts[0])
    models[1].fit(X, y, epochs=1, batch_size=24, optimizer=opts[1])
    with guard_state._SPARE_LOCK:
        guard_state._SPARE.pop(models[1])  # the twin's next fit makes new buffers
    for model, opt in zip(models, opts):
        with pytest.raises(TrainingDivergedError, match="epoch 3, step 1:"):
            model.fit(X, y, epochs=4, batch_size=24, optimizer=opt, callbacks=[blow_up])
    assert models[0].training_step == models[1].training_step == 2
    assert opts[0].state[0]["step"] == opts[1].state[0]["step"] == 2
    np.testing.assert_array_equal(models[0].get_flat_params(), models[1].get_flat_params())
    for k in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(opts[0].state[0][k], opts[1].state[0][k])


def test_the_buffers_go_with_the_model():
    X, y = _data()
    model = fastmlp.MLP([4, 8, 3], seed=0)
    model.fit(X, y, epochs=1, batch_size=8)
    flat = weakref.ref(_spare(model)[0])
    assert flat() is not None
    del model
    gc.collect()
    assert flat() is None


def test_a_closed_guard_refuses_to_train():
    X, y = _data()
    model = fastmlp.MLP([4, 8, 3], seed=0)
    opt = optim.SGD(lr=0.01)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt)
    guard = guard_state.Guard(model, opt.model_state(model))
    guard.close()
    with pytest.raises(RuntimeError, match="guard was closed"):
        guard.train(model._backend_rng_state())


def test_partial_fit_reuses_the_buffers():
    X, y = _data()
    clf = fastmlp.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    first = _spare(clf.model_)
    clf.partial_fit(X, y)
    assert first is not None and _spare(clf.model_)[0] is first[0]
