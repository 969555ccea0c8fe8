"""Regularizers in the engine against the NumPy reference and central differences:
penalties, dropout, batch normalization, pruning, noise, shifts, FGSM, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import IMPLEMENTATIONS, make_problem, relative_error
from fastmlp._engine import hash_u64

import fastmlp
import fastmlp.reference
from fastmlp import optim
from fastmlp.reference.rng import hash_at, stream_base

EPS = 1e-6

# (constructor options, gradient options): every regularizer that changes the gradient
CASES = {
    "l2": ({}, {"l2": 0.3}),
    "l2_with_biases": ({}, {"l2": 0.3, "penalize_biases": True}),
    "l1": ({}, {"l1": 0.05}),
    "activity_l1": ({}, {"activity_l1": 0.1}),
    "activity_l2": ({}, {"activity_l2": 0.2}),
    "input_dropout": ({"input_dropout": 0.3}, {"training": True, "step": 5}),
    "dropout": ({"dropout": [0.5, 0.2]}, {"training": True, "step": 7}),
    "dropout_classic": ({"dropout": 0.4, "dropout_mode": "classic"}, {"training": True}),
    "classic_inference": ({"dropout": 0.4, "input_dropout": 0.1, "dropout_mode": "classic"}, {}),
    "bn_before": ({"batch_norm": True}, {"training": True}),
    "bn_after": ({"batch_norm": "after"}, {"training": True}),
    "bn_mixed_inference": ({"batch_norm": ["before", "after"]}, {}),
    "everything": ({"batch_norm": ["after", False], "dropout": 0.3, "input_dropout": 0.2},
                   {"training": True, "l2": 0.1, "l1": 0.01, "activity_l2": 0.1}),
}


def numeric_flat_gradient(model, X, y, options):
    flat = model.get_flat_params()
    g = np.zeros_like(flat)
    for i in range(len(flat)):
        for sign in (1, -1):
            v = flat.copy()
            v[i] += sign * EPS
            model.set_flat_params(v)
            g[i] += sign * model.gradients(X, y, **options)["loss"] / (2 * EPS)
    model.set_flat_params(flat)
    return g


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradient_check_through_regularizers(impl, case, act):
    ctor, options = CASES[case]
    X, y = make_problem("cross_entropy", 9, 4, 3, seed=1)
    model = impl([4, 5, 5, 3], activation=act, dtype="float64", seed=2, bias_init=0.1,
                 init="xavier_normal", **ctor)
    if "bn_mixed" in case:  # non-trivial running statistics and affine parameters
        model.set_batch_norm_state([
            {"running_mean": np.full(5, 0.1), "running_var": np.full(5, 2.0),
             "gamma": np.linspace(0.5, 1.5, 5), "beta": np.linspace(-0.2, 0.2, 5)}] * 2)
    g = model.gradients(X, y, **options)
    assert np.isfinite(g["loss"])
    assert relative_error([g["flat"]], [numeric_flat_gradient(model, X, y, options)]) <= 1e-6


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("case", list(CASES))
def test_engine_gradients_match_reference(case, dtype, tol):
    ctor, options = CASES[case]
    X, y = make_problem("cross_entropy", 33, 17, 10, seed=3)
    eng, ref = (impl([17, 40, 19, 10], activation="tanh", dtype=dtype, seed=4, **ctor)
                for impl in IMPLEMENTATIONS.values())
    ge, gr = eng.gradients(X, y, **options), ref.gradients(X, y, **options)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=tol)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) <= tol


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", range(1, 18))
def test_penalty_value_over_every_block_length(width, dtype):
    """The engine sums the penalty in 8 fixed lanes plus a tail: weight and bias blocks of
    every length mod 8 give the exact value (in double, whatever the parameters' dtype)."""
    X, y = make_problem("cross_entropy", 5, width, 3, seed=width)
    model = fastmlp.MLP([width, width + 2, 3], dtype=dtype, seed=width, bias_init=0.3)
    Ws, bs = model.get_params()
    base = model.gradients(X, y)["loss"]
    for options in ({"l2": 0.3}, {"l2": 0.3, "l1": 0.05}, {"l1": 0.05, "penalize_biases": True}):
        arrays = Ws + (bs if options.get("penalize_biases") else [])
        flat = np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
        l2, l1 = options.get("l2", 0), options.get("l1", 0)
        expected = 0.5 * l2 * flat @ flat + l1 * np.abs(flat).sum()
        got = model.gradients(X, y, **options)["loss"] - base
        assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", range(1, 18))
def test_penalty_gradient_and_value_over_every_block_length(width, dtype, kernel):
    """The penalty's gradient and value come from one pass over each weight and bias block
    (8 lanes plus a tail): for blocks of every length mod 8, the gradient is the plain
    gradient plus l2 w + l1 sign(w) (the L1 term only as a subgradient, not with the
    proximal step), in the parameters' dtype, and the value is exact in double."""
    X, y = make_problem("cross_entropy", 5, width, 3, seed=width)
    model = fastmlp.MLP([width, width + 2, 3], dtype=dtype, seed=width, bias_init=0.3)
    Ws, bs = model.get_params()
    Ws[0][0, 0] = 0.0  # sign(0) = 0
    model.set_params(Ws, bs)
    plain = model.gradients(X, y)
    real = np.dtype(dtype).type
    for options in ({"l2": 0.3}, {"l2": 0.3, "l1": 0.05}, {"l1": 0.05, "penalize_biases": True},
                    {"l2": 0.3, "l1": 0.05, "l1_proximal": True, "penalize_biases": True}):
        got = model.gradients(X, y, **options)
        l2, l1 = real(options.get("l2", 0)), real(options.get("l1", 0))
        gl1 = real(0) if options.get("l1_proximal") else l1
        biases = options.get("penalize_biases", False)
        for key, params in (("weights", Ws), ("biases", bs)):
            for g0, g, p in zip(plain[key], got[key], params):
                p = p.astype(dtype)
                want = g0 + (l2 * p + gl1 * np.sign(p)) if key == "weights" or biases else g0
                np.testing.assert_array_equal(g, want.astype(dtype))
        flat = np.concatenate([a.ravel() for a in Ws + (bs if biases else [])]).astype(np.float64)
        expected = (0.5 * options.get("l2", 0) * flat @ flat
                    + options.get("l1", 0) * np.abs(flat).sum())  # in double
        assert got["loss"] - plain["loss"] == pytest.approx(expected, rel=1e-12)


TRAINING = {
    "penalties": ({}, {"l2": 1e-3, "l1": 1e-3, "activity_l1": 1e-3}),
    "proximal_l1": ({}, {"l1": 1e-2, "l1_proximal": True, "penalize_biases": True}),
    "dropout": ({"dropout": 0.3, "input_dropout": 0.2}, {}),
    "dropout_classic": ({"dropout": 0.3, "dropout_mode": "classic"}, {}),
    "batch_norm": ({"batch_norm": ["before", "after"]}, {}),
    "noise_and_shift": ({}, {"input_noise": 0.1, "shift": 1, "image_shape": (4, 4)}),
    "adversarial": ({}, {"adversarial_eps": 0.05, "adversarial_ratio": 0.4}),
    "adversarial_dropout_bn": ({"dropout": 0.2, "batch_norm": True},
                               {"adversarial_eps": 0.1, "adversarial_ratio": 1.0}),
}


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 2e-4)])
@pytest.mark.parametrize("case", list(TRAINING))
def test_training_steps_match_reference(case, dtype, tol):
    ctor, options = TRAINING[case]
    X, y = make_problem("cross_entropy", 40, 16, 4, seed=6)
    models = [impl([16, 12, 8, 4], activation="relu", dtype=dtype, seed=8, bias_init=0.05, **ctor)
              for impl in IMPLEMENTATIONS.values()]
    for m in models:
        m.prune([0.3, 0.0, 0.2])
        # (not Adam here: it turns float32 round-off in the exactly-zero gradient of a bias
        # before batch norm into full-size steps of either sign)
        m.fit(X, y, epochs=3, batch_size=10, optimizer=optim.SGD(lr=0.05, momentum=0.9),
              **options)
        assert m.training_step == 12
    (e, r) = models
    assert relative_error([e.get_flat_params()], [r.get_flat_params()]) <= tol
    for se, sr in zip(e.batch_norm_state(), r.batch_norm_state()):
        assert (se is None) == (sr is None)
        if se is not None:
            for key in se:
                np.testing.assert_allclose(se[key], sr[key], rtol=tol * 10, atol=tol)


