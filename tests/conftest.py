"""Shared helpers: problems for every loss, and the two implementations under test."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import _engine

IMPLEMENTATIONS = {"engine": fastmlp.MLP, "reference": fastmlp.reference.MLP}
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
LOSSES = ["cross_entropy", "binary_cross_entropy", "mse", "hinge", "multi_hinge", "poisson"]
# losses between target distributions and the softmax (dense targets only, no curvature for
# the last two)
DISTRIBUTION_LOSSES = ["kl_divergence", "symmetric_kl", "bhattacharyya"]


def make_targets(loss: str, n: int, K: int, rng: np.random.Generator, dense_ce: bool = False):
    """Targets of the kind `loss` expects, for n samples and K outputs."""
    if loss in ("cross_entropy", "multi_hinge") and not dense_ce:
        return rng.integers(0, K, size=n)
    if loss == "cross_entropy":  # probability targets
        p = rng.random((n, K)) + 0.1
        return p / p.sum(axis=1, keepdims=True)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, K)).astype(np.float64)
    if loss == "hinge":
        return rng.choice([-1.0, 1.0], size=(n, K))
    if loss == "poisson":  # counts, zeros included (t log t at t = 0)
        return rng.poisson(1.5, size=(n, K)).astype(np.float64)
    if loss in DISTRIBUTION_LOSSES:  # distributions; zeros included except for symmetric_kl
        p = rng.random((n, K)) + (0.1 if loss == "symmetric_kl" else 0.0)
        if loss != "symmetric_kl" and K > 1:
            p[np.arange(n), rng.integers(0, K, size=n)] = 0
        return p / p.sum(axis=1, keepdims=True)
    return rng.normal(size=(n, K))  # mse


def make_problem(loss: str, n: int, n_in: int, K: int, seed: int = 0, dense_ce: bool = False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    return X, make_targets(loss, n, K, rng, dense_ce)


def relative_error(a, b) -> float:
    """||a - b|| / (||a|| + ||b||) over lists of arrays (0 when both are 0)."""
    a = np.concatenate([np.ravel(x) for x in a]).astype(np.float64)
    b = np.concatenate([np.ravel(x) for x in b]).astype(np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def assert_trained_alike(a, b):
    """Two trained (model, optimizer) pairs bitwise equal: the parameters, the last step's
    gradient and every array of the optimizer's state."""
    (m1, o1), (m2, o2) = a, b
    np.testing.assert_array_equal(m1.get_flat_params(), m2.get_flat_params())
    np.testing.assert_array_equal(m1._engine.grads, m2._engine.grads)
    states1, states2 = ([np.array(v) for s in o.state for v in s.values()
                         if isinstance(v, np.ndarray)] for o in (o1, o2))
    assert len(states1) == len(states2)
    for x, y in zip(states1, states2):  # (zip's strict= is Python 3.10+)
        np.testing.assert_array_equal(x, y)


def kernel_has_tiles(name: str) -> bool:
    """Whether kernel set `name` has register tiles, and so the panel layouts (the portable
    C path and the BLAS path have none)."""
    return name not in ("generic", "blas")


def _use_kernel(name: str):
    before = _engine.kernel()
    _engine.set_kernel(name)
    yield name
    _engine.set_kernel(before)


@pytest.fixture(params=_engine.available_kernels())
def kernel(request):
    """Each test using it runs on every kernel path this machine supports."""
    yield from _use_kernel(request.param)


@pytest.fixture(params=[k for k in _engine.available_kernels() if k != "blas"])
def chain_kernel(request):
    """Each test using it runs on every kernel path of this machine whose every output
    element is one multiply-add chain in k order, whatever the shapes (all but "blas": the
    BLAS blocks its sums by shape), for results that equal another computation's bitwise
    (sparse rows against dense ones)."""
    yield from _use_kernel(request.param)


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request):
    """Each test using it runs for the C engine and for the NumPy reference."""
    return IMPLEMENTATIONS[request.param]
