#!/usr/bin/env python
"""Fit time of fastmlp.MLPClassifier / MLPRegressor against scikit-learn's, on
scikit-learn-size data, one thread each.

Both estimators get the same hyper-parameters (``hidden_layer_sizes=(100,)``,
``max_iter=200``, ``random_state=0``, everything else at scikit-learn's defaults: Adam,
batch 200, tol 1e-4, 10 epochs without improvement stop) and the same standardized data
in the same dtype (scikit-learn computes in the input's dtype; fastmlp gets
``dtype=`` that dtype). scikit-learn's BLAS is limited to one thread with threadpoolctl,
fastmlp runs with ``threads=1``. Data sets: iris, breast_cancer, digits,
make_classification(20000, 50) and make_regression(20000, 50), each split 75/25
(``random_state=0``).

Each fit is timed ``--repeats`` times, the two estimators interleaved (so machine noise
hits both alike); the table gives the min and median fit seconds of each, the ratio
scikit-learn / fastmlp of the medians (above 1: fastmlp is faster), the epochs each ran
(``n_iter_``: the tolerance stop can end them at different epochs), the ratio per epoch,
and the test score of each (accuracy, or R^2 for the regression). It also gives the CPU
time of each fit (``time.process_time``; both run on one thread, so on an idle machine it
is the wall time) and the ratio of its medians: on a shared machine whose cores are busy
with other work, the wall time mostly measures the wait for a core, the CPU time much
less so. The header gives the CPU and the load (``/proc/loadavg``) before and after.

Run from the repository root::

    python benchmarks/sklearn_speed.py                     # 5 repeats, both dtypes
    python benchmarks/sklearn_speed.py --repeats 3 --dtypes float32 --only digits
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


from sklearn import datasets, neural_network
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import fastmlp

DATASETS = {
    "iris": lambda: datasets.load_iris(return_X_y=True),
    "breast_cancer": lambda: datasets.load_breast_cancer(return_X_y=True),
    "digits": lambda: datasets.load_digits(return_X_y=True),
    "classification_20000x50": lambda: datasets.make_classification(
        n_samples=20000, n_features=50, n_informative=20, n_classes=4, random_state=0),
    "regression_20000x50": lambda: datasets.make_regression(
        n_samples=20000, n_features=50, n_informative=20, noise=10.0, random_state=0),
}
PARAMS = {"hidden_layer_sizes": (100,), "max_iter": 200, "random_state": 0}


def prepared(name: str, dtype: str) -> tuple:
    """Standardized train/test split of a data set in `dtype` (regression targets scaled
    to unit variance); is it a classification?"""
    X, y = DATASETS[name]()
    classify = not name.startswith("regression")
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y if classify else None)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = (scaler.transform(a).astype(dtype) for a in (X_tr, X_te))
    if not classify:
        scale = y_tr.std()
        y_tr, y_te = (y_tr / scale).astype(dtype), (y_te / scale).astype(dtype)
    return X_tr, X_te, y_tr, y_te, classify


def timed_fit(make, X, y) -> tuple[float, float, object]:
    """Wall and CPU seconds of one fit of a new estimator, and the estimator."""
    est = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t, c = time.perf_counter(), time.process_time()
        est.fit(X, y)
        return time.perf_counter() - t, time.process_time() - c, est


def run(name: str, dtype: str, repeats: int) -> dict:
    X_tr, X_te, y_tr, y_te, classify = prepared(name, dtype)
    kind = "MLPClassifier" if classify else "MLPRegressor"
    makers = {
        "sklearn": lambda: getattr(neural_network, kind)(**PARAMS),
        "fastmlp": lambda: getattr(fastmlp, kind)(**PARAMS, threads=1, dtype=dtype),
    }
    times = {k: [] for k in makers}
    cpu = {k: [] for k in makers}
    fitted = {}
    with threadpool_limits(limits=1):
        for _ in range(repeats):
            for key, make in makers.items():
                seconds, cpu_seconds, fitted[key] = timed_fit(make, X_tr, y_tr)
                times[key].append(seconds)
                cpu[key].append(cpu_seconds)
    row = {"data": name, "dtype": dtype, "n": len(X_tr)}
    for key, est in fitted.items():
        row[key] = {"min": min(times[key]), "median": statistics.median(times[key]),
                    "cpu_median": statistics.median(cpu[key]),
                    "epochs": est.n_iter_, "score": est.score(X_te, y_te)}
    sk, fm = row["sklearn"], row["fastmlp"]
    row["ratio"] = sk["median"] / fm["median"]
    row["cpu_ratio"] = sk["cpu_median"] / fm["cpu_median"]
    row["ratio_per_epoch"] = (sk["median"] / sk["epochs"]) / (fm["median"] / fm["epochs"])
    return row


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--only", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; load average before: {load()}")
    print("one thread each; seconds per fit (min / median of "
          f"{args.repeats}, interleaved); ratio = scikit-learn / fastmlp (median)\n")
    print("| data | dtype | n train | scikit-learn s (min / med) | fastmlp s (min / med) | "
          "ratio | epochs sk / fm | ratio per epoch | score sk / fm | CPU s sk / fm (med) | "
          "CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        for name in args.only:
            r = run(name, dtype, args.repeats)
            sk, fm = r["sklearn"], r["fastmlp"]
            print(f"| {name} | {dtype} | {r['n']} | {sk['min']:.3f} / {sk['median']:.3f} | "
                  f"{fm['min']:.3f} / {fm['median']:.3f} | **{r['ratio']:.2f}x** | "
                  f"{sk['epochs']} / {fm['epochs']} | {r['ratio_per_epoch']:.2f}x | "
                  f"{sk['score']:.4f} / {fm['score']:.4f} | "
                  f"{sk['cpu_median']:.3f} / {fm['cpu_median']:.3f} | {r['cpu_ratio']:.2f}x |",
                  flush=True)
    print(f"\nload average after: {load()}")


if __name__ == "__main__":
    main()
