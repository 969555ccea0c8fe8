"""Ensembles: bagging, seeds, averaging and voting, parallel training."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp


@pytest.fixture(scope="module")
def data():
    d = fastmlp.datasets.load_embedded_fashion_mnist()
    return d.X_train[:1500], d.y_train[:1500], d.X_test[:500], d.y_test[:500]


def test_bagging_ensemble_averages_and_votes(data):
    X, y, Xt, yt = data
    ens = fastmlp.Ensemble.of(3, fastmlp.MLP, [784, 32, 10], seed=10)
    histories = ens.fit(X, y, epochs=3, batch_size=32, lr=0.05)
    assert len(histories) == 3 and all(len(h) == 3 for h in histories)
    probs = ens.predict(Xt)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, np.mean([m.predict(Xt) for m in ens.members], axis=0))
    member_labels = np.stack([m.predict_labels(Xt) for m in ens.members])
    hard = ens.predict_labels(Xt, vote="hard")
    counts = np.stack([(member_labels == c).sum(axis=0) for c in range(10)])
    assert np.array_equal(counts[hard, np.arange(len(hard))], counts.max(axis=0))
    # members saw different bootstrap samples: different weights
    assert not np.allclose(ens.members[0].weights[0], ens.members[1].weights[0])
    accs = [m.score(Xt, yt) for m in ens.members]
    assert ens.score(Xt, yt) >= np.mean(accs) - 0.02
    assert ens.score(Xt, yt) > 0.6


def test_parallel_training_equals_serial(data):
    X, y, Xt, _ = data
    a = fastmlp.Ensemble.of(2, fastmlp.MLP, [784, 16, 10], seed=0, threads=2)
    b = fastmlp.Ensemble.of(2, fastmlp.MLP, [784, 16, 10], seed=0, threads=2)
    a.fit(X, y, epochs=1, bagging=False, lr=0.05)
    b.fit(X, y, epochs=1, bagging=False, lr=0.05, n_jobs=2)
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))


def test_hard_vote_majority_by_hand():
    class Fixed(fastmlp.MLP):
        def __init__(self, labels, **kw):
            super().__init__([2, 3], **kw)
            self._fixed = np.array(labels)

        def predict_labels(self, X):
            return self._fixed

    ens = fastmlp.Ensemble([Fixed([0, 1, 2]), Fixed([0, 2, 2]), Fixed([1, 1, 0])])
    assert ens.predict_labels(np.zeros((3, 2)), vote="hard").tolist() == [0, 1, 2]


def test_bad_ensembles():
    with pytest.raises(ValueError, match="at least one member"):
        fastmlp.Ensemble([])
    with pytest.raises(ValueError, match="same inputs, outputs and loss"):
        fastmlp.Ensemble([fastmlp.MLP([3, 2]), fastmlp.MLP([3, 4])])
    with pytest.raises(TypeError, match="must be fastmlp models"):
        fastmlp.Ensemble([object()])
    ens = fastmlp.Ensemble([fastmlp.MLP([3, 2])])
    with pytest.raises(ValueError, match="vote must be"):
        ens.predict_labels(np.zeros((1, 3)), vote="median")


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_members_train_with_their_own_copy_of_the_optimizer_and_schedule(n_jobs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    sizes, seeds = [4, 6, 2], (1, 2)
    adam, schedule = fastmlp.optim.Adam(lr=0.01), fastmlp.schedules.StepLR(1, gamma=0.5)
    ens = fastmlp.Ensemble([fastmlp.MLP(sizes, seed=s, threads=1) for s in seeds])
    ens.fit(X, y, bagging=False, n_jobs=n_jobs, epochs=3, optimizer=adam,
            lr_schedule=schedule)
    for member, seed in zip(ens.members, seeds):
        alone = fastmlp.MLP(sizes, seed=seed, threads=1)
        alone.fit(X, y, epochs=3, optimizer=fastmlp.optim.Adam(lr=0.01),
                  lr_schedule=fastmlp.schedules.StepLR(1, gamma=0.5))
        np.testing.assert_array_equal(member.get_flat_params(), alone.get_flat_params())
    assert adam.state == [] or all(not s for s in adam.state)  # the caller's is untouched
