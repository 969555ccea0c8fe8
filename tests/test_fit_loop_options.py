"""fit's loop options: validation every k epochs, stopping on the training loss (tol,
n_iter_no_change) and restoring the best weights whatever stops the run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem

from fastmlp.optim import SGD
from fastmlp.train.loop import no_improvement_count


@pytest.fixture
def data():
    X, y = make_problem("cross_entropy", 90, 5, 3, seed=4)
    return X, y, X[:30], y[:30]


def test_validation_every_k_epochs(impl, data):
    """Validation at epochs k, 2k, ... and the last; None in between; training itself is
    the same as with validation every epoch."""
    X, y, Xv, yv = data
    every = impl([5, 8, 3], seed=1, dtype="float64")
    h_every = every.fit(X, y, epochs=7, lr=0.05, validation_data=(Xv, yv))
    sparse = impl([5, 8, 3], seed=1, dtype="float64")
    h = sparse.fit(X, y, epochs=7, lr=0.05, validation_data=(Xv, yv), validation_every=3)
    assert [v is not None for v in h.val_loss] == [False, False, True, False, False, True, True]
    assert [v is not None for v in h.val_accuracy] == [v is not None for v in h.val_loss]
    for e in (2, 5, 6):
        assert h.val_loss[e] == h_every.val_loss[e]
    np.testing.assert_array_equal(sparse.get_flat_params(), every.get_flat_params())
    with pytest.raises(ValueError, match="validation_every"):
        sparse.fit(X, y, epochs=1, validation_every=0)


def test_early_stopping_judges_the_validated_epochs(impl, data):
    X, y, Xv, yv = data
    model = impl([5, 8, 3], seed=1, dtype="float64")
    h = model.fit(X, y, epochs=12, lr=0.05, validation_data=(Xv, yv), validation_every=4,
                  early_stopping=True, patience=1)
    assert h.best_epoch in (4, 8, 12)


def test_no_improvement_count_is_scikit_learns():
    assert no_improvement_count([], 0.1) == 0
    assert no_improvement_count([5.0, 4.0, 3.95, 3.96, 3.0], 0.1) == 0
    assert no_improvement_count([5.0, 4.0, 3.95, 3.96], 0.1) == 2  # 3.95 > 4.0 - 0.1
    assert no_improvement_count([5.0, 4.0, 4.5, 3.85], 0.1) == 0  # improves on 4.0 by 0.15
    assert no_improvement_count([1.0, 1.1, 1.2], 0.0) == 2
    assert no_improvement_count([1.0, 1.0, 1.0], 0.0) == 0  # loss > best - tol: ties pass


def test_tol_stops_when_the_training_loss_stalls(impl, data):
    """A learning rate too small to move the loss: with n_iter_no_change=3 the run stops
    after epoch 1 plus 4 epochs without an improvement larger than tol."""
    X, y, _, _ = data
    model = impl([5, 8, 3], seed=1, dtype="float64")
    h = model.fit(X, y, epochs=50, optimizer=SGD(lr=1e-9), tol=1e-4, n_iter_no_change=3)
    assert len(h.loss) == 5 and h.stopped_epoch == 5
    h = impl([5, 8, 3], seed=1).fit(X, y, epochs=6, lr=0.05, tol=None)
    assert len(h.loss) == 6 and h.stopped_epoch is None  # None: off (the default)
    with pytest.raises(ValueError, match="tol"):
        model.fit(X, y, epochs=1, tol=-1.0)
    with pytest.raises(ValueError, match="n_iter_no_change"):
        model.fit(X, y, epochs=1, tol=0.1, n_iter_no_change=0)


@pytest.mark.parametrize("restore_best", [False, True])
def test_a_stopping_callback_can_restore_the_best_weights(impl, data, restore_best):
    """A callback stops the run at epoch 6; with restore_best the model ends with the
    weights of the epoch with the lowest val_loss, else with those of epoch 6."""
    X, y, Xv, yv = data
    seen = []

    def record_then_stop(model, history):
        seen.append(model.get_flat_params())
        return len(history.loss) == 6

    model = impl([5, 8, 3], seed=2, dtype="float64")
    h = model.fit(X, y, epochs=20, lr=0.5, validation_data=(Xv, yv),
                  callbacks=[record_then_stop], restore_best=restore_best)
    assert h.stopped_epoch == 6 and len(seen) == 6
    if restore_best:
        best = int(np.argmin(h.val_loss))
        assert h.best_epoch == best + 1
        np.testing.assert_array_equal(model.get_flat_params(), seen[best])
        assert model.evaluate(Xv, yv)["loss"] == pytest.approx(min(h.val_loss), rel=1e-12)
    else:
        assert h.best_epoch is None
        np.testing.assert_array_equal(model.get_flat_params(), seen[-1])


def test_restore_best_holds_out_data_or_refuses_without_it(impl, data):
    X, y, _, _ = data
    h = impl([5, 8, 3], seed=1).fit(X, y, epochs=3, lr=0.05, restore_best=True)
    assert all(v is not None for v in h.val_loss) and h.best_epoch is not None
    with pytest.raises(ValueError, match="validation_fraction must lie in"):  # as early_stopping
        impl([5, 8, 3], seed=1).fit(X, y, epochs=3, restore_best=True, validation_fraction=0)
    from fastmlp.train.loop import Loop

    with pytest.raises(ValueError, match="restore_best needs validation data"):
        Loop(impl([5, 3]), epochs=3, restore_best=True)