def test_step_hash_matches_the_reference_twin():
    for key, counter, stream in [(0, 0, 0), (123, 7, 3), (2**63, 2**40, 1001)]:
        idx = np.array([0, 1, 2, 1000, 2**33])
        ref = hash_at(stream_base(key, counter, stream), idx)
        assert [hash_u64(key, counter, stream, int(i)) for i in idx] == ref.tolist()


# -- dropout -------------------------------------------------------------------------------
def test_dropout_masks_frequency_scaling_and_determinism():
    p, n = 0.3, 20000
    model = fastmlp.MLP([n, 1], loss="mse", dtype="float64", seed=1, input_dropout=p)
    model.set_params([np.ones((n, 1))], [np.zeros(1)])
    X = np.ones((1, n))
    g1 = model.gradients(X, [[0.0]], training=True, step=3)["input"]
    # dloss/dx_j = 2 y * mask_j / ... : the mask's pattern shows in the input gradient
    kept = g1[0] != 0
    sd = np.sqrt(p * (1 - p) / n)
    assert abs((1 - kept.mean()) - p) < 5 * sd
    ratio = g1[0][kept] / g1[0][kept][0]
    np.testing.assert_allclose(ratio, 1.0)
    out = model.gradients(X, [[0.0]], training=True, step=3)["loss"]
    # inverted dropout: y = sum(kept) / (1 - p), loss = y^2
    assert out == pytest.approx((kept.sum() / (1 - p)) ** 2, rel=1e-12)
    g2 = model.gradients(X, [[0.0]], training=True, step=3)["input"]
    g3 = model.gradients(X, [[0.0]], training=True, step=4)["input"]
    assert np.array_equal(g1, g2) and not np.array_equal(g1, g3)
    # nothing is dropped at inference
    assert model.predict(X)[0, 0] == pytest.approx(n)


