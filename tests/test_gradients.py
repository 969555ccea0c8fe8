"""Gradient checks: float64 central differences against the analytic gradients of
both the C engine and the NumPy reference, over activation x loss x hidden depth x
output width x batch size."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from conftest import ACTIVATIONS, IMPLEMENTATIONS, LOSSES, make_problem, relative_error

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


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("act,loss,depth,width,batch", GRID)
def test_gradient_matches_central_differences(name, act, loss, depth, width, batch):
    # bias_init > 0 keeps ReLU pre-activations off the kink z = 0 (where a dead layer
    # below would otherwise put them exactly, and central differences are one-sided)
    seed = zlib.crc32(repr((act, loss, depth, width, batch)).encode())
    X, y = make_problem(loss, batch, N_IN, width, seed=seed)
    model = IMPLEMENTATIONS[name](
        [N_IN] + [HIDDEN] * depth + [width], activation=act, loss=loss,
        init="xavier_normal", bias_init=0.1, dtype="float64", seed=seed,
    )
    loss_value, dW, db = model.loss_and_grad(X, y)
    assert np.isfinite(loss_value)
    numeric = numeric_gradients(model, X, y)
    assert relative_error(dW + db, numeric) <= TOL


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("loss", LOSSES + ["cross_entropy_probabilities"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_input_gradient_matches_central_differences(name, loss, act):
    dense = loss == "cross_entropy_probabilities"
    loss = "cross_entropy" if dense else loss
    X, y = make_problem(loss, 5, N_IN, 3, seed=7, dense_ce=dense)
    model = IMPLEMENTATIONS[name](
        [N_IN, HIDDEN, HIDDEN, 3], activation=act, loss=loss, init="xavier_normal",
        bias_init=0.1, dtype="float64", seed=3,
    )
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
