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


@pytest.mark.parametrize("K, B", [(3, 700), (10, 250), (64, 40), (65, 9)])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_over_blocks_of_rows(impl, kernel, K, B, soft, dtype, smoothing):
    """The engine takes a batch's softmax exponentials 1024 at a time (up to 64 classes):
    batches over several such blocks, with a short last one, give every row its own
    delta (dW = Z^T delta mixes the rows) and the mean loss, on every kernel path, with
    and without label smoothing (a label's delta row is every class's entry, then the
    label's)."""
    rng = np.random.default_rng(K * B)
    Z = rng.normal(scale=3, size=(B, K)).astype(dtype)
    model = impl([K, K], loss="cross_entropy", dtype=dtype, seed=0, label_smoothing=smoothing)
    model.set_params([np.eye(K, dtype=dtype)], [np.zeros(K, dtype=dtype)])
    z = Z.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if soft:
        t = rng.dirichlet(np.ones(K), size=B)
        target = t.astype(dtype)
        t = target.astype(np.float64)
    else:
        target = rng.integers(0, K, size=B)
        t = np.eye(K)[target]
    t = (1 - smoothing) * t + smoothing / K
    loss, dW, db = model.loss_and_grad(Z, target)
    log_p = np.log(p)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    assert loss == pytest.approx(-(t * log_p).sum(axis=1).mean(), rel=rtol)
    np.testing.assert_allclose(dW[0], z.T @ ((p - t) / B), rtol=rtol, atol=rtol / B)
    np.testing.assert_allclose(db[0], ((p - t) / B).sum(axis=0), rtol=rtol, atol=rtol / B)