def test_classic_dropout_scales_at_test_time():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 6))
    m = fastmlp.MLP([6, 7, 3], dtype="float64", seed=0, dropout=0.4, input_dropout=0.2,
                    dropout_mode="classic")
    plain = fastmlp.MLP([6, 7, 3], dtype="float64", seed=0)
    Ws, bs = m.get_params()
    plain.set_params([Ws[0] * 0.8, Ws[1] * 0.6], bs)  # outgoing weights times (1 - p)
    np.testing.assert_allclose(m.predict(X), plain.predict(X), rtol=1e-12)


def test_dropout_fit_is_seeded():
    X, y = make_problem("cross_entropy", 50, 5, 3, seed=0)
    runs = []
    for seed in (3, 3, 4):
        m = fastmlp.MLP([5, 8, 3], seed=seed, dropout=0.5)
        m.fit(X, y, epochs=2, batch_size=10)
        runs.append(m.get_flat_params())
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


# -- batch norm ----------------------------------------------------------------------------
def test_batch_norm_training_and_inference_outputs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)) * [1.0, 5.0, 0.1] + [2.0, -1.0, 0.5]
    m = fastmlp.MLP([3, 3, 2], activation="identity", loss="mse", batch_norm=True,
                    dtype="float64", seed=0)
    m.set_params([np.eye(3), np.eye(3, 2)], [np.zeros(3), np.zeros(2)])
    # training mode normalizes each unit over the batch: with the identity, W = I, the
    # logits are the first two normalized features
    g = m.gradients(X, np.zeros((64, 2)), training=True)
    xhat = (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-5)
    assert g["loss"] == pytest.approx(np.mean(xhat[:, :2] ** 2), rel=1e-10)
    # inference uses the running statistics (initially mean 0, var 1): nearly the identity
    np.testing.assert_allclose(m.predict(X), X[:, :2] / np.sqrt(1 + 1e-5), rtol=1e-12)


