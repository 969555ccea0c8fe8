"""MLP.fit's public face: its signature and docstring, and validation_fraction."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastmlp
from fastmlp.model.base import BaseMLP
from fastmlp.train.options import NAMES as LOOP_OPTIONS
from fastmlp.train.regularization import stratified_split


def test_fit_shows_every_option_the_loop_takes():
    shown = list(inspect.signature(fastmlp.MLP.fit).parameters.values())[1:]  # no self
    assert [p.name for p in shown] == ["X", "y", *LOOP_OPTIONS]
    assert not any(p.kind is p.VAR_KEYWORD for p in shown)
    doc = BaseMLP.fit.__doc__
    for p in shown:
        assert p.name in doc, f"fit's docstring does not document {p.name}"
    for section in ("Parameters\n", "Returns\n", "Raises\n"):
        assert section in doc


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def test_validation_fraction_holds_out_data_without_early_stopping(data):
    X, y = data
    model = fastmlp.MLP([4, 8, 2], seed=3)
    history = model.fit(X, y, epochs=2, lr=0.1, validation_fraction=0.25)
    assert history.stopped_epoch is None and len(history.val_loss) == 2
    _, val = stratified_split(y, len(y), 0.25, 3)  # the split fit makes
    metrics = model.evaluate(X[val], y[val])
    assert history.val_loss[-1] == pytest.approx(metrics["loss"], rel=1e-5)
    assert history.val_accuracy[-1] == pytest.approx(metrics["accuracy"])


def test_no_hold_out_by_default_and_no_double_validation(data):
    X, y = data
    history = fastmlp.MLP([4, 2], seed=0).fit(X, y, epochs=1)
    assert history.val_loss == [None]
    with pytest.raises(ValueError, match="validation_data or validation_fraction, not both"):
        fastmlp.MLP([4, 2], seed=0).fit(X, y, epochs=1, validation_data=(X, y),
                                        validation_fraction=0.2)
    with pytest.raises(ValueError, match="validation_fraction must lie in"):
        fastmlp.MLP([4, 2], seed=0).fit(X, y, epochs=1, validation_fraction=1.5)
