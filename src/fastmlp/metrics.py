"""Classification metrics: the confusion matrix and per-class precision, recall and F1
(scikit-learn's definitions, without needing scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: object, y_pred: object, labels: Sequence | None = None) -> np.ndarray:
    """``C[i, j]``: samples of class ``labels[i]`` predicted as ``labels[j]`` (int64).

    `labels` defaults to the sorted union of the labels in `y_true` and `y_pred`; labels
    not in `labels` are ignored, as in ``sklearn.metrics.confusion_matrix``."""
    t, p = _check_pair(y_true, y_pred)
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0 or len(np.unique(labels)) != len(labels):
        raise ValueError("labels must be a non-empty 1-D sequence of distinct values")
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    ti, pi = np.searchsorted(sorted_labels, t), np.searchsorted(sorted_labels, p)
    k = len(labels)
    known = (ti < k) & (pi < k)
    known[known] &= (sorted_labels[ti[known]] == t[known]) & (sorted_labels[pi[known]] == p[known])
    cm = np.zeros((k, k), dtype=np.int64)
    idx = order[ti[known]] * k + order[pi[known]]  # order[j]: sorted label j's row
    np.add.at(cm.reshape(-1), idx, 1)
    return cm


def classification_report(y_true: object, y_pred: object,
                          labels: Sequence | None = None) -> dict[str, dict[str, float]]:
    """Per class (keyed by ``str(label)``) and for the ``"macro avg"`` and ``"weighted
    avg"``: ``precision``, ``recall``, ``f1`` and ``support``; plus ``"accuracy"``. A
    class never predicted has precision 0 (scikit-learn's ``zero_division=0``)."""
    t, p = _check_pair(y_true, y_pred)
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    cm = confusion_matrix(t, p, labels)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    report = {str(label): {"precision": float(precision[i]), "recall": float(recall[i]),
                           "f1": float(f1[i]), "support": int(support[i])}
              for i, label in enumerate(labels)}
    total = support.sum()
    for name, w in (("macro avg", np.full(len(labels), 1.0 / len(labels))),
                    ("weighted avg", support / total if total else np.zeros(len(labels)))):
        report[name] = {"precision": float(w @ precision), "recall": float(w @ recall),
                        "f1": float(w @ f1), "support": int(total)}
    report["accuracy"] = float(tp.sum() / total) if total else 0.0  # type: ignore[assignment]
    return report


def format_report(report: dict, labels_width: int = 12) -> str:
    """:func:`classification_report`'s dict as an aligned text table."""
    w = max(labels_width, *(len(k) for k in report if k != "accuracy"))
    lines = [f"{'':>{w}}  precision  recall     f1  support"]
    for name, row in report.items():
        if name == "accuracy":
            continue
        if name == "macro avg":
            lines.append("")
        lines.append(f"{name:>{w}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                     f"{row['f1']:5.3f}  {row['support']:7d}")
    lines.append(f"{'accuracy':>{w}}  {report['accuracy']:9.3f}")
    return "\n".join(lines)


def format_confusion(cm: np.ndarray, labels: Sequence) -> str:
    """A confusion matrix as text: rows true classes, columns predicted ones."""
    names = [str(label) for label in labels]
    w = max(5, *(len(n) for n in names), len(str(int(cm.max(initial=0)))))
    corner = "true/pred"
    w = max(w, len(corner))
    lines = [corner.rjust(w) + " " + " ".join(n.rjust(w) for n in names)]
    for n, row in zip(names, cm):
        lines.append(f"{n:>{w}} " + " ".join(f"{int(v):>{w}d}" for v in row))
    return "\n".join(lines)


def _check_pair(y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D label arrays, got shapes {t.shape} "
                         f"and {p.shape}")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels, y_pred {len(p)}")
    return t, p