def test_batch_norm_running_statistics_follow_pytorch():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3)) * 3 + 1
    m = fastmlp.MLP([3, 3, 2], activation="identity", loss="mse", batch_norm=True,
                    dtype="float64", seed=0)
    m.set_params([np.eye(3), np.eye(3, 2)], [np.zeros(3), np.zeros(2)])
    # lr tiny: the first layer barely moves, so each batch's statistics are those of X
    m.fit(X, np.zeros((40, 2)), epochs=1, batch_size=10, lr=1e-12, shuffle=False)
    mean, var = np.zeros(3), np.ones(3)
    for b in range(4):
        xb = X[10 * b : 10 * b + 10]
        mean = 0.9 * mean + 0.1 * xb.mean(0)
        var = 0.9 * var + 0.1 * xb.var(0, ddof=1)  # unbiased, as torch
    state = m.batch_norm_state()[0]
    np.testing.assert_allclose(state["running_mean"], mean, rtol=1e-9)
    np.testing.assert_allclose(state["running_var"], var, rtol=1e-9)


def test_batch_norm_needs_two_samples_per_batch(impl):
    X, y = make_problem("cross_entropy", 21, 3, 2)
    m = impl([3, 4, 2], batch_norm=True, seed=0)
    with pytest.raises(ValueError, match="batch normalization needs at least 2 samples"):
        m.fit(X, y, batch_size=1)
    with pytest.raises(ValueError, match="a batch would hold 1"):
        m.fit(X, y, batch_size=10)  # 21 = 10 + 10 + 1
    m.fit(X, y, batch_size=7, epochs=1)  # fine


# -- pruning -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_pruned_weights_stay_zero_under_every_optimizer(name):
    X, y = make_problem("cross_entropy", 60, 10, 3, seed=2)
    m = fastmlp.MLP([10, 12, 3], seed=1)
    sparsity = m.prune([0.5, 0.25])
    assert sparsity == pytest.approx([0.5, 0.25], abs=0.01)
    zero = [W == 0 for W in m.weights]
    kwargs = {"weight_decay": 0.1} if name in ("SGD", "Adam", "AdamW", "RMSprop") else {}
    if name == "SGD":
        kwargs["momentum"] = 0.9
    m.fit(X, y, epochs=5, batch_size=8, optimizer=optim.OPTIMIZERS[name](**kwargs), l2=0.01)
    for W, z in zip(m.weights, zero):
        assert np.all(W[z] == 0)
        assert np.any(W[~z] != 0)
    assert m.sparsity() == sparsity


def test_prune_is_by_magnitude_and_cumulative():
    m = fastmlp.MLP([4, 3], dtype="float64", seed=0)
    W = np.arange(1, 13, dtype=float).reshape(4, 3) * np.array([1, -1, 1])
    m.set_params([W], [np.zeros(3)])
    m.prune(0.25)
    assert np.count_nonzero(m.weights[0] == 0) == 3
    assert set(np.abs(W[m.weights[0] == 0])) == {1, 2, 3}
    m.prune(0.5)
    assert set(np.abs(W[m.weights[0] == 0])) == {1, 2, 3, 4, 5, 6}
    m.set_params([np.ones((4, 3))], [np.zeros(3)])  # set_params respects the masks
    assert np.count_nonzero(m.weights[0]) == 6
    m.clear_pruning()
    assert m.sparsity() == [0.0]


def test_prune_and_retrain_reports_each_round():
    from fastmlp.pruning import prune_and_retrain

    data = fastmlp.datasets.load_embedded_fashion_mnist()
    X, y = data.X_train[:1500], data.y_train[:1500]
    m = fastmlp.MLP([784, 32, 10], seed=0)
    m.fit(X, y, epochs=2, batch_size=32, lr=0.05)
    report = prune_and_retrain(m, X, y, target=0.9, rounds=3, epochs=1, lr=0.05, l2=1e-4,
                               validation_data=(data.X_test, data.y_test))
    assert [r["round"] for r in report] == [1, 2, 3]
    assert report[-1]["sparsity"] == pytest.approx([0.9, 0.9], abs=0.01)
    assert report[0]["sparsity"][0] < report[1]["sparsity"][0] < report[2]["sparsity"][0]
    assert report[-1]["val_accuracy"] > 0.6  # 90% sparse and still far above chance


