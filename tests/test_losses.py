"""Loss values against hand-computed cases and PyTorch's documented examples,
stability at extreme logits, and the output activations of predict."""

from __future__ import annotations

import math

import numpy as np
import pytest


def single_layer(impl, loss, logits_per_sample, K):
    """A 1-layer net with identity weights whose logits equal the inputs."""
    model = impl([K, K], loss=loss, dtype="float64", seed=0)
    model.set_params([np.eye(K)], [np.zeros(K)])
    return model, np.asarray(logits_per_sample, dtype=np.float64)


def test_cross_entropy_by_hand(impl):
    model, Z = single_layer(impl, "cross_entropy", [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], 3)
    y = np.array([2, 0])
    expected = np.mean([math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3, math.log(3)])
    assert model.evaluate(Z, y)["loss"] == pytest.approx(expected, rel=1e-14)
    p = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(Z), p, rtol=1e-14)
    _, dW, db = model.loss_and_grad(Z, y)
    np.testing.assert_allclose(db[0], ((p - np.eye(3)[y]) / 2).sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("K", [64, 65, 300])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_delta_with_many_classes(impl, K, soft):
    """The engine keeps exp(z - max) for up to 64 classes and recomputes it above: both
    give the softmax delta (p - t) / B, for labels and for probability targets."""
    rng = np.random.default_rng(K)
    model, Z = single_layer(impl, "cross_entropy", rng.normal(scale=3, size=(5, K)), K)
    p = np.exp(Z - Z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if soft:
        t = rng.dirichlet(np.ones(K), size=5)
        _, _, db = model.loss_and_grad(Z, t)
    else:
        y = rng.integers(0, K, size=5)
        t = np.eye(K)[y]
        _, _, db = model.loss_and_grad(Z, y)
    np.testing.assert_allclose(db[0], ((p - t) / 5).sum(axis=0), rtol=1e-11, atol=1e-16)


def test_multi_margin_matches_pytorch_doc_example(impl):
    # torch.nn.MultiMarginLoss docs: x = [[0.1, 0.2, 0.4, 0.8]], y = [3] -> 0.3250
    model, Z = single_layer(impl, "multi_hinge", [[0.1, 0.2, 0.4, 0.8]], 4)
    expected = ((1 - 0.8 + 0.1) + (1 - 0.8 + 0.2) + (1 - 0.8 + 0.4)) / 4
    assert model.evaluate(Z, [3])["loss"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.3250, abs=1e-4)


def test_binary_cross_entropy_with_logits_by_hand(impl):
    model, Z = single_layer(impl, "binary_cross_entropy", [[0.5, -2.0], [3.0, 0.0]], 2)
    t = np.array([[1.0, 0.0], [0.0, 1.0]])
    s = 1 / (1 + np.exp(-Z))
    expected = np.mean(-(t * np.log(s) + (1 - t) * np.log(1 - s)))
    assert model.evaluate(Z, t)["loss"] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(model.predict(Z), s, rtol=1e-14)
    assert model.evaluate(Z, t)["accuracy"] == pytest.approx(0.5)  # 0.5>0 ok, -2<0 ok, 3>0 wrong, 0 -> 0 wrong


def test_mse_and_hinge_by_hand(impl):
    model, Z = single_layer(impl, "mse", [[1.0, 2.0], [0.0, -1.0]], 2)
    t = np.array([[0.0, 2.0], [1.0, 1.0]])
    assert model.evaluate(Z, t)["loss"] == pytest.approx((1 + 0 + 1 + 4) / 4)
    model, Z = single_layer(impl, "hinge", [[0.5, -2.0], [3.0, 0.0]], 2)
    t = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert model.evaluate(Z, t)["loss"] == pytest.approx((0.5 + 0 + 4 + 1) / 4)
    assert model.evaluate(Z, t)["accuracy"] == pytest.approx(0.5)


def test_poisson_is_scikit_learns_half_deviance(impl):
    """Half Poisson deviance of mu = exp(z), as scikit-learn's MLPRegressor computes it
    (xlogy(t, t / mu) - t + mu), averaged over samples and outputs; delta (mu - t) / (n K);
    predict gives mu; negative targets are rejected."""
    from scipy.special import xlogy

    model, Z = single_layer(impl, "poisson", [[0.5, -2.0], [3.0, 0.0]], 2)
    t = np.array([[2.0, 0.0], [0.0, 1.0]])
    mu = np.exp(Z)
    expected = np.mean(xlogy(t, t / mu) - t + mu)
    assert model.evaluate(Z, t)["loss"] == pytest.approx(expected, rel=1e-13)
    assert model.evaluate(Z, t)["accuracy"] is None
    np.testing.assert_allclose(model.predict(Z), mu, rtol=1e-14)
    _, _, db = model.loss_and_grad(Z, t)
    np.testing.assert_allclose(db[0], ((mu - t) / 4).sum(axis=0), rtol=1e-13)
    perfect = impl([1, 1], loss="poisson", dtype="float64", seed=0)
    perfect.set_params([np.zeros((1, 1))], [np.log([3.0])])
    assert perfect.evaluate(np.zeros((2, 1)), [[3.0], [3.0]])["loss"] == pytest.approx(0, abs=1e-15)
    with pytest.raises(ValueError, match="poisson targets must be >= 0"):
        model.evaluate(Z, -t)
    with pytest.raises(ValueError, match="poisson has no class labels"):
        model.predict_labels(Z)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "multi_hinge", "hinge"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_stay_finite(impl, loss, dtype):
    model = impl([2, 2], loss=loss, dtype=dtype, seed=0)
    model.set_params([np.eye(2)], [np.zeros(2)])
    Z = np.array([[1e4, -1e4], [-1e4, 1e4]])
    y = {"cross_entropy": [1, 1], "multi_hinge": [1, 1]}.get(loss, [[0.0, 1.0], [1.0, 0.0]])
    if loss == "hinge":
        y = [[-1.0, 1.0], [1.0, -1.0]]
    value, dW, db = model.loss_and_grad(Z, y)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in dW + db)
    assert np.isfinite(model.predict(Z)).all()
    if loss == "cross_entropy":  # sample 0 is wrong by 2e4, sample 1 right
        assert value == pytest.approx(1e4, rel=1e-6)


def test_predict_labels(impl):
    model, Z = single_layer(impl, "cross_entropy", [[1.0, 3.0, 2.0]], 3)
    assert model.predict_labels(Z).tolist() == [1]
    model, Z = single_layer(impl, "hinge", [[1.0, -3.0]], 2)
    assert model.predict_labels(Z).tolist() == [[1, -1]]
    model, Z = single_layer(impl, "binary_cross_entropy", [[1.0, -3.0]], 2)
    assert model.predict_labels(Z).tolist() == [[1, 0]]
    assert model.score(Z, [[1.0, 1.0]]) == pytest.approx(0.5)
