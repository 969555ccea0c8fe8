"""fastmlp.MLPClassifier / MLPRegressor side by side with scikit-learn's estimators on the
same data: iteration counts, partial_fit's classes, warm starts, n_iter_no_change=np.inf
and what happens when training diverges."""

from __future__ import annotations

import inspect
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


# -- MLPRegressor(loss=...) ------------------------------------------------------------------
needs_sklearn_loss = pytest.mark.skipif(
    "loss" not in inspect.signature(neural_network.MLPRegressor).parameters,
    reason="scikit-learn < 1.7 (the newest for Python 3.9) has no MLPRegressor(loss=...)")


@needs_sklearn_loss
def test_regressor_signature_starts_with_loss_as_in_scikit_learn():
    ours = list(inspect.signature(fastmlp.MLPRegressor).parameters)
    theirs = list(inspect.signature(neural_network.MLPRegressor).parameters)
    assert ours[: len(theirs)] == theirs and ours[0] == "loss"
    assert fastmlp.MLPRegressor("poisson").loss == "poisson"
    with pytest.raises(ValueError, match="loss"):
        fastmlp.MLPRegressor(loss="absolute_error").fit(np.eye(3), [1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    mu = np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1] + 0.2)
    Y = np.column_stack([rng.poisson(mu), rng.poisson(2 * mu)]).astype(np.float64)
    return X, Y


@needs_sklearn_loss
@pytest.mark.parametrize("loss,outputs", [("poisson", 1), ("poisson", 2), ("squared_error", 1)])
def test_an_sgd_step_equals_scikit_learns(counts, loss, outputs):
    """From the same weights, a full-batch SGD epoch (momentum 0, alpha > 0) moves them as
    scikit-learn's does, and loss_ is scikit-learn's objective: the scales of the loss,
    of its gradient and of alpha agree (the Poisson deviance is summed over outputs)."""
    X, Y = counts
    y = Y[:, 0] if outputs == 1 else Y
    kw = dict(loss=loss, hidden_layer_sizes=(6,), solver="sgd", momentum=0.0, alpha=0.1,
              batch_size=300, shuffle=False, learning_rate_init=0.01, max_iter=1,
              warm_start=True, random_state=0)
    ref = neural_network.MLPRegressor(**kw).fit(X, y)
    ours = fastmlp.MLPRegressor(dtype="float64", **kw).fit(X, y)
    ours.coefs_, ours.intercepts_ = ref.coefs_, ref.intercepts_
    ref.fit(X, y)
    ours.fit(X, y)
    assert ours.out_activation_ == ref.out_activation_
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-10)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-9)


@needs_sklearn_loss
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_poisson_regressor_learns_counts_like_scikit_learns(counts, dtype):
    from sklearn.metrics import mean_poisson_deviance

    X, Y = counts
    deviance = {}
    for module in MODULES:
        kw = {"dtype": dtype} if module is fastmlp else {}
        est = module.MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), max_iter=200,
                                  learning_rate_init=0.01, random_state=0, **kw)
        est.fit(X[:200], Y[:200, 0])
        pred = est.predict(X[200:])
        assert est.out_activation_ == "exp" and (pred > 0).all()
        deviance[module.__name__] = mean_poisson_deviance(Y[200:, 0], pred)
    assert deviance["fastmlp"] < 1.2 * deviance["sklearn.neural_network"]


def test_poisson_rejects_negative_targets_and_a_changed_loss(counts):
    X, Y = counts
    with pytest.raises(ValueError, match="out of the valid range of the loss 'poisson'"):
        fastmlp.MLPRegressor(loss="poisson").fit(X, Y[:, 0] - 1)
    est = fastmlp.MLPRegressor(loss="poisson", max_iter=2, warm_start=True).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="continue the fitted network"):
        est.set_params(loss="squared_error").fit(X, Y[:, 0])
