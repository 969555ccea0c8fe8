"""fastmlp.metrics (against scikit-learn's) and fastmlp.callbacks."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import fastmlp
from fastmlp import metrics
from fastmlp.callbacks import CSVLogger


@pytest.mark.parametrize("seed", range(5))
def test_confusion_and_report_equal_scikit_learn(seed):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    classes = np.array([0, 3, 7, 9])
    t = rng.choice(classes, size=200)
    p = np.where(rng.random(200) < 0.6, t, rng.choice(classes[:3], size=200))
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p), skm.confusion_matrix(t, p))
    labels = [9, 0, 3, 7, 11]  # an order of its own and a class nobody has
    np.testing.assert_array_equal(metrics.confusion_matrix(t, p, labels),
                                  skm.confusion_matrix(t, p, labels=labels))
    ours = metrics.classification_report(t, p)
    theirs = skm.classification_report(t, p, output_dict=True, zero_division=0)
    for name in ["0", "3", "7", "9", "macro avg", "weighted avg"]:
        for key, their_key in (("precision", "precision"), ("recall", "recall"),
                               ("f1", "f1-score"), ("support", "support")):
            assert ours[name][key] == pytest.approx(theirs[name][their_key])
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"])


def test_metrics_take_string_labels_and_format():
    t = ["cat", "dog", "dog", "bird"]
    p = ["cat", "dog", "cat", "bird"]
    cm = metrics.confusion_matrix(t, p)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])  # bird, cat, dog
    text = metrics.format_confusion(cm, ["bird", "cat", "dog"])
    assert text.splitlines()[0].split() == ["true/pred", "bird", "cat", "dog"]
    report = metrics.format_report(metrics.classification_report(t, p))
    assert "dog" in report and "accuracy" in report and "0.750" in report


@pytest.mark.parametrize("bad", [([1, 2], [1]), ([[1]], [1]), ([1], [[1]])])
def test_metrics_reject_mismatched_input(bad):
    with pytest.raises(ValueError):
        metrics.confusion_matrix(*bad)
    with pytest.raises(ValueError, match="distinct"):
        metrics.confusion_matrix([1], [1], labels=[1, 1])


def test_csv_logger_writes_every_epoch_and_appends(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 4)), rng.integers(0, 3, 80)
    path = tmp_path / "log.csv"
    m = fastmlp.MLP([4, 8, 3], seed=0)
    rows_seen = []

    def count_rows(model, history):  # runs after the logger: the file has this epoch
        with open(path) as fh:
            rows_seen.append(len(list(csv.reader(fh))) - 1)

    history = m.fit(X, y, epochs=3, batch_size=16, callbacks=[CSVLogger(path), count_rows],
                    validation_data=(X, y))
    assert rows_seen == [1, 2, 3]
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["loss"]) for r in rows] == pytest.approx(history.loss)
    assert [float(r["val_accuracy"]) for r in rows] == pytest.approx(history.val_accuracy)
    assert float(rows[0]["grad_norm_1"]) == pytest.approx(history.grad_norm[0][1])
    m.fit(X, y, epochs=2, batch_size=16, callbacks=[CSVLogger(path, append=True)])
    with open(path) as fh:
        assert len(list(csv.reader(fh))) == 1 + 3 + 2
    assert not [p for p in tmp_path.iterdir() if p.name != "log.csv"]  # no temp files left


def test_csv_logger_fails_early_on_a_bad_directory(tmp_path):
    with pytest.raises(ValueError, match="cannot write"):
        CSVLogger(tmp_path / "missing" / "log.csv")
