"""pytest-benchmark timings of one training epoch (and of prediction) for fastmlp.

Network 784-512-256-10 (ReLU, softmax cross-entropy), float32, minibatch 128, plain SGD
(lr 0.01, reshuffled every epoch) -- SGD is the only optimizer fastmlp has today.
Data: 60,000 synthetic samples (standard-normal X, uniform labels 0..9, fixed seed), the
size of the Fashion-MNIST training set, so one epoch is 6 * 535,040 * 60,000 = 192.6 GFLOP.

Contenders: the C/OpenMP engine with its default thread count (all cores), the engine with
``threads=1``, and the pure-NumPy reference (``fastmlp.reference``). Prediction is timed on
10,000 samples.

Run from the repository root (the path is needed: pyproject's testpaths is ``tests``)::

    python -m pytest benchmarks/ --benchmark-only

One epoch takes seconds, so every benchmark uses ``benchmark.pedantic`` with a few rounds
(one warm-up round, then ``ROUNDS`` timed rounds); the whole file takes about two minutes
on a 2-core machine. ``benchmarks/peers.py`` compares against PyTorch and scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.reference

SIZES = [784, 512, 256, 10]
N_TRAIN = 60_000
N_PREDICT = 10_000
BATCH = 128
LR = 0.01
SEED = 0
ROUNDS = 5  # timed epochs per contender (median/mean reported by pytest-benchmark)

N_WEIGHTS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # 535,040
EPOCH_GFLOP = 6 * N_WEIGHTS * N_TRAIN / 1e9  # 192.6


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((N_TRAIN, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], size=N_TRAIN, dtype=np.int64)
    return X, y


def _fastmlp(threads=None):
    return fastmlp.MLP(SIZES, activation="relu", loss="cross_entropy", init="he_normal",
                       dtype="float32", seed=SEED, threads=threads)


def _reference():
    return fastmlp.reference.MLP(SIZES, activation="relu", loss="cross_entropy",
                                 dtype="float32", seed=SEED)


def _bench_epoch(benchmark, model, X, y):
    def one_epoch():
        return model.fit(X, y, epochs=1, batch_size=BATCH, lr=LR, shuffle=True)

    benchmark.extra_info.update(
        epoch_gflop=EPOCH_GFLOP, batch_size=BATCH, samples=len(X), optimizer="sgd",
        threads=getattr(model, "threads", None),
    )
    hist = benchmark.pedantic(one_epoch, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert np.isfinite(hist["loss"][-1])
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["gflops_per_s_median"] = EPOCH_GFLOP / benchmark.stats.stats.median


@pytest.mark.benchmark(group="epoch 784-512-256-10 f32 b128 sgd (60k samples)")
def test_epoch_fastmlp(benchmark, data):
    _bench_epoch(benchmark, _fastmlp(), *data)


@pytest.mark.benchmark(group="epoch 784-512-256-10 f32 b128 sgd (60k samples)")
def test_epoch_fastmlp_1thread(benchmark, data):
    model = _fastmlp(threads=1)
    assert model.threads == 1
    _bench_epoch(benchmark, model, *data)


@pytest.mark.benchmark(group="epoch 784-512-256-10 f32 b128 sgd (60k samples)")
def test_epoch_reference(benchmark, data):
    _bench_epoch(benchmark, _reference(), *data)


def _bench_predict(benchmark, model, X):
    P = benchmark.pedantic(model.predict, args=(X,), rounds=10, iterations=1, warmup_rounds=1)
    assert P.shape == (len(X), SIZES[-1])


@pytest.mark.benchmark(group="predict 784-512-256-10 f32 (10k samples)")
def test_predict_fastmlp(benchmark, data):
    _bench_predict(benchmark, _fastmlp(), data[0][:N_PREDICT])


@pytest.mark.benchmark(group="predict 784-512-256-10 f32 (10k samples)")
def test_predict_fastmlp_1thread(benchmark, data):
    _bench_predict(benchmark, _fastmlp(threads=1), data[0][:N_PREDICT])


@pytest.mark.benchmark(group="predict 784-512-256-10 f32 (10k samples)")
def test_predict_reference(benchmark, data):
    _bench_predict(benchmark, _reference(), data[0][:N_PREDICT])