# -- early stopping ------------------------------------------------------------------------
def test_early_stopping_restores_the_best_weights(impl):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20))
    y = rng.integers(0, 2, size=60)  # pure noise: validation loss soon rises (overfitting)
    Xv, yv = rng.normal(size=(40, 20)), rng.integers(0, 2, size=40)
    m = impl([20, 64, 2], seed=0, dtype="float64")
    h = m.fit(X, y, epochs=60, batch_size=10, lr=0.1, validation_data=(Xv, yv),
              early_stopping=True, patience=3)
    assert h.stopped_epoch is not None and h.stopped_epoch < 60
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1
    assert h.stopped_epoch - h.best_epoch == 3
    assert m.evaluate(Xv, yv)["loss"] == pytest.approx(min(h.val_loss), rel=1e-12)


def test_early_stopping_with_validation_fraction_and_accuracy():
    data = fastmlp.datasets.load_embedded_fashion_mnist()
    X, y = data.X_train[:2000], data.y_train[:2000]
    m = fastmlp.MLP([784, 32, 10], seed=0)
    h = m.fit(X, y, epochs=4, batch_size=32, lr=0.05, early_stopping=True,
              monitor="val_accuracy", validation_fraction=0.2, patience=10)
    assert h.stopped_epoch is None and h.best_epoch == int(np.argmax(h.val_accuracy)) + 1
    assert len(h.val_accuracy) == 4


def test_stratified_split():
    from fastmlp.train.regularization import stratified_split

    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = stratified_split(labels, 100, 0.1, seed=0)
    assert sorted(np.bincount(labels[val]).tolist()) == [2, 3, 5]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 100


@pytest.mark.parametrize("loss,targets", [("mse", "labels"), ("mse", "onehot"),
                                          ("hinge", "onehot")])
def test_validation_split_is_stratified_for_class_targets_of_dense_losses(loss, targets):
    """mse/hinge trained on classes (integer labels, one-hot or ±1 rows) hold out the same
    share of every class, as cross-entropy does; regression targets get a plain split."""
    from fastmlp.train.data import class_of_rows, hold_out, prepare

    y = np.repeat([0, 1, 2], [60, 25, 15])
    X = np.random.default_rng(0).normal(size=(100, 3))
    model = fastmlp.MLP([3, 3], loss=loss)
    given = y if targets == "labels" else np.eye(3)[y] * (2 if loss == "hinge" else 1) - \
        (1 if loss == "hinge" else 0)
    data = prepare(model, X, given)
    assert data.labels is None  # dense targets: the classes come from the rows
    hold_out(data, 0.2, seed=0)
    held = class_of_rows(data.val[2])
    assert np.bincount(held, minlength=3).tolist() == [12, 5, 3]
    assert class_of_rows(np.random.default_rng(1).normal(size=(10, 3))) is None
    assert class_of_rows(np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])) is None


# -- noise, shifts, adversarial ------------------------------------------------------------
def test_shift_moves_images_by_whole_pixels():
    img = np.zeros((5, 5))
    img[2, 2] = 1.0
    out = fastmlp.reference.functional.shift_images(img.reshape(1, -1), stream_base(1, 0, 1001),
                                                    2, (5, 5, 1))
    assert out.sum() == 1.0
    moved = np.argwhere(out.reshape(5, 5) == 1)[0]
    assert np.all(np.abs(moved - 2) <= 2)


