"""How a fit cuts its steps into engine calls (fastmlp.train.first_order.Pacer): about
CHUNK_SECONDS of work a call at the measured pace, the pace remembered for the model's
next fit at the same batch size, a short tail taken with the call before it, and the
same results however the steps are cut."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from fastmlp import MLP, optim
from fastmlp.train import EpochRunner, first_order
from fastmlp.train.first_order import Pacer


def problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, size=n)


def recording(model):
    """Record the steps of every engine call of `model` (a list, filled as it trains)."""
    calls, train = [], model._backend_train

    def counted(X, labels, dense, order, start, n_steps, *args, **kwargs):
        calls.append(n_steps)
        return train(X, labels, dense, order, start, n_steps, *args, **kwargs)

    model._backend_train = counted
    return calls


def test_a_short_tail_joins_the_call_before_it():
    pacer = Pacer(MLP([3, 2]), 8, 1.0)
    pacer.chunk = 4
    assert [pacer.steps(n) for n in (1, 3, 4, 5, 6, 7, 20)] == [1, 3, 4, 5, 6, 4, 4]
    pacer.chunk = 1  # one step a call stays one step a call
    assert pacer.steps(2) == 1


def test_the_pace_is_remembered_per_model_and_batch_size():
    model, other = MLP([3, 2]), MLP([3, 2])
    first = Pacer(model, 32, 1.0)
    assert first.chunk == 1  # nothing measured yet: a one-step call measures it
    first.took(2, 0.1)  # 0.05 s a step
    assert first.chunk == 20
    assert Pacer(model, 32, 1.0).chunk == 20
    assert Pacer(model, 32, 0.5).chunk == 10
    assert Pacer(model, 64, 1.0).chunk == 1  # another batch size: not measured
    assert Pacer(other, 32, 1.0).chunk == 1
    first.took(16, 80.0)  # slower than the call's seconds: one step a call
    assert first.chunk == 1 and Pacer(model, 32, 1.0).chunk == 1


def test_the_pace_is_forgotten_with_the_model():
    model = MLP([3, 2])
    Pacer(model, 8, 1.0).took(1, 0.01)
    assert model in first_order._PACE
    gc.collect()  # (earlier tests' models, unreachable now, leave the map first)
    keys = len(first_order._PACE)
    del model
    gc.collect()
    assert len(first_order._PACE) == keys - 1


def test_a_second_fit_starts_at_the_first_fits_pace(monkeypatch):
    # a call may take up to 5 s: ten small steps always fit in one
    monkeypatch.setattr(first_order, "CHUNK_SECONDS", 5.0)
    monkeypatch.setattr(first_order, "MAX_CHUNK_SECONDS", 5.0)
    X, y = problem()
    model = MLP([6, 8, 3], seed=0)
    calls = recording(model)
    opt = optim.Adam(lr=0.01)
    model.fit(X, y, epochs=1, batch_size=4, optimizer=opt)
    assert calls == [1, 9]  # a one-step call measures the pace, the rest in one call
    calls.clear()
    model.fit(X, y, epochs=2, batch_size=4, optimizer=opt)
    assert calls == [10, 10]  # an epoch a call (fit's calls end at epoch ends)
    calls.clear()
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt)
    assert calls == [1, 4]  # another batch size: measured again


def test_runner_starts_at_the_last_fits_pace(monkeypatch):
    monkeypatch.setattr(first_order, "CHUNK_SECONDS", 5.0)
    monkeypatch.setattr(first_order, "MAX_CHUNK_SECONDS", 5.0)
    X, y = problem()
    model, opt = MLP([6, 8, 3], seed=0), optim.SGD(lr=0.01)
    calls = recording(model)
    model.fit(X, y, epochs=1, batch_size=5, optimizer=opt)
    calls.clear()
    runner = EpochRunner(model, X, y, None, opt, 5, True, l2=0.0)
    try:
        list(runner.epochs([0.01] * 3))
    finally:
        runner.close()
    assert calls == [24]  # three epochs of 8 steps in one call


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_results_do_not_depend_on_the_pace(monkeypatch, dtype):
    """Fits paced from an earlier fit (long calls, merged tails) against one step a call:
    the same bits."""
    X, y = problem(n=45)
    results = []
    for seconds in (first_order.CHUNK_SECONDS, 0.0):
        monkeypatch.setattr(first_order, "CHUNK_SECONDS", seconds)
        monkeypatch.setattr(first_order, "MAX_CHUNK_SECONDS", max(seconds, 1.0) * (seconds > 0))
        model, opt = MLP([6, 9, 3], seed=1, dtype=dtype), optim.Adam(lr=0.01)
        calls = recording(model)
        losses = [model.fit(X, y, epochs=2, batch_size=b, optimizer=opt).loss
                  for b in (4, 4, 7, 4)]
        results.append((losses, model.get_flat_params(), max(calls)))
    (loss_a, flat_a, most_a), (loss_b, flat_b, most_b) = results
    assert most_a > 1 and most_b == 1
    assert loss_a == loss_b
    np.testing.assert_array_equal(flat_a, flat_b)
