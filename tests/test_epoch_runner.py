"""The estimators' fast path, fastmlp.train.EpochRunner: many epochs per engine call on data
checked once, equal bit for bit to ``MLP.fit`` one epoch at a time (what the estimators
did before), whatever the chunking; and the engine's multi-epoch `order`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_classification

from fastmlp import MLP, MLPClassifier, MLPRegressor, _engine, optim
from fastmlp.train import EpochRunner, first_order

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def problem(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, size=n), rng.uniform(0, 2, size=n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shuffle,batch_size,weighted", [(True, 8, False), (True, 10, True),
                                                         (False, 7, True), (True, 50, False)])
def test_runner_equals_fit_one_epoch_at_a_time(impl, dtype, shuffle, batch_size, weighted):
    X, y, w = problem()
    w = w if weighted else None
    rates = [0.01, 0.02, 0.005, 0.01, 0.03]
    fast, slow = (impl([5, 9, 3], seed=1, dtype=dtype, dropout=0.1) for _ in range(2))
    fast_opt, slow_opt = optim.Adam(lr=rates[0]), optim.Adam(lr=rates[0])
    runner = EpochRunner(fast, X.astype(dtype), y, w, fast_opt, batch_size, shuffle, l2=0.01)
    losses = list(runner.epochs(rates))
    expected = []
    for lr in rates:
        slow_opt.lr = lr
        expected += slow.fit(X, y, epochs=1, batch_size=batch_size, shuffle=shuffle,
                             optimizer=slow_opt, l2=0.01, sample_weight=w).loss
    assert losses == expected
    np.testing.assert_array_equal(fast.get_flat_params(), slow.get_flat_params())
    np.testing.assert_array_equal(fast._backend_rng_state(), slow._backend_rng_state())
    assert fast.training_step == slow.training_step
    assert fast_opt.state[0]["step"] == slow_opt.state[0]["step"]


def test_results_do_not_depend_on_the_chunking(monkeypatch):
    """One step per engine call (calls start mid-epoch and at epoch ends) or many epochs
    per call: the same bits."""
    X, y, w = problem(n=45)
    results = []
    for seconds in (0.0, first_order.CHUNK_SECONDS):
        monkeypatch.setattr(first_order, "CHUNK_SECONDS", seconds)
        monkeypatch.setattr(first_order, "MAX_CHUNK_SECONDS", max(seconds, 1.0) * (seconds > 0))
        model, opt = MLP([5, 9, 3], seed=1), optim.Adam(lr=0.01)
        runner = EpochRunner(model, X.astype(np.float32), y, w, opt, 10, True, l2=0.0)
        losses = list(runner.epochs([0.01] * 4))
        results.append((losses, model.get_flat_params(), runner.pacer.chunk))
    (loss_a, flat_a, chunk_a), (loss_b, flat_b, chunk_b) = results
    assert chunk_a == 1 and chunk_b > 5  # one step per call, and several epochs per call
    assert loss_a == loss_b
    np.testing.assert_array_equal(flat_a, flat_b)


@pytest.mark.parametrize("make", [
    lambda: MLPClassifier(hidden_layer_sizes=(7,), batch_size=16),
    lambda: MLPRegressor(loss="poisson", hidden_layer_sizes=(7,), dtype="float64"),
])
def test_estimator_fit_equals_the_epoch_by_epoch_fit_it_replaced(make, monkeypatch):
    """A warm-started fit of 6 epochs equals 6 calls of MLP.fit(epochs=1) from the same
    state (the estimators' loop before this fast path), in fewer engine calls."""
    X, y = make_classification(n_samples=90, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    est = make()
    target = y if isinstance(est, MLPClassifier) else y.astype(np.float64)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=90)
    est.set_params(max_iter=1, warm_start=True, tol=0.0, n_iter_no_change=np.inf,
                   random_state=0)
    est.fit(X, target, sample_weight=w)
    twin = pickle.loads(pickle.dumps(est.model_))
    twin._backend_set_rng_state(est.model_._backend_rng_state())
    opt = est._make_optimizer()
    calls = []
    original = MLP._backend_train
    monkeypatch.setattr(MLP, "_backend_train",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    est.set_params(max_iter=6).fit(X, target, sample_weight=w)
    assert len(calls) < 6
    batch = 16 if isinstance(est, MLPClassifier) else 90
    l2 = est.alpha / (est._loss_scale() * batch * w.mean())
    dense = target if isinstance(est, MLPClassifier) else target.reshape(-1, 1)
    curve = []
    for _ in range(6):
        h = twin.fit(X, dense, epochs=1, batch_size=batch, optimizer=opt, l2=l2,
                     sample_weight=w)
        curve.append(h.loss[-1] * est._loss_scale())
    np.testing.assert_array_equal(est.model_.get_flat_params(), twin.get_flat_params())
    assert est.loss_curve_[1:] == curve


@pytest.mark.parametrize("n,batch_size", [(10, 3), (10, 5), (10, 10), (7, 1), (9, 20)])
def test_steps_end_follows_the_batches(n, batch_size):
    """steps_end (the engine's bounds check) agrees with stepping batch by batch, a batch
    never crossing an epoch's end."""
    for start in [0, batch_size % n, n, 2 * n + min(batch_size, n - 1)]:
        p = start
        for n_steps in range(0, 3 * (n // batch_size + 2)):
            assert _engine.steps_end(start, n_steps, batch_size, n) == p, (start, n_steps)
            p += min(batch_size, n - p % n)


def test_the_engine_checks_order_and_steps():
    X, y, _ = problem(n=20)
    model = MLP([5, 4, 3], seed=0)
    model._backend_reserve(8)
    from fastmlp.train.regularization import augment_config, penalty_config

    opt = optim.SGD(lr=0.1)
    state = opt.state_for(0, (model._n_params,), model.dtype)
    labels, dense = model._targets(y, 20)
    args = (X.astype(np.float32), labels, dense)
    rest = (opt, state, (0.0, 0.0, True), penalty_config(), augment_config(5))
    for order, start, steps, match in [(np.arange(30), 0, 1, "k \\* 20 indices"),
                                       (np.arange(40), 16, 5, "past the end"),
                                       (np.arange(40), 0, 7, "past the end")]:
        with pytest.raises(ValueError, match=match):
            model._backend_train(*args, order.astype(np.int64), start, steps, 8,
                                 np.full(steps, 0.1), *rest)
    order = np.tile(np.arange(20, dtype=np.int64), 2)
    status, done, *_ = model._backend_train(*args, order, 16, 4, 8, np.full(4, 0.1), *rest)
    assert (status, done) == (0, 4)  # 16-20 | 20-28, 28-36, 36-40


def test_shuffles_in_one_call_equal_one_at_a_time(impl):
    """_backend_shuffles (one locked call per run of epochs) shuffles each epoch's block
    as that many _backend_shuffle calls do, and returns the generator's state before each
    and after the last."""
    one, many = impl([3, 2], seed=5), impl([3, 2], seed=5)
    n, E = 10, 4
    order = np.tile(np.arange(n, dtype=np.int64), E)
    states = many._backend_shuffles(order, n)
    expected, want_states = np.tile(np.arange(n, dtype=np.int64), E), []
    for e in range(E):
        want_states.append(one._backend_rng_state())
        one._backend_shuffle(expected[e * n : (e + 1) * n])
    want_states.append(one._backend_rng_state())
    assert np.array_equal(order, expected)
    assert len(states) == E + 1
    assert all(np.array_equal(a, b) for a, b in zip(states, want_states))
    assert not np.array_equal(order[:n], order[n : 2 * n])  # each block drew its own
    assert np.array_equal(many._backend_rng_state(), one._backend_rng_state())
