"""fastmlp.MLPClassifier / MLPRegressor side by side with scikit-learn's estimators on the
same data: iteration counts, partial_fit's classes, warm starts, n_iter_no_change=np.inf
and what happens when training diverges."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sklearn import neural_network
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

import fastmlp

MODULES = [neural_network, fastmlp]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=100, n_features=5, random_state=0)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_n_iter_no_change_inf_never_stops_on_tol(module, data):
    X, y = data
    est = module.MLPClassifier(hidden_layer_sizes=(8,), tol=100.0, n_iter_no_change=np.inf,
                               max_iter=12, random_state=0).fit(X, y)
    assert est.n_iter_ == 12 == len(est.loss_curve_)
    stops = module.MLPClassifier(hidden_layer_sizes=(8,), tol=100.0, n_iter_no_change=2,
                                 max_iter=12, random_state=0).fit(X, y)
    assert stops.n_iter_ == 4  # the first epoch sets best_loss_, 3 more exceed 2


@pytest.mark.parametrize("value", [0, 2.5, -np.inf, "inf", True])
def test_other_n_iter_no_change_values_are_rejected(value, data):
    X, y = data
    with pytest.raises((ValueError, TypeError), match="n_iter_no_change"):
        fastmlp.MLPClassifier(n_iter_no_change=value).fit(X, y)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_n_iter_counts_the_epochs_of_each_call(module, data):
    """warm_start: n_iter_ restarts with every fit while loss_curve_ and t_ go on;
    partial_fit: one epoch, n_iter_ == 1."""
    X, y = data
    est = module.MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True,
                               random_state=0)
    est.fit(X, y)
    assert (est.n_iter_, len(est.loss_curve_), est.t_) == (3, 3, 300)
    est.fit(X, y)
    assert (est.n_iter_, len(est.loss_curve_), est.t_) == (3, 6, 600)
    stream = module.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(3):
        stream.partial_fit(X, y, classes=[0, 1])
    assert (stream.n_iter_, len(stream.loss_curve_), stream.t_) == (1, 3, 300)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_multilabel_partial_fit_with_classes(module, data):
    X, y = data
    Y = np.column_stack([y, 1 - y, X[:, 0] > 0]).astype(int)
    est = module.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for _ in range(2):
        est.partial_fit(X, Y, classes=[0, 1, 2])
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    assert est.predict(X).shape == (100, 3) and est.predict_proba(X).shape == (100, 3)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_partial_fit_checks_labels_against_classes(module, data):
    X, y = data
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        module.MLPClassifier().partial_fit(X, y, classes=[0])  # label 1 is not a class
    est = module.MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    est.partial_fit(X, y, classes=[0, 1, 2])
    est.partial_fit(X, y, classes=[0, 1, 2])  # the same classes again: fine
    est.partial_fit(X[y == 0], y[y == 0])  # a subset of them: fine
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        est.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        module.MLPClassifier().partial_fit(X, y)
    # with warm_start, y must hold every class (scikit-learn's rule, also in partial_fit)
    with pytest.raises(ValueError, match="warm_start can only be used"):
        module.MLPClassifier(warm_start=True).partial_fit(X, y, classes=[0, 1, 2])


@pytest.fixture(scope="module")
def exploding():
    """Inputs 100 times too large for SGD at rate 0.5: the weights overflow in a few
    epochs, for scikit-learn and for fastmlp."""
    X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    return X * 100, y


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_divergence_without_early_stopping_raises_a_value_error(module, exploding):
    X, y = exploding
    est = module.MLPRegressor(solver="sgd", learning_rate_init=0.5, max_iter=30,
                              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's overflows
        with pytest.raises(ValueError):
            est.fit(X, y)
    if module is fastmlp:
        assert all(np.isfinite(W).all() for W in est.coefs_ + est.intercepts_)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_divergence_with_early_stopping_keeps_the_best_validation_weights(module, exploding):
    X, y = exploding
    est = module.MLPRegressor(solver="sgd", learning_rate_init=0.5, max_iter=30,
                              early_stopping=True, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert all(np.isfinite(W).all() for W in est.coefs_ + est.intercepts_)
    assert np.isfinite(est.best_validation_score_)
    assert est.best_validation_score_ == np.nanmax(est.validation_scores_)
    assert np.isfinite(est.predict(X)).all()
