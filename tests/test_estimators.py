"""fastmlp.MLPClassifier / MLPRegressor as scikit-learn users meet them: swapping the
import, meta-estimators, process parallelism, fitted attributes, solvers, weights,
early stopping, model files."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn import neural_network
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp
from fastmlp import MLPClassifier, MLPRegressor
from fastmlp.train.splitting import holdout_split

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=400, n_features=8, noise=5.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    return X, y / y.std()


# -- swapping the import ---------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_swapping_the_import_gives_the_same_kind_of_classifier(digits, solver):
    X_tr, X_te, y_tr, y_te = digits
    scores = {}
    for module in (neural_network, fastmlp):
        clf = module.MLPClassifier(hidden_layer_sizes=(64,), solver=solver, max_iter=200,
                                   random_state=0)
        clf.fit(X_tr, y_tr)
        scores[module.__name__] = clf.score(X_te, y_te)
        assert clf.predict_proba(X_te).shape == (len(X_te), 10)
        assert clf.coefs_[0].shape == (64, 64) and clf.intercepts_[1].shape == (10,)
    assert scores["fastmlp"] > 0.9
    assert scores["fastmlp"] > scores["sklearn.neural_network"] - 0.03


def test_swapping_the_import_gives_the_same_kind_of_regressor(regression):
    X, y = regression
    r2 = {}
    for module in (neural_network, fastmlp):
        reg = module.MLPRegressor(hidden_layer_sizes=(32,), max_iter=300, random_state=0)
        r2[module.__name__] = reg.fit(X[:300], y[:300]).score(X[300:], y[300:])
    assert r2["fastmlp"] > 0.9
    assert r2["fastmlp"] > r2["sklearn.neural_network"] - 0.05


@pytest.mark.parametrize("labels", [
    np.array([3, 0, 2, 1, 2, 0, 3, 3]),
    np.array([-5, 7, 100, -5, 7, 2, 2, 100]),
    np.array([2.0, -1.0, 0.0, 2.0, -1.0, 0.0, 9.0, 9.0]),
    np.array(["pear", "apple", "fig", "apple", "kiwi", "pear", "fig", "kiwi"]),
    np.array(["b", "c", "a", "c", "b", "a"], dtype=object),
    np.array([9, 4, 4, 9, 9, 4]),  # two of partial_fit's three classes
])
def test_class_labels_become_their_index_in_classes(labels):
    """Several classes: each label's target is its index in ``classes_``, what scikit-learn's
    LabelBinarizer's one-hot row points at (the estimator finds it without the one-hot
    matrix), in a fresh fit and in partial_fit with classes that y holds only some of."""
    from sklearn.preprocessing import LabelBinarizer
    X = np.random.default_rng(0).normal(size=(len(labels), 3))
    if len(np.unique(labels)) > 2:
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, labels)
        want = LabelBinarizer().fit(labels).transform(labels).argmax(axis=1)
        got = clf._encode_targets(labels, True, False)
        assert got.dtype == np.int32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(clf.classes_[got], labels)
    extra = np.array(["zz"], dtype=object) if labels.dtype.kind in "OU" else np.array([1000])
    classes = np.concatenate([np.unique(labels).astype(object), extra.astype(object)])
    classes = np.asarray(classes.tolist())
    part = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    part.partial_fit(X, labels, classes=classes)
    want = LabelBinarizer().fit(classes).transform(labels).argmax(axis=1)
    got = part._encode_targets(labels, False, True)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_fitted_attributes_follow_scikit_learn():
    X, y = make_classification(n_samples=120, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(7, 4), max_iter=15, random_state=0).fit(X, y)
    assert clf.n_iter_ == 15 == len(clf.loss_curve_)
    assert clf.t_ == 15 * 120
    assert clf.n_features_in_ == 5 and clf.n_layers_ == 4 and clf.n_outputs_ == 3
    assert clf.out_activation_ == "softmax"
    assert [c.shape for c in clf.coefs_] == [(5, 7), (7, 4), (4, 3)]
    assert clf.loss_ == clf.loss_curve_[-1] and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    binary = MLPClassifier(max_iter=5, random_state=0).fit(X, y == 1)
    assert binary.out_activation_ == "logistic" and binary.n_outputs_ == 1
    assert list(binary.classes_) == [False, True]
    multilabel = MLPClassifier(max_iter=5, random_state=0).fit(X, np.eye(3)[y][:, :2])
    assert multilabel.out_activation_ == "logistic" and multilabel.n_outputs_ == 2
    assert multilabel.predict(X).shape == (120, 2)
    reg = MLPRegressor(max_iter=3, random_state=0).fit(X, X[:, :2])
    assert reg.out_activation_ == "identity" and reg.predict(X).shape == (120, 2)
    with pytest.raises(AttributeError):
        _ = MLPClassifier().coefs_


def test_reported_loss_is_scikit_learns_objective():
    """loss_ of one full-batch epoch at a vanishing learning rate equals scikit-learn's
    objective at the weights: log-loss / half squared error + alpha/(2n) ||W||^2."""
    X, y = make_classification(n_samples=60, n_features=4, random_state=1)
    for est, data_loss in [
        (MLPClassifier(hidden_layer_sizes=(5,), alpha=0.3, solver="sgd", max_iter=1,
                       learning_rate_init=1e-12, momentum=0, dtype="float64", random_state=0),
         lambda e: log_loss(y, e.predict_proba(X))),
        (MLPRegressor(hidden_layer_sizes=(5,), alpha=0.3, solver="sgd", max_iter=1,
                      learning_rate_init=1e-12, momentum=0, dtype="float64", random_state=0),
         lambda e: 0.5 * np.mean((e.predict(X) - y) ** 2)),
    ]:
        est.fit(X, y.astype(float) if isinstance(est, MLPRegressor) else y)
        l2 = sum(float((W ** 2).sum()) for W in est.coefs_) * 0.3 / (2 * 60)
        assert est.loss_ == pytest.approx(data_loss(est) + l2, rel=1e-6)


def test_probabilities_are_proper():
    X, y = make_classification(n_samples=80, n_features=6, n_classes=3, n_informative=4,
                               random_state=2)
    clf = MLPClassifier(max_iter=50, random_state=0).fit(X, y)
    p = clf.predict_proba(X)
    assert p.dtype == np.float64 and ((p > 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[p.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(p))
    # saturated logistic outputs stay strictly inside (0, 1)
    sharp = MLPClassifier(solver="lbfgs", alpha=0, max_iter=500, random_state=0)
    sharp.fit(X * 50, y == 0)
    q = sharp.predict_proba(X * 50)
    assert ((q > 0) & (q < 1)).all()


# -- scikit-learn machinery ------------------------------------------------------------------
def test_pipeline_grid_search_cross_validation_and_clone(digits):
    X_tr, X_te, y_tr, y_te = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, learning_rate_init=0.01,
                                                         random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                               "mlpclassifier__hidden_layer_sizes": [(16,), (32,)]},
                        cv=2, n_jobs=2)  # loky worker processes
    grid.fit(X_tr[:600], y_tr[:600])
    assert grid.best_score_ > 0.85 and grid.score(X_te, y_te) > 0.85
    scores = cross_val_score(MLPClassifier(max_iter=60, learning_rate_init=0.01,
                                           random_state=0), X_tr, y_tr, cv=3)
    assert scores.min() > 0.85
    est = MLPClassifier(hidden_layer_sizes=(9,), dropout=0.1, solver="rmsprop")
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin is not est


FORK_SCRIPT = textwrap.dedent("""
    import numpy as np, fastmlp
    from joblib import Parallel, delayed
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    # the parent runs OpenMP thread teams first...
    fastmlp.MLPClassifier(max_iter=3, threads=2, random_state=0).fit(X, y)
    def work(seed):
        clf = fastmlp.MLPClassifier(max_iter=5, threads=2, random_state=seed).fit(X, y)
        return fastmlp._engine.fork_serial(), clf.score(X, y)
    # ...then forks workers that train (GNU OpenMP would hang in them)
    out = Parallel(n_jobs=2, backend="multiprocessing")(delayed(work)(s) for s in range(4))
    assert all(serial for serial, _ in out), out
    assert all(score > 0.8 for _, score in out), out
    assert not fastmlp._engine.fork_serial()
    print("ok")