@pytest.mark.parametrize("K, B", [(3, 700), (10, 250), (1024, 3), (1025, 3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_outputs_over_blocks_of_rows(impl, K, B, dtype):
    """predict's softmax takes 1,024 exponentials at a time (wider rows one at a time):
    every row's probabilities are those of the row predicted alone (bitwise), over
    several blocks with a short last one, and match the softmax of the logits."""
    rng = np.random.default_rng(K + B)
    Z = rng.normal(scale=3, size=(B, K)).astype(dtype)
    model = impl([K, K], loss="cross_entropy", dtype=dtype, seed=0)
    model.set_params([np.eye(K, dtype=dtype)], [np.zeros(K, dtype=dtype)])
    P = model.predict(Z)
    for i in sorted({0, 1, B // 2, B - 2, B - 1}):
        np.testing.assert_array_equal(model.predict(Z[i:i + 1])[0], P[i])
    z = Z.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(P, p, rtol=1e-12 if dtype == "float64" else 1e-5, atol=1e-30)


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
    # 0.5>0 ok, -2<0 ok, 3>0 wrong, 0 -> 0 wrong
    assert model.evaluate(Z, t)["accuracy"] == pytest.approx(0.5)


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


# -- distribution losses, label smoothing, mse accuracy ------------------------------------------
def softmax(Z):
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


DISTRIBUTION_CASES = {  # loss -> (targets, per-sample formula of t and q)
    "kl_divergence": lambda t, q: np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1) / q),
                                                  0), axis=1),
    "symmetric_kl": lambda t, q: np.sum(t * np.log(t / q) + q * np.log(q / t), axis=1),
    "bhattacharyya": lambda t, q: -np.log(np.sum(np.sqrt(t * q), axis=1)),
}


@pytest.mark.parametrize("loss", list(DISTRIBUTION_CASES))
def test_distribution_losses_by_hand(impl, loss):
    """Loss = mean over samples of the per-sample formula; predict is the softmax;
    accuracy compares the largest logit with the target row's largest entry."""
    model, Z = single_layer(impl, loss, [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], 3)
    t = np.array([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    if loss != "symmetric_kl":
        t = np.array([[0.0, 0.4, 0.6], [0.1, 0.9, 0.0]])  # zeros: 0 log 0 = 0, sqrt(0) = 0
    q = softmax(Z)
    result = model.evaluate(Z, t)
    assert result["loss"] == pytest.approx(DISTRIBUTION_CASES[loss](t, q).mean(), rel=1e-13)
    assert result["accuracy"] == pytest.approx(0.5)  # sample 0: 2 = 2; sample 1: 0 != 1
    np.testing.assert_allclose(model.predict(Z), q, rtol=1e-14)
    assert model.predict_labels(Z).tolist() == [2, 0]
    assert model.score(Z, t) == pytest.approx(0.5)


@pytest.mark.parametrize("loss", list(DISTRIBUTION_CASES))
def test_distribution_losses_zero_at_a_perfect_fit(impl, loss):
    """Each is a divergence: 0 (with a zero gradient) when the softmax equals the target."""
    Z = np.log(np.array([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]]))
    model, Z = single_layer(impl, loss, Z, 3)
    value, dW, db = model.loss_and_grad(Z, softmax(Z))
    assert abs(value) < 1e-14
    assert max(np.abs(g).max() for g in dW + db) < 1e-14


@pytest.mark.parametrize("loss", list(DISTRIBUTION_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_distribution_losses_extreme_logits_stay_finite(impl, loss, dtype):
    model = impl([2, 2], loss=loss, dtype=dtype, seed=0)
    model.set_params([np.eye(2)], [np.zeros(2)])
    Z = np.array([[1e4, -1e4], [-1e4, 1e4]])
    t = np.array([[0.5, 0.5], [0.25, 0.75]])
    value, dW, db = model.loss_and_grad(Z, t)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in dW + db)
    if loss == "bhattacharyya":  # -log(sqrt(0.5 * 1)) and -log(sqrt(0.75 * 1)), exactly
        assert value == pytest.approx(-(np.log(np.sqrt(0.5)) + np.log(np.sqrt(0.75))) / 2,
                                      rel=1e-6)


@pytest.mark.parametrize("loss,y,message", [
    ("kl_divergence", [[0.5, 1.2]], r"\[0, 1\]"),
    ("kl_divergence", [[-0.1, 1.1]], r"\[0, 1\]"),
    ("symmetric_kl", [[0.0, 1.0]], "infinite where a target is 0"),
    ("symmetric_kl", [[0.3, 0.3]], "sum to 1"),
    ("bhattacharyya", [[0.5, 0.6]], "sum to 1"),
    ("bhattacharyya", [1], "shape"),
])
def test_distribution_losses_reject_bad_targets(impl, loss, y, message):
    model = impl([2, 2], loss=loss, seed=0)
    with pytest.raises(ValueError, match=message):
        model.evaluate(np.zeros((1, 2)), y)


def test_distribution_losses_refuse_curvature_but_kl_has_it(impl):
    """symmetric_kl and bhattacharyya have no Hessian product (clear error); kl_divergence
    has cross-entropy's, checked against central differences of the gradient."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 3))
    t = rng.dirichlet(np.ones(4), size=6)
    for loss in ("symmetric_kl", "bhattacharyya"):
        model = impl([3, 5, 4], loss=loss, dtype="float64", seed=0)
        with pytest.raises(ValueError, match=f"not implemented for {loss}"):
            model.hvp(X, t, np.ones(model.get_flat_params().size))
    model = impl([3, 5, 4], activation="tanh", loss="kl_divergence", dtype="float64", seed=0)
    assert_hvp_matches_differences(model, X, t, rng)


def assert_hvp_matches_differences(model, X, y, rng, eps=1e-6):
    """H v against central differences of the gradient along v."""
    flat = model.get_flat_params()
    v = rng.normal(size=flat.size)
    model.set_flat_params(flat + eps * v)
    plus = model.gradients(X, y)["flat"]
    model.set_flat_params(flat - eps * v)
    minus = model.gradients(X, y)["flat"]
    model.set_flat_params(flat)
    numeric = (plus - minus) / (2 * eps)
    Hv = model.hvp(X, y, v)
    assert np.linalg.norm(Hv - numeric) <= 1e-6 * np.linalg.norm(numeric)


def test_label_smoothing_by_hand(impl):
    """torch.nn.CrossEntropyLoss(label_smoothing=s): target (1 - s) onehot + s / K, for
    labels and for probability targets alike; the delta is softmax minus that target;
    accuracy is unchanged."""
    s, K = 0.2, 3
    model = impl([K, K], loss="cross_entropy", label_smoothing=s, dtype="float64", seed=0)
    model.set_params([np.eye(K)], [np.zeros(K)])
    Z = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])
    y = np.array([2, 0])
    t = (1 - s) * np.eye(K)[y] + s / K
    logq = np.log(softmax(Z))
    assert model.evaluate(Z, y)["loss"] == pytest.approx(-(t * logq).sum(axis=1).mean(),
                                                         rel=1e-13)
    assert model.evaluate(Z, y)["accuracy"] == pytest.approx(0.5)
    _, _, db = model.loss_and_grad(Z, y)
    np.testing.assert_allclose(db[0], ((softmax(Z) - t) / 2).sum(axis=0), rtol=1e-12)
    soft = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    ts = (1 - s) * soft + s / K
    assert model.evaluate(Z, soft)["loss"] == pytest.approx(-(ts * logq).sum(axis=1).mean(),
                                                            rel=1e-13)


def test_label_smoothing_curvature(impl):
    """The Hessian product of smoothed cross-entropy (probability targets that do not sum
    to 1, where smoothing changes the target mass) against central differences."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 3))
    t = rng.random((6, 4)) * 0.5
    model = impl([3, 5, 4], activation="tanh", loss="cross_entropy", label_smoothing=0.3,
                 dtype="float64", seed=0)
    assert_hvp_matches_differences(model, X, t, rng)


def test_label_smoothing_validation_and_persistence(impl, tmp_path):
    with pytest.raises(ValueError, match="label_smoothing"):
        impl([2, 2], loss="cross_entropy", label_smoothing=1.5)
    with pytest.raises(ValueError, match="cross_entropy only"):
        impl([2, 2], loss="mse", label_smoothing=0.1)
    import fastmlp

    model = impl([2, 3], loss="cross_entropy", label_smoothing=0.25, dtype="float64", seed=0)
    model.save(tmp_path / "m.fmlp")
    loaded = fastmlp.load(tmp_path / "m.fmlp")
    assert loaded.label_smoothing == 0.25
    X, y = np.array([[1.0, -2.0]]), [1]
    assert loaded.evaluate(X, y)["loss"] == pytest.approx(model.evaluate(X, y)["loss"],
                                                          rel=1e-15)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("soft", [False, True])
def test_label_smoothing_matches_pytorch(impl, smoothing, soft):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    Z = rng.normal(scale=2, size=(9, 5))
    y = rng.dirichlet(np.ones(5), size=9) if soft else rng.integers(0, 5, size=9)
    model, Z = single_layer(impl, "cross_entropy", Z, 5)
    model = impl([5, 5], loss="cross_entropy", label_smoothing=smoothing, dtype="float64",
                 seed=0)
    model.set_params([np.eye(5)], [np.zeros(5)])
    z = torch.tensor(Z, requires_grad=True)
    target = torch.tensor(y)
    expected = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(z, target)
    expected.backward()
    value, _, db = model.loss_and_grad(Z, y)
    assert value == pytest.approx(expected.item(), rel=1e-13)
    np.testing.assert_allclose(db[0], z.grad.numpy().sum(axis=0), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("loss", list(DISTRIBUTION_CASES))
def test_distribution_losses_match_pytorch(impl, loss):
    """kl_divergence is KLDivLoss(reduction='batchmean') of log_softmax(z) and t;
    symmetric_kl adds KLDivLoss(batchmean) of log t and softmax(z); bhattacharyya is
    written out in torch. Values and logit gradients through autograd."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    Z = rng.normal(scale=2, size=(8, 4))
    t = rng.dirichlet(np.ones(4), size=8)
    if loss != "symmetric_kl":
        t[0] = [0.0, 0.5, 0.5, 0.0]
    model, Z = single_layer(impl, loss, Z, 4)
    z = torch.tensor(Z, requires_grad=True)
    target = torch.tensor(t)
    logq = torch.log_softmax(z, dim=1)
    kl = torch.nn.KLDivLoss(reduction="batchmean")
    if loss == "kl_divergence":
        expected = kl(logq, target)
    elif loss == "symmetric_kl":
        expected = kl(logq, target) + kl(torch.log(target), logq.exp())
    else:
        # sqrt(t q) as exp((log t + log q) / 2): finite gradients where t is 0
        expected = -torch.log(torch.exp(0.5 * (torch.log(target) + logq)).sum(dim=1)).mean()
    expected.backward()
    value, _, db = model.loss_and_grad(Z, t)
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(db[0], z.grad.numpy().sum(axis=0), rtol=1e-10, atol=1e-15)


def test_mse_accuracy_for_class_targets(impl):
    """mse has an accuracy for class-coded targets: integer labels (one-hot rows), one-hot
    or ±1 rows (largest output against the row's 1), or ±1 with one output (the sign);
    none for other targets, and score refuses then."""
    model, Z = single_layer(impl, "mse", [[0.9, 0.1, 0.0], [0.2, 0.3, 0.1], [0.0, 0.0, 1.0]], 3)
    y = np.array([0, 0, 2])
    onehot = np.eye(3)[y]
    assert model.evaluate(Z, y)["loss"] == pytest.approx(model.evaluate(Z, onehot)["loss"])
    assert model.evaluate(Z, y)["loss"] == pytest.approx(np.mean((Z - onehot) ** 2))
    for targets in (y, onehot, 2 * onehot - 1):
        assert model.evaluate(Z, targets)["accuracy"] == pytest.approx(2 / 3)
        assert model.score(Z, targets) == pytest.approx(2 / 3)
    assert model.predict_labels(Z).tolist() == [0, 1, 2]
    regression = onehot + 0.5
    assert model.evaluate(Z, regression)["accuracy"] is None
    with pytest.raises(ValueError, match="class targets"):
        model.score(Z, regression)
    with pytest.raises(ValueError, match=r"shape \(n, 3\) or integer labels"):
        model.evaluate(Z, [0.0, 1.0, 2.0])  # float: not labels
    mixed = np.array([[1.0, 0.0, 0.0], [-1.0, 1.0, -1.0], [0.0, 0.0, 1.0]])  # 0 and -1 mixed
    assert model.evaluate(Z, mixed)["accuracy"] is None
    single, Zs = single_layer(impl, "mse", [[0.3], [-2.0], [0.1]], 1)
    assert single.evaluate(Zs, [1, -1, -1])["accuracy"] == pytest.approx(2 / 3)
    assert single.predict_labels(Zs).tolist() == [[1], [-1], [1]]
    assert single.evaluate(Zs, [1.0, 0.0, 0.0])["accuracy"] is None  # 0/1: regression values


def test_mse_classifier_trains_with_accuracy_and_val_accuracy_monitor(impl):
    """fit with mse on integer labels: the History has training and validation accuracy,
    and early stopping can watch val_accuracy; regression targets have none, and
    monitor='val_accuracy' is refused for them with a message."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    model = impl([3, 8, 3], activation="tanh", loss="mse", seed=1)
    history = model.fit(X, y, epochs=6, lr=0.1, validation_data=(X[:40], y[:40]),
                        early_stopping=True, monitor="val_accuracy", patience=10)
    assert all(a is not None and 0 <= a <= 1 for a in history.accuracy)
    assert history.val_accuracy[-1] == pytest.approx(model.score(X[:40], y[:40]))
    assert np.mean(model.predict_labels(X) == y) == pytest.approx(model.score(X, y))
    regression = np.eye(3)[y] * 2.0
    history = model.fit(X, regression, epochs=1, lr=0.01)
    assert history.accuracy == [None]
    with pytest.raises(ValueError, match="class targets"):
        model.fit(X, regression, epochs=1, validation_data=(X, regression),
                  early_stopping=True, monitor="val_accuracy")
