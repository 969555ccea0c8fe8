#!/usr/bin/env python
"""Sparse input: fastmlp on a TF-IDF-like CSR matrix against fastmlp on the dense array and
scikit-learn's MLPClassifier on the same CSR matrix, one thread each.

The data (fixed seed): documents of 10 topics over a 50,000-word vocabulary. Each document
draws 108 tokens, 95% from a Zipf background distribution and 5% from its topic's 1,000
words; counts become TF-IDF (``1 + log tf`` times scikit-learn's smooth idf), rows
L2-normalized: about 100 non-zeros per row. 20,000 training rows and 5,000 test rows,
float32.

All three fit ``MLPClassifier(hidden_layer_sizes=(100,), max_iter=EPOCHS, tol=0,
random_state=0)`` (Adam, batch 200, exactly EPOCHS epochs). fastmlp runs with
``threads=1``; scikit-learn's BLAS is limited to one thread with threadpoolctl.

The dense array of all 20,000 rows takes 4 GB in float32, too much for a machine shared by
several people: fastmlp-dense trains on the first ``--dense-rows`` rows (default 4,000)
for the same epochs, and its time is scaled by 20,000 / dense-rows (the work per epoch is
linear in the rows; scaled figures are marked). Its accuracy is that of the subset model;
on all rows fastmlp-dense gives bit for bit the model fastmlp-sparse gives
(tests/test_sparse_input.py).

Fits are interleaved (``--repeats`` rounds of the three), and the table gives min and
median wall seconds, the median CPU seconds of the process (one thread each: on a busy
machine the wall time includes the time the fit waited for a core, the CPU time does not)
and the test accuracy; the header gives the CPU and the load
(``/proc/loadavg``) before and after.

Run from the repository root::

    python benchmarks/sparse.py                 # 3 repeats, 5 epochs
    python benchmarks/sparse.py --repeats 1 --epochs 2
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import scipy.sparse as sp

from sklearn import neural_network
from threadpoolctl import threadpool_limits

import fastmlp
from sklearn_speed import cpu_model, load, timed_fit  # (benchmarks/ is the script's directory)

N_TRAIN, N_TEST, VOCAB, TOPICS = 20_000, 5_000, 50_000, 10
TOKENS, TOPIC_WORDS, TOPIC_SHARE = 108, 1000, 0.05


def tfidf_problem(seed: int = 0) -> tuple:
    """(X_train, y_train, X_test, y_test): CSR float32 TF-IDF rows and topic labels."""
    rng = np.random.default_rng(seed)
    background = 1.0 / (np.arange(VOCAB) + 10.0)
    background /= background.sum()
    topic_words = rng.choice(VOCAB, size=(TOPICS, TOPIC_WORDS), replace=False)
    n = N_TRAIN + N_TEST
    y = rng.integers(0, TOPICS, size=n)
    from_topic = rng.random((n, TOKENS)) < TOPIC_SHARE
    words = rng.choice(VOCAB, size=(n, TOKENS), p=background)
    picks = topic_words[y[:, None], rng.integers(0, TOPIC_WORDS, size=(n, TOKENS))]
    words = np.where(from_topic, picks, words)
    rows = np.repeat(np.arange(n), TOKENS)
    counts = sp.coo_matrix((np.ones(n * TOKENS), (rows, words.ravel())),
                           shape=(n, VOCAB)).tocsr()  # repeated words summed
    counts.data = 1.0 + np.log(counts.data)
    df = np.bincount(counts.indices[: counts.indptr[N_TRAIN]], minlength=VOCAB)
    idf = np.log((1.0 + N_TRAIN) / (1.0 + df)) + 1.0
    X = counts.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
    X = X.astype(np.float32).tocsr()
    X.sort_indices()
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def accuracy(est, X, y, dense: bool) -> float:
    """Test accuracy (the dense model gets its test rows dense, 500 at a time)."""
    if not dense:
        return float(est.score(X, y))
    pred = np.concatenate([est.predict(X[i : i + 500].toarray()) for i in range(0, len(y), 500)])
    return float(np.mean(pred == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dense-rows", type=int, default=4_000)
    args = parser.parse_args()

    X, y, X_test, y_test = tfidf_problem()
    rows = min(args.dense_rows, N_TRAIN)
    X_dense = X[:rows].toarray()
    scale = N_TRAIN / rows
    params = {"hidden_layer_sizes": (100,), "max_iter": args.epochs, "tol": 0.0,
              "n_iter_no_change": args.epochs + 1, "random_state": 0}
    contenders = {
        "fastmlp sparse": (lambda: fastmlp.MLPClassifier(**params, threads=1), X, y, 1.0),
        f"fastmlp dense ({rows} rows, x{scale:g})":
            (lambda: fastmlp.MLPClassifier(**params, threads=1), X_dense, y[:rows], scale),
        "scikit-learn sparse": (lambda: neural_network.MLPClassifier(**params), X, y, 1.0),
    }
    print(f"CPU: {cpu_model()}; fastmlp kernel {fastmlp._engine.kernel()}")
    print(f"data: {N_TRAIN} x {VOCAB} train, {N_TEST} test, "
          f"{X.nnz / N_TRAIN:.1f} non-zeros per row; hidden 100, {args.epochs} epochs, "
          "Adam, batch 200, one thread each")
    print(f"load before: {load()}", flush=True)
    times = {name: [] for name in contenders}
    cpu_times = {name: [] for name in contenders}
    scores = {}
    with threadpool_limits(limits=1):
        for _ in range(args.repeats):
            for name, (make, Xf, yf, factor) in contenders.items():
                seconds, cpu_seconds, est = timed_fit(make, Xf, yf)
                times[name].append(seconds * factor)
                cpu_times[name].append(cpu_seconds * factor)
                scores[name] = accuracy(est, X_test, y_test, dense=isinstance(Xf, np.ndarray))
    print(f"load after: {load()}")
    print()
    print("| contender | fit s min | fit s median | CPU s median | test accuracy |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {min(t):.2f} | {statistics.median(t):.2f} | "
              f"{statistics.median(cpu_times[name]):.2f} | {scores[name]:.4f} |")


if __name__ == "__main__":
    main()
