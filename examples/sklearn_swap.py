"""Typical scikit-learn code, run twice: once with scikit-learn's MLPClassifier and once
with fastmlp's, by swapping the import. Prints accuracy and fit time of each on the
Fashion-MNIST subset embedded in fastmlp (or the full set with --data).

    python examples/sklearn_swap.py [--data DIR] [--samples N] [--max-iter 20]
"""

from __future__ import annotations

import argparse
import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp


def typical_sklearn_code(MLPClassifier, X_train, y_train, X_test, y_test, max_iter):
    """What people write today; only the class passed in differs."""
    clf = make_pipeline(StandardScaler(),
                        MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=max_iter,
                                      early_stopping=True, random_state=0))
    t = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - t
    cv = cross_val_score(clf, X_train[:2000], y_train[:2000], cv=3).mean()
    return clf.score(X_test, y_test), seconds, cv


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="Fashion-MNIST directory")
    parser.add_argument("--samples", type=int, default=None, help="training samples used")
    parser.add_argument("--max-iter", type=int, default=20)
    args = parser.parse_args(argv)
    d = fastmlp.datasets.load_fashion_mnist(args.data, dtype="float64")
    X_train, y_train = d.X_train[: args.samples], d.y_train[: args.samples]
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    print(f"{len(X_train)} training, {len(d.X_test)} test samples; "
          f"256-128 ReLU, Adam, early stopping, max_iter={args.max_iter}")
    print("| import | test accuracy | fit time | 3-fold CV accuracy (2,000 samples) |")
    print("|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, cls in [("sklearn.neural_network", SklearnMLP),
                          ("fastmlp", fastmlp.MLPClassifier)]:
            acc, seconds, cv = typical_sklearn_code(cls, X_train, y_train, d.X_test, d.y_test,
                                                    args.max_iter)
            print(f"| `from {name} import MLPClassifier` | {acc:.4f} | {seconds:.1f} s "
                  f"| {cv:.4f} |", flush=True)


if __name__ == "__main__":
    main()
