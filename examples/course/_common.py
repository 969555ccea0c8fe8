"""What every gallery script shares: its command line, the data sets and figure output.

Each script runs as ``python examples/course/<name>.py [--out DIR] [--quick]`` and writes
``DIR/<name>.png`` (default DIR: docs/figures/course/ of the repository). ``--quick`` runs
the same experiment at a tiny size (a smoke test: the figure then shows little).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; set before anything imports pyplot

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import fastmlp  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "figures" / "course"
DPI = 90


def parse_args(doc: str) -> argparse.Namespace:
    """--out and --quick, with the script's docstring as the description."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"directory for the PNG (default {DEFAULT_OUT})")
    ap.add_argument("--quick", action="store_true", help="a tiny run, to check the script")
    return ap.parse_args()


def save(fig: Figure, out: Path, script: str) -> Path:
    """Write `fig` as out/<script name>.png (atomically) and say where."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / (Path(script).stem + ".png")
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=DPI, format="png")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def figure(n_rows: int, n_cols: int, width: float = 4.0, height: float = 3.2):
    """A Figure and its grid of Axes (2-D array), without pyplot."""
    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def fashion(quick: bool, n_train: int = 10000, n_test: int = 2000):
    """The Fashion-MNIST subset embedded in fastmlp: (X_train, y_train, X_test, y_test),
    the first n_train / n_test samples (a tenth of that with quick)."""
    d = fastmlp.datasets.load_embedded_fashion_mnist()
    if quick:
        n_train, n_test = n_train // 10, n_test // 10
    return d.X_train[:n_train], d.y_train[:n_train], d.X_test[:n_test], d.y_test[:n_test]


def two_clouds(n: int, seed: int = 0, distance: float = 2.0):
    """Two Gaussian clouds in the plane (unit variance, centres `distance` apart along
    the diagonal): X (n, 2) and labels y in {0, 1}, n/2 each."""
    rng = np.random.default_rng(seed)
    half = n // 2
    centre = np.full(2, distance / (2 * np.sqrt(2)))
    X = np.vstack([rng.normal(size=(half, 2)) - centre, rng.normal(size=(n - half, 2)) + centre])
    y = np.repeat([0, 1], [half, n - half])
    return X, y


def accuracy_labels(model, X: np.ndarray) -> np.ndarray:
    """Predicted classes; a one-output model says class 1 when its score exceeds 0.5 (0/1
    MSE targets) or 0 (+-1 hinge targets). (Computed here until the library has an
    accuracy for MSE.)"""
    out = model.predict(X)
    if out.shape[1] > 1:
        return out.argmax(axis=1)
    return (out[:, 0] > (0.0 if model.loss == "hinge" else 0.5)).astype(int)


def accuracy(model, X: np.ndarray, y: np.ndarray) -> float:
    """Share of correct classes (see accuracy_labels)."""
    return float(np.mean(accuracy_labels(model, X) == y))