""")


def test_forked_joblib_workers_train_after_the_parent_used_openmp():
    run = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_pickle_round_trip_predicts_bitwise(digits):
    X_tr, X_te, y_tr, _ = digits
    clf = MLPClassifier(max_iter=5, random_state=0).fit(X_tr, y_tr)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X_te), clf.predict_proba(X_te))
    back.partial_fit(X_tr, y_tr)  # and it can go on training


# -- training behaviour ----------------------------------------------------------------------
def test_partial_fit_continues_and_checks_classes():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    # as in scikit-learn: n_iter_ counts the epochs of the last call, t_ all samples
    assert clf.n_iter_ == 1 and clf.t_ == 300 and len(clf.loss_curve_) == 3
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert list(clf.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, np.where(y == 1, 7, y))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_partial_fit_epochs_equal_fit_epochs():
    X, y = make_classification(n_samples=90, n_features=5, random_state=3)
    a = MLPClassifier(max_iter=4, random_state=0, shuffle=False, tol=0).fit(X, y)
    b = MLPClassifier(random_state=0, shuffle=False)
    for _ in range(4):
        b.partial_fit(X, y, classes=[0, 1])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_warm_start_continues_and_rejects_new_classes():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    clf = MLPClassifier(max_iter=5, warm_start=True, random_state=0).fit(X, y)
    first = clf.coefs_[0].copy()
    clf.fit(X, y)
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 10 and clf.t_ == 1000
    assert not np.array_equal(first, clf.coefs_[0])
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, np.where(y == 1, 5, y))
    cold = MLPClassifier(max_iter=5, random_state=0).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 5
    clf.set_params(hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match="continue the fitted network"):
        clf.fit(X, y)


def test_stopping_on_training_loss_and_convergence_warning():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(tol=1.0, n_iter_no_change=3, max_iter=100, random_state=0)
        clf.fit(X, y)
    assert clf.n_iter_ == 5  # the first epoch sets best_loss_; then 4 fail to improve by 1.0
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(max_iter=2, random_state=0).fit(X, y)


def test_learning_rate_schedules_of_sgd():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    inv = MLPClassifier(solver="sgd", learning_rate="invscaling", power_t=0.5, max_iter=3,
                        learning_rate_init=0.1, random_state=0).fit(X, y)
    assert inv._optimizer.lr == pytest.approx(0.1 / (300 + 1) ** 0.5)
    adaptive = MLPClassifier(solver="sgd", learning_rate="adaptive", tol=10.0,
                             n_iter_no_change=1, max_iter=7, learning_rate_init=0.1,
                             random_state=0).fit(X, y)
    # every 2 epochs without improvement divide the rate by 5 instead of stopping
    assert adaptive.n_iter_ == 7
    assert adaptive._optimizer.lr == pytest.approx(0.1 / 5 ** 3)
    # partial_fit is one epoch, also when the adaptive rule lowers the rate on it
    stream = MLPClassifier(solver="sgd", learning_rate="adaptive", tol=10.0,
                           n_iter_no_change=1, learning_rate_init=0.1, random_state=0)
    for _ in range(4):
        stream.partial_fit(X, y, classes=[0, 1])
    assert len(stream.loss_curve_) == 4 and stream._optimizer.lr < 0.1


def test_early_stopping_keeps_the_best_validation_model():
    X, y = make_classification(n_samples=300, n_features=10, flip_y=0.2, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(64,), early_stopping=True, n_iter_no_change=5,
                        max_iter=300, learning_rate_init=0.01, random_state=0).fit(X, y)
    assert clf.n_iter_ < 300 and clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) or \
        clf.best_validation_score_ >= max(clf.validation_scores_) - clf.tol
    X32 = X.astype(np.float32)  # the split hashes the data the network sees (float32)
    train, val = holdout_split(X32, y.astype(float), None, 0.1, clf._split_seed, y)
    assert clf.score(X32[val], y[val]) == pytest.approx(clf.best_validation_score_)


def test_holdout_split_follows_content_and_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 2, size=40).astype(float)
    X[5], y[5] = X[4], y[4]  # a duplicated sample
    train, val = holdout_split(X, y, None, 0.25, seed=1, labels=y)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 40
    assert (4 in val) == (5 in val)  # copies stay together
    assert set(np.unique(y[val])) == {0.0, 1.0}  # stratified
    # integer weights split like repeated rows
    w = rng.integers(0, 4, size=40).astype(float)
    reps = w.astype(int)
    _, v_w = holdout_split(X, y, w, 0.25, seed=1, labels=y)
    _, v_r = holdout_split(np.repeat(X, reps, 0), np.repeat(y, reps), None, 0.25, seed=1,
                           labels=np.repeat(y, reps))
    held_w = {tuple(r) for r in X[v_w][w[v_w] > 0]}
    held_r = {tuple(r) for r in np.repeat(X, reps, 0)[v_r]}
    assert held_w == held_r and not (w[v_w] == 0).any()
    with pytest.raises(ValueError, match="distinct sample"):
        holdout_split(X[:2], y[:2], None, 0.5, seed=0)


def test_lbfgs_solver_uses_scipy_and_respects_limits():
    X, y = make_classification(n_samples=150, n_features=6, random_state=0)
    clf = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=500,
                        random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95 and clf.n_iter_ > 5
    assert not hasattr(clf, "loss_curve_")
    with pytest.warns(ConvergenceWarning, match="lbfgs"):
        short = MLPClassifier(solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    assert short.n_iter_ == 3
    with pytest.raises(ValueError, match="lbfgs"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, y)


def test_sample_weight_and_class_weight():
    X, y = make_classification(n_samples=300, n_features=5, weights=[0.9, 0.1], flip_y=0,
                               class_sep=0.5, random_state=0)
    plain = MLPClassifier(max_iter=60, random_state=0).fit(X, y)
    balanced = MLPClassifier(max_iter=60, class_weight="balanced", random_state=0).fit(X, y)
    weighted = MLPClassifier(max_iter=60, random_state=0).fit(
        X, y, sample_weight=np.where(y == 1, 9.0, 1.0))
    assert (balanced.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    assert (weighted.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    with pytest.raises(ValueError, match="not in the data"):
        MLPClassifier(class_weight={5: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="non-negative"):
        MLPClassifier().fit(X, y, sample_weight=-np.ones(300))


def test_fastmlp_extras():
    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    for kwargs in [{"dropout": 0.2, "input_dropout": 0.1}, {"batch_norm": True},
                   {"solver": "rmsprop", "learning_rate_init": 1e-3},
                   {"solver": "sgd", "nesterovs_momentum": False,
                    "optimizer_params": {"dampening": 0.1}},
                   {"solver": "adamw", "optimizer_params": {"weight_decay": 0.05}},
                   {"threads": 1}, {"activation": "leaky_relu"}]:
        kwargs.setdefault("learning_rate_init", 0.01)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=40, random_state=0, **kwargs)
        assert clf.fit(X, y).score(X, y) > 0.85, kwargs
    assert MLPClassifier(max_iter=1).fit(X, y).model_.dtype == np.float32


@pytest.mark.parametrize("params,match", [
    ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "10"}, "hidden_layer_sizes"),
    ({"activation": "softplus"}, "activation"),
    ({"solver": "newton"}, "solver"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"batch_size": 0}, "batch_size"),
    ({"alpha": -1.0}, "alpha"),
    ({"learning_rate_init": 0.0}, "learning_rate_init"),
    ({"momentum": 1.5}, "momentum"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"beta_2": 1.0}, "beta_2"),
    ({"max_iter": 0}, "max_iter"),
    ({"shuffle": "yes"}, "shuffle"),
    ({"optimizer_params": [1]}, "optimizer_params"),
    ({"solver": "sgd", "optimizer_params": {"nonsense": 1}}, "optimizer_params"),
    ({"solver": "sgd", "optimizer_params": {"dampening": 0.5}}, "Nesterov"),
    ({"dtype": "float16"}, "dtype"),
])
def test_bad_parameters_fail_at_fit_with_clear_errors(params, match):
    X, y = make_classification(n_samples=30, n_features=4, random_state=0)
    est = MLPClassifier(**params)  # scikit-learn convention: __init__ never validates
    with pytest.raises((ValueError, TypeError), match=match):
        est.fit(X, y)


def test_bad_data_fails_clearly():
    clf = MLPClassifier(max_iter=2)
    with pytest.raises(ValueError, match="NaN|infinity"):
        clf.fit(np.array([[np.nan, 1.0], [1.0, 2.0]]), [0, 1])
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(np.ones((4, 2)), [0.5, 1.5, 2.5, 3.5])
    fitted = MLPClassifier(max_iter=2).fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.ones((2, 3)))


# -- model files -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: (MLPClassifier(max_iter=5, random_state=0), ["cat", "dog", "emu"]),
    lambda: (MLPClassifier(max_iter=5, random_state=0, dtype="float64"), [3, 7, 9]),
    lambda: (MLPClassifier(max_iter=5, random_state=0, early_stopping=True), [-4, 0, 4]),
    lambda: (MLPRegressor(max_iter=5, random_state=0, batch_norm=True), None),
])
def test_save_and_load_predict_bitwise(tmp_path, make):
    est, labels = make()
    X, y = make_classification(n_samples=90, n_features=5, n_classes=3, n_informative=3,
                               random_state=0)
    target = np.asarray(labels)[y] if labels is not None else X[:, 0] * 2.0
    est.fit(X, target)
    path = tmp_path / "est.fmlp"
    est.save(path)
    back = fastmlp.load(path)
    assert type(back) is type(est) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    if labels is not None:
        np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
        np.testing.assert_array_equal(back.classes_, est.classes_)
    for name in ("n_iter_", "t_", "loss_", "n_features_in_", "n_layers_", "n_outputs_",
                 "out_activation_", "loss_curve_", "validation_scores_"):
        assert getattr(back, name) == getattr(est, name), name
    back.partial_fit(X, target)  # a fresh optimizer continues from the loaded weights


def test_estimator_files_reject_damage(tmp_path):
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    path = tmp_path / "est.fmlp"
    MLPClassifier(max_iter=2, random_state=0).fit(X, y).save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.fmlp"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum|corrupt"):
        fastmlp.load(bad)
    with pytest.raises(ValueError):
        MLPClassifier().save(tmp_path / "unfitted.fmlp")


def test_the_swap_example_gives_the_same_kind_of_results():
    import pathlib

    script = pathlib.Path(__file__).parent.parent / "examples" / "sklearn_swap.py"
    run = subprocess.run([sys.executable, str(script), "--samples", "3000", "--max-iter", "8"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| `from")]
    accuracy = [float(row.split("|")[2]) for row in rows]
    assert len(accuracy) == 2 and min(accuracy) > 0.7
    assert abs(accuracy[0] - accuracy[1]) < 0.05
