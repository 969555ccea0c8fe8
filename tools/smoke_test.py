"""Smoke test of an installed fastmlp wheel (no compiler, no test dependencies needed):
trains a small model on the embedded Fashion-MNIST subset, checks that it learned, that a
saved model predicts the same, and that the engine's kernels and threads work. Run by
tools/check_wheel.sh and by cibuildwheel (pyproject.toml [tool.cibuildwheel])."""

import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastmlp


def main() -> int:
    data = fastmlp.datasets.load_embedded_fashion_mnist()
    X, y = data.X_train[:2000], data.y_train[:2000]
    model = fastmlp.MLP([X.shape[1], 64, 10], seed=0)
    model.fit(X, y, epochs=3, batch_size=64, lr=0.1)
    acc = model.score(data.X_test, data.y_test)
    assert acc > 0.6, f"accuracy {acc:.3f} after 3 epochs: the engine does not learn"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.fastmlp")
        model.save(path)
        again = fastmlp.load(path)
    expected = model.predict(data.X_test)
    assert np.array_equal(again.predict(data.X_test), expected)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for out in pool.map(model.predict, [data.X_test] * 8):
            assert np.array_equal(out, expected)
    kernels = fastmlp._engine.available_kernels()
    print(f"fastmlp {fastmlp.__version__} OK: test accuracy {acc:.3f}, kernel "
          f"{fastmlp._engine.kernel()} of {kernels}, OpenMP {fastmlp.have_openmp()}, "
          f"{fastmlp.default_threads()} threads, Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