AFFINE_CASES = [  # (rotate, scale, shear), image shape
    ((30.0, 0.0, 0.0), (9, 7, 1)),
    ((15.0, 0.2, 10.0), (6, 6, 3)),
    ((180.0, 0.5, 60.0), (5, 8, 2)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("params,shape", AFFINE_CASES)
def test_engine_affine_maps_equal_the_reference(dtype, params, shape):
    """The engine's augmented batch (affine maps, then shifts) equals the NumPy twin's for
    the same draws (seed, step counter), sample by sample."""
    from fastmlp import _engine
    from fastmlp.train.regularization import augment_config

    h, w, c = shape
    X = np.random.default_rng(0).random((6, h * w * c)).astype(dtype)
    aug = augment_config(X.shape[1], shift=1, image_shape=shape, rotate=params[0],
                         scale=params[1], shear=params[2])
    out = _engine.augment(X, aug, 123, 45)
    F = fastmlp.reference.functional
    ref = F.affine_images(X, stream_base(123, 45, 1002), *params, shape)
    ref = F.shift_images(ref, stream_base(123, 45, 1001), 1, shape)
    tol = {"float32": 1e-6, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    assert not np.allclose(out, X)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_images_move_as_raw_pixels_before_the_input_transform(dtype):
    """With a model's per-feature input transform (standardized pixels), the engine moves
    the raw images (zero fill is a black pixel) and then transforms them: the batch is the
    transform of the moved raw batch, bit for bit, with the noise added after both. (It
    moved the transformed pixels, so a pixel took another pixel's scaling.)"""
    from fastmlp import _engine
    from fastmlp.train.regularization import augment_config

    shape = (6, 5, 1)
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (8, 30)).astype(dtype)
    scale = (1.0 / (rng.random(30) + 0.5)).astype(dtype)
    shift = rng.standard_normal(30).astype(dtype)
    moves = augment_config(30, shift=1, image_shape=shape, rotate=20.0)
    raw = _engine.augment(X, moves, 11, 4)
    want = raw * scale + shift
    got = _engine.augment(X, moves, 11, 4, scale=scale, shift=shift)
    np.testing.assert_array_equal(got, want)
    assert not np.allclose(got, _engine.augment(X * scale + shift, moves, 11, 4))
    noisy = augment_config(30, shift=1, image_shape=shape, rotate=20.0, input_noise=0.5)
    noise = _engine.augment(np.zeros_like(X), augment_config(30, input_noise=0.5), 11, 4)
    np.testing.assert_array_equal(
        _engine.augment(X, noisy, 11, 4, scale=scale, shift=shift), want + noise)
    with pytest.raises(ValueError, match="needs both scale and shift"):
        _engine.augment(X, moves, 11, 4, scale=scale)
    with pytest.raises(ValueError, match="scale and shift must be contiguous"):
        _engine.augment(X, moves, 11, 4, scale=scale[:5], shift=shift[:5])


def test_training_with_an_input_transform_and_moves_equals_the_reference():
    """fit with input_scale/input_shift and rotations/shifts/noise: the engine and the NumPy
    reference (which moves raw rows, then transforms) train the same model."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (40, 36)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    kwargs = dict(seed=2, dtype="float64", input_scale=1 / (np.arange(36) + 20.0),
                  input_shift=-np.linspace(0.5, 1.5, 36))
    fit = dict(epochs=2, batch_size=8, lr=0.05, rotate=15.0, shift=1, image_shape=(6, 6),
               input_noise=0.1)
    models = [impl([36, 12, 3], **kwargs) for impl in (fastmlp.MLP, fastmlp.reference.MLP)]
    for m in models:
        m.fit(X, y, **fit)
    a, b = (m.get_flat_params() for m in models)
    assert relative_error(a, b) < 1e-12
    plain = fastmlp.MLP([36, 12, 3], **kwargs)
    plain.fit(X, y, epochs=2, batch_size=8, lr=0.05, input_noise=0.1)
    assert not np.allclose(plain.get_flat_params(), a)


def test_affine_maps_are_exact_on_known_transforms():
    """A 90-degree turn moves pixels exactly; scale and shear keep the centre pixel."""
    F = fastmlp.reference.functional
    img = np.arange(25, dtype=np.float64).reshape(5, 5)
    A = F.affine_matrices(stream_base(0, 0, 1002), 1, 0.0, 0.0, 0.0)[0]
    np.testing.assert_allclose(A, np.eye(2), atol=1e-15)
    # rotate=90 draws theta in (-90, 90); find the draw and check the map it implies
    for counter in range(50):
        A = F.affine_matrices(stream_base(0, counter, 1002), 1, 90.0, 0.0, 0.0)[0]
        theta = np.degrees(np.arctan2(A[0, 1], A[0, 0]))
        if abs(abs(theta) - 90) < 3:
            break
    out = F.affine_images(img.reshape(1, -1), stream_base(0, counter, 1002), 90.0, 0.0, 0.0,
                          (5, 5, 1)).reshape(5, 5)
    assert out[2, 2] == pytest.approx(img[2, 2])  # the centre stays
    # theta > 0 turns the content counterclockwise (rows down): the right edge goes up
    turned = np.rot90(img, 1 if theta > 0 else -1)
    assert np.abs(out[1:4, 1:4] - turned[1:4, 1:4]).max() < 0.2 * 24


@pytest.mark.parametrize("degrees", [10.0, 25.0])
def test_rotating_by_theta_then_back_restores_the_interior(degrees):
    """The engine's rotation by its drawn +theta, then a rotation by -theta, gives the
    image back in its interior up to the blur of two bilinear resamplings."""
    from fastmlp import _engine
    from fastmlp.train.regularization import augment_config

    h = w = 21
    r, c = np.mgrid[0:h, 0:w]
    # a smooth blob (bilinear interpolation is accurate on it) away from the centre
    img = np.exp(-((r - 7) ** 2 + (c - 13) ** 2) / 40.0)
    aug = augment_config(h * w, rotate=degrees, image_shape=(h, w))
    there = _engine.augment(img.reshape(1, -1), aug, 7, 3).reshape(h, w)
    A = fastmlp.reference.functional.affine_matrices(stream_base(7, 3, 1002), 1, degrees,
                                                     0.0, 0.0)[0]
    theta = np.arctan2(A[0, 1], A[0, 0])  # the engine's draw for that sample and step
    assert 0.2 * degrees < abs(np.degrees(theta)) <= degrees
    back = _rotate_by(there, -theta)
    interior = (slice(4, 17), slice(4, 17))
    assert np.abs(back[interior] - img[interior]).max() < 0.03
    assert np.abs(there[interior] - img[interior]).max() > 0.05  # it did move


def _rotate_by(img, theta):
    """Bilinear rotation of a 2-D image by theta (radians, the engine's convention)."""
    h, w = img.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r, c = np.mgrid[0:h, 0:w].astype(float)
    cos, sin = np.cos(theta), np.sin(theta)
    dx, dy = c - cx, r - cy
    sx, sy = cos * dx - sin * dy + cx, sin * dx + cos * dy + cy  # R(theta)^-1 (p - centre)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    out = np.zeros_like(img)
    for ddy, ddx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                          (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + ddy, x0 + ddx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.where(ok, wgt * img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_affine_training_matches_the_reference_and_the_thread_count(dtype):
    """Training with rotate/scale/shear: the engine equals the reference, and 1 and 2
    threads give bit-identical weights."""
    X, y = make_problem("cross_entropy", 24, 36, 3, seed=1)
    opts = dict(epochs=2, batch_size=8, lr=0.05, rotate=20.0, scale=0.1, shear=5.0,
                image_shape=(6, 6))
    eng = fastmlp.MLP([36, 8, 3], seed=3, dtype=dtype, threads=1)
    ref = fastmlp.reference.MLP([36, 8, 3], seed=3, dtype=dtype)
    eng.fit(X, y, **opts)
    ref.fit(X, y, **opts)
    tol = {"float32": 1e-4, "float64": 1e-10}[dtype]
    assert relative_error(eng.weights, ref.weights) <= tol
    two = fastmlp.MLP([36, 8, 3], seed=3, dtype=dtype, threads=2)
    two.fit(X, y, **opts)
    np.testing.assert_array_equal(two.get_flat_params(), eng.get_flat_params())
    plain = fastmlp.MLP([36, 8, 3], seed=3, dtype=dtype, threads=1)
    plain.fit(X, y, epochs=2, batch_size=8, lr=0.05)
    assert not np.allclose(plain.get_flat_params(), eng.get_flat_params())


def test_noise_shift_and_fgsm_change_training_but_not_prediction():
    X, y = make_problem("cross_entropy", 30, 16, 3, seed=0)
    base = fastmlp.MLP([16, 8, 3], seed=0, dtype="float64")
    base.fit(X, y, epochs=2, batch_size=10)
    for opts in ({"input_noise": 0.5}, {"shift": 1, "image_shape": (4, 4)},
                 {"adversarial_eps": 0.3}):
        m = fastmlp.MLP([16, 8, 3], seed=0, dtype="float64")
        m.fit(X, y, epochs=2, batch_size=10, **opts)
        assert not np.allclose(m.get_flat_params(), base.get_flat_params())


def test_fgsm_examples_raise_the_loss():
    X, y = make_problem("cross_entropy", 50, 6, 3, seed=0)
    m = fastmlp.MLP([6, 16, 3], seed=0, dtype="float64")
    m.fit(X, y, epochs=5, batch_size=10, lr=0.1)
    dX = m.gradients(X, y)["input"]
    clean, adv = m.evaluate(X, y)["loss"], m.evaluate(X + 0.2 * np.sign(dX), y)["loss"]
    assert adv > clean


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dropout": 1.0}, "dropout rates must lie in"),
        ({"dropout": -0.1}, "dropout rates must lie in"),
        ({"input_dropout": 1.5}, "input_dropout must lie in"),
        ({"dropout": [0.1, 0.2, 0.3]}, "got 3 dropout rates for 2 hidden layers"),
        ({"dropout_mode": "scaled"}, "dropout_mode must be"),
        ({"batch_norm": "middle"}, "batch_norm must be"),
        ({"bn_eps": 0.0}, "bn_eps must be > 0"),
    ],
)
def test_bad_regularizer_arguments(impl, kwargs, match):
    with pytest.raises(ValueError, match=match):
        impl([4, 5, 5, 2], **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"l2": -1.0}, "l2 must lie in"),
        ({"l1": -0.1}, "l1 must lie in"),
        ({"activity_l1": -1}, "activity_l1 must lie in"),
        ({"input_noise": -0.5}, "input_noise must lie in"),
        ({"shift": 2}, "shift needs image_shape"),
        ({"shift": 2, "image_shape": (3, 3)}, "has 9 values but X has 4 features"),
        ({"adversarial_ratio": 1.5}, "adversarial_ratio must lie in"),
        ({"rotate": 10.0}, "rotate needs image_shape"),
        ({"rotate": 190.0, "image_shape": (2, 2)}, r"rotate must lie in \[0, 180\]"),
        ({"shear": 61.0, "image_shape": (2, 2)}, r"shear must lie in \[0, 60\]"),
        ({"scale": 1.0, "image_shape": (2, 2)}, "scale must lie in"),
        ({"scale": 0.1, "image_shape": (3, 3)}, "has 9 values but X has 4 features"),
        ({"early_stopping": True, "validation_fraction": 1.0}, "validation_fraction must lie in"),
        ({"early_stopping": True, "monitor": "loss"}, "monitor must be one of"),
        ({"patience": -1}, "patience must be >= 0"),
    ],
)
def test_bad_fit_regularization_arguments(impl, kwargs, match):
    X, y = make_problem("cross_entropy", 20, 4, 2)
    with pytest.raises(ValueError, match=match):
        impl([4, 5, 2], seed=0).fit(X, y, **kwargs)


def test_global_pruning_uses_one_threshold_across_layers():
    m = fastmlp.MLP([10, 20, 5], seed=0, dtype="float64")
    w0, w1 = m.weights
    m.set_params([w0 * 0.1, w1], m.biases)  # layer 0's weights are all small
    weights = np.concatenate([w.ravel() for w in m.weights])
    sparsity = m.prune(0.5, scope="global")
    threshold = np.sort(np.abs(weights))[len(weights) // 2 - 1]
    for w in m.weights:  # every weight above the one threshold survives, none below
        nonzero = np.abs(w[w != 0])
        assert nonzero.size == 0 or nonzero.min() > threshold
    assert sparsity[0] > 0.5 > sparsity[1]  # the small layer loses more
    total = sum(s * w.size for s, w in zip(sparsity, m.weights)) / weights.size
    assert total == pytest.approx(0.5)
    m.prune(0.75, scope="global")  # cumulative, like per-layer pruning
    kept = sum(int((w != 0).sum()) for w in m.weights)
    assert kept == round(0.25 * weights.size)
    with pytest.raises(ValueError, match="scope"):
        m.prune(0.5, scope="network")
    with pytest.raises(TypeError, match="amount must be a number"):
        m.prune([0.5, 0.5], scope="global")
