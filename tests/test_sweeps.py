"""Hyper-parameter sweeps on a cluster: scikit-learn's GridSearchCV over
fastmlp.MLPClassifier through joblib's Dask backend finds the same best parameters and
the same cross-validation scores as the local run, with one engine thread per worker
process.

Why the scores agree bit for bit: each fit is seeded (``random_state``) and the engine's
results do not depend on its thread count, so a worker process computes what the local
process computes. Why one thread: Dask's nanny starts every worker with
``OMP_NUM_THREADS=1`` (its ``distributed.nanny.pre-spawn-environ`` setting), which is
what the engine's default thread count (``fastmlp._engine.default_threads``: OpenMP's
default, OMP_NUM_THREADS or the cores this process may run on) reads; an estimator's
``threads`` parameter overrides it.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import fastmlp  # noqa: E402

# 15 epochs do not converge; scikit-learn says so (here and, unseen, in the workers)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

GRID = {"hidden_layer_sizes": [(6,), (12,)], "alpha": [1e-4, 1e-1]}


@pytest.fixture(scope="module")
def problem():
    return make_classification(n_samples=150, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)


def search(n_jobs: int | None) -> GridSearchCV:
    estimator = fastmlp.MLPClassifier(max_iter=15, random_state=0, learning_rate_init=0.01)
    return GridSearchCV(estimator, GRID, cv=3, n_jobs=n_jobs)


@pytest.fixture(scope="module")
def local(problem):
    return search(1).fit(*problem)


def assert_same_search(a: GridSearchCV, b: GridSearchCV) -> None:
    assert a.best_params_ == b.best_params_
    assert a.best_score_ == b.best_score_
    assert a.cv_results_["params"] == b.cv_results_["params"]
    for key in [k for k in a.cv_results_ if k.startswith("split") or k == "mean_test_score"]:
        np.testing.assert_array_equal(a.cv_results_[key], b.cv_results_[key], err_msg=key)
    np.testing.assert_array_equal(a.best_estimator_.model_.get_flat_params(),
                                  b.best_estimator_.model_.get_flat_params())


def _engine_threads() -> tuple[int, int]:
    """In a worker: the engine's default thread count, and a fitted estimator's."""
    from fastmlp import _engine

    clf = fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    clf.fit(np.eye(6), np.arange(6) % 2)
    return _engine.default_threads(), clf.model_.threads


# distributed 2024.8 (the newest for Python 3.9) calls joblib's deprecated apply_async
@pytest.mark.filterwarnings("ignore:`apply_async` is deprecated:DeprecationWarning")
def test_grid_search_on_a_dask_cluster_equals_the_local_search(problem, local):
    joblib = pytest.importorskip("joblib")
    distributed = pytest.importorskip("distributed")
    # dashboard on a free port: None means 8787, and when another process holds that,
    # distributed's warning about it is an error here (filterwarnings = error)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        assert set(client.run(_engine_threads).values()) == {(1, 1)}
        with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as stream:
            remote = search(-1).fit(*problem)
    assert len({task["worker"] for task in stream.data}) == 2  # both workers fitted
    assert_same_search(remote, local)

