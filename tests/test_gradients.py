"""Gradient checks: float64 central differences against the analytic gradients of
both the C engine and the NumPy reference, over activation x loss x hidden depth x
output width x batch size (the distribution losses and label smoothing over a smaller
grid of the same kind)."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from conftest import (ACTIVATIONS, DISTRIBUTION_LOSSES, IMPLEMENTATIONS, LOSSES, make_problem,
                      relative_error)

EPS = 1e-6
TOL = 1e-6
N_IN, HIDDEN = 3, 4


def numeric_gradients(model, X, y):
    """Central differences of the mean loss with respect to every weight and bias."""
    Ws, bs = model.get_params()
    grads = []
    for arrays, index in [(Ws, l) for l in range(len(Ws))] + [(bs, l) for l in range(len(bs))]:
        p = arrays[index]
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + EPS
            model.set_params(Ws, bs)
            plus = model.evaluate(X, y)["loss"]
            p[i] = old - EPS
            model.set_params(Ws, bs)
            minus = model.evaluate(X, y)["loss"]
            p[i] = old
            g[i] = (plus - minus) / (2 * EPS)
        grads.append(g)
    model.set_params(Ws, bs)
    return grads


GRID = list(itertools.product(ACTIVATIONS, LOSSES, [0, 1, 2, 3], [1, 2, 3, 10], [1, 7, 64]))
# "smoothed_*": cross-entropy with label smoothing 0.1 on labels / probability targets
NEW_LOSSES = DISTRIBUTION_LOSSES + ["smoothed_labels", "smoothed_probabilities"]
GRID += list(itertools.product(ACTIVATIONS, NEW_LOSSES, [0, 2], [2, 10], [1, 7]))


def problem_and_model(impl, loss, sizes, n, act, seed, model_seed=None):
    """(X, y, model) of `loss` (a NEW_LOSSES name or "cross_entropy_probabilities"
    included), float64; the data from `seed`, the model from `model_seed` (or `seed`)."""
    smoothing = 0.1 if loss.startswith("smoothed") else 0.0
    dense = loss in ("smoothed_probabilities", "cross_entropy_probabilities")
    loss = "cross_entropy" if smoothing or dense else loss
    X, y = make_problem(loss, n, sizes[0], sizes[-1], seed=seed, dense_ce=dense)
    seed = seed if model_seed is None else model_seed
    # bias_init > 0 keeps ReLU pre-activations off the kink z = 0 (where a dead layer
    # below would otherwise put them exactly, and central differences are one-sided)
    model = impl(sizes, activation=act, loss=loss, label_smoothing=smoothing,
                 init="xavier_normal", bias_init=0.1, dtype="float64", seed=seed)
    return X, y, model


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("act,loss,depth,width,batch", GRID)
def test_gradient_matches_central_differences(name, act, loss, depth, width, batch):
    seed = zlib.crc32(repr((act, loss, depth, width, batch)).encode())
    X, y, model = problem_and_model(IMPLEMENTATIONS[name], loss,
                                    [N_IN] + [HIDDEN] * depth + [width], batch, act, seed)
    loss_value, dW, db = model.loss_and_grad(X, y)
    assert np.isfinite(loss_value)
    numeric = numeric_gradients(model, X, y)
    assert relative_error(dW + db, numeric) <= TOL


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("loss", LOSSES + ["cross_entropy_probabilities"] + NEW_LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_input_gradient_matches_central_differences(name, loss, act):
    X, y, model = problem_and_model(IMPLEMENTATIONS[name], loss, [N_IN, HIDDEN, HIDDEN, 3], 5,
                                    act, 7, model_seed=3)
    dense = np.ndim(y) == 2 and loss not in LOSSES
    _, dW, db, dX = model.loss_and_grad(X, y, return_input_grad=True)
    assert dX.shape == X.shape
    numeric = np.zeros_like(X)
    for i in np.ndindex(X.shape):
        Xp, Xm = X.copy(), X.copy()
        Xp[i] += EPS
        Xm[i] -= EPS
        numeric[i] = (model.evaluate(Xp, y)["loss"] - model.evaluate(Xm, y)["loss"]) / (2 * EPS)
    assert relative_error([dX], [numeric]) <= TOL
    if dense:  # probability targets: the parameter gradients too
        assert relative_error(dW + db, numeric_gradients(model, X, y)) <= TOL
