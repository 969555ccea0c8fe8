"""scipy.sparse input to fastmlp.MLPClassifier / MLPRegressor: CSR, CSC and COO (other
formats become CSR) are converted to dense once per call and give the same bits as the
dense array; scikit-learn's estimators take the same input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn import neural_network
from sklearn.datasets import make_classification

import fastmlp
from fastmlp import estimators

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def sparse_data():
    X, y = make_classification(n_samples=120, n_features=30, n_informative=6, n_classes=3,
                               random_state=0)
    X[np.abs(X) < 1.0] = 0.0  # about two thirds zeros
    return X, y


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_fit_and_predict_equal_dense(sparse_data, fmt, dtype):
    X, y = sparse_data
    Xs = sp.csr_matrix(X).asformat(fmt)
    for make, target in [(lambda: fastmlp.MLPClassifier(hidden_layer_sizes=(9,)), y),
                         (lambda: fastmlp.MLPRegressor(hidden_layer_sizes=(9,)), X[:, 0])]:
        dense = make().set_params(max_iter=5, random_state=0, dtype=dtype).fit(X, target)
        sparse = make().set_params(max_iter=5, random_state=0, dtype=dtype).fit(Xs, target)
        np.testing.assert_array_equal(sparse.model_.get_flat_params(),
                                      dense.model_.get_flat_params())
        np.testing.assert_array_equal(sparse.predict(Xs), dense.predict(X))
        assert sparse.score(Xs, target) == dense.score(X, target)
        if isinstance(sparse, fastmlp.MLPClassifier):
            np.testing.assert_array_equal(sparse.predict_proba(Xs), dense.predict_proba(X))
        sparse.partial_fit(Xs, target)
        dense.partial_fit(X, target)
        np.testing.assert_array_equal(sparse.model_.get_flat_params(),
                                      dense.model_.get_flat_params())


def test_scikit_learn_takes_the_same_sparse_input(sparse_data):
    X, y = sparse_data
    for module in (neural_network, fastmlp):
        est = module.MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, random_state=0)
        est.fit(sp.csr_matrix(X), y)
        assert est.predict_proba(sp.csc_matrix(X)).shape == (120, 3)
        assert est.score(sp.csr_matrix(X), y) > 0.5


def test_sparse_input_too_large_to_densify_is_refused(sparse_data, monkeypatch):
    X, y = sparse_data
    monkeypatch.setattr(estimators, "MAX_DENSE_BYTES", X.size * 4 - 1)
    with pytest.raises(ValueError, match="sparse X of shape .* GiB .*MAX_DENSE_BYTES"):
        fastmlp.MLPClassifier(max_iter=2).fit(sp.csr_matrix(X, dtype=np.float32), y)


def test_sparse_nan_is_rejected(sparse_data):
    X, y = sparse_data
    Xs = sp.csr_matrix(X)
    Xs.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastmlp.MLPClassifier(max_iter=2).fit(Xs, y)
