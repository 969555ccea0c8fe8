"""Bad input gets a clear ValueError/TypeError naming the problem, for the engine and the
reference alike, and leaves the model unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp.errors import TrainingDivergedError


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 4)).astype(np.float32), rng.integers(0, 3, size=20)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"layer_sizes": [4]}, ValueError, "2 to 65 entries"),
        ({"layer_sizes": [4, 0, 3]}, ValueError, "every layer size must be >= 1"),
        ({"layer_sizes": [4, 2.5, 3]}, TypeError, "must be an integer"),
        ({"layer_sizes": "4,3"}, TypeError, "sequence of ints"),
        ({"layer_sizes": [4] * 67}, ValueError, "2 to 65 entries"),
        ({"activation": "swish"}, ValueError, "unknown activation 'swish'; choose one of"),
        ({"activation": ["relu"]}, ValueError, "1 activations for 2 hidden layers"),
        ({"loss": "nll"}, ValueError, "unknown loss 'nll'"),
        ({"init": "orthogonal"}, ValueError, "unknown init 'orthogonal'"),
        ({"init": "normal", "init_kwargs": {"sigma": 1}}, ValueError, "no parameter 'sigma'"),
        ({"init": "normal", "init_kwargs": {"std": -1}}, ValueError, "std must be >= 0"),
        ({"dtype": "float16"}, TypeError, "float32' or 'float64"),
        ({"dtype": "int32"}, TypeError, "float32' or 'float64"),
        ({"leaky_slope": 1.5}, ValueError, "leaky_slope must lie in"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"threads": 0}, ValueError, "threads must be >= 1"),
        ({"bias_init": float("nan")}, ValueError, "bias_init must be finite"),
    ],
)
def test_constructor_errors(impl, kwargs, exc, match):
    args = {"layer_sizes": [4, 5, 5, 3], **kwargs}
    with pytest.raises(exc, match=match):
        impl(**args)


def X_errors(X):
    return [
        (X[:, :3], ValueError, "X has 3 features but the network expects 4"),
        (X[0], ValueError, "X must be 2-D"),
        (X[:0], ValueError, "X is empty"),
        (np.where(np.eye(20, 4) > 0, np.inf, X).astype(np.float16), ValueError,
         r"X contains infinity \(after conversion to float"),
        (X.astype(np.complex64), TypeError, "got dtype complex64"),
        (np.array([["a"] * 4] * 20), TypeError, "must hold numbers"),
        (np.where(np.eye(20, 4) > 0, np.nan, X), ValueError, "X contains NaN"),
        (np.where(np.eye(20, 4) > 0, np.inf, X), ValueError, "X contains infinity"),
        (np.full((20, 4), 1e300), ValueError, r"infinity \(after conversion to float32\)"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_bad_X_everywhere(impl, data, case):
    X, y = data
    bad, exc, match = X_errors(X)[case]
    model = impl([4, 5, 3], seed=0)
    before = model.weights
    for call in (
        lambda: model.predict(bad),
        lambda: model.evaluate(bad, y[: len(bad)] if np.ndim(bad) == 2 else y),
        lambda: model.loss_and_grad(bad, y[: len(bad)] if np.ndim(bad) == 2 else y),
        lambda: model.fit(bad, y[: len(bad)] if np.ndim(bad) == 2 else y, epochs=1),
    ):
        with pytest.raises(exc, match=match):
            call()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.weights))


@pytest.mark.parametrize(
    "loss,y,exc,match",
    [
        ("cross_entropy", np.arange(20) % 4, ValueError, r"labels must lie in \[0, 3\)"),
        ("cross_entropy", -(np.arange(20) % 2), ValueError, "found labels from -1"),
        ("cross_entropy", np.full(20, 0.5), ValueError, "labels must be integers"),
        ("cross_entropy", np.zeros(19, int), ValueError, "20 samples in X, 19 in y"),
        ("cross_entropy", np.full(20, np.nan), ValueError, "y contains NaN"),
        ("cross_entropy", np.array(["a"] * 20), TypeError, "y must hold numbers"),
        ("cross_entropy", np.zeros((20, 2)), ValueError, "y has 2 columns but the network has 3"),
        ("cross_entropy", np.full((20, 3), 2.0), ValueError, r"must lie in \[0, 1\]"),
        ("cross_entropy", np.zeros((20, 3, 1)), ValueError, "y must be 1-D"),
        ("multi_hinge", np.zeros((20, 3)), ValueError, "needs integer class labels"),
        ("mse", np.zeros(20), ValueError, r"give targets of shape \(n, 3\)"),
        ("hinge", np.zeros((20, 3)), ValueError, "hinge targets must be -1 or \\+1"),
        ("binary_cross_entropy", np.full((20, 3), 3.0), ValueError, r"lie in \[0, 1\]"),
    ],
)
def test_bad_targets(impl, data, loss, y, exc, match):
    X, _ = data
    model = impl([4, 5, 3], loss=loss, seed=0)
    with pytest.raises(exc, match=match):
        model.fit(X, y, epochs=1)
    with pytest.raises(exc, match=match):
        model.loss_and_grad(X, y)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": -3}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an integer"),
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"lr": 0.0}, ValueError, "lr must be > 0"),
        ({"lr": -0.1}, ValueError, "lr must be > 0"),
        ({"lr": float("inf")}, ValueError, "lr must be finite"),
        ({"shuffle": "sometimes"}, ValueError, "shuffle must be"),
        ({"validation_data": [1, 2, 3]}, TypeError, "validation_data must be a pair"),
    ],
)
def test_bad_fit_arguments(impl, data, kwargs, exc, match):
    X, y = data
    with pytest.raises(exc, match=match):
        impl([4, 5, 3], seed=0).fit(X, y, **kwargs)


def test_bad_validation_data_is_named(impl, data):
    X, y = data
    with pytest.raises(ValueError, match="validation_data X has 2 features"):
        impl([4, 5, 3], seed=0).fit(X, y, validation_data=(X[:, :2], y))


def test_set_params_checks(impl):
    model = impl([4, 5, 3], seed=0)
    Ws, bs = model.get_params()
    with pytest.raises(ValueError, match="expected 2 weight matrices"):
        model.set_params(Ws[:1], bs)
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(5, 3\)"):
        model.set_params([Ws[0], Ws[1].T], bs)
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \(5,\)"):
        model.set_params(Ws, [bs[0][:4], bs[1]])
    with pytest.raises(TypeError, match=r"weights\[0\] must be a float32/float64"):
        model.set_params([Ws[0].astype(np.float16), Ws[1]], bs)
    with pytest.raises(ValueError, match=r"biases\[1\] contains NaN"):
        model.set_params(Ws, [bs[0], np.full(3, np.nan)])
    assert all(np.array_equal(a, b) for a, b in zip(Ws, model.weights))
    new = [W + 1 for W in Ws]
    model.set_params(new, bs)  # copies in: later edits of `new` do not leak into the model
    new[0][:] = 0
    assert np.array_equal(model.weights[0], Ws[0] + 1)
    assert model.weights[0].dtype == np.float32


def test_weights_are_copies(impl):
    model = impl([3, 2], seed=0)
    model.weights[0][:] = 99
    assert not np.any(model.weights[0] == 99)


def test_diverging_run_raises_and_keeps_finite_weights(impl):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)) * 100
    y = rng.normal(size=(64, 1)) * 1e3
    model = impl([4, 16, 1], loss="mse", activation="relu", seed=0)
    with pytest.raises(TrainingDivergedError, match="training diverged at epoch 1, step") as err:
        model.fit(X, y, epochs=5, batch_size=4, lr=10.0)
    assert err.value.epoch == 1 and err.value.step >= 1
    assert all(np.isfinite(W).all() for W in model.weights + model.biases)
    assert np.isfinite(model.evaluate(X, y)["loss"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_on_an_epochs_first_step_goes_back_to_the_epoch_before(impl, dtype):
    """The weights an epoch starts with were never evaluated before it: when its first
    batch gives a non-finite loss, the model goes back to the last chunk of the epoch
    before, whose first batch gave a finite loss."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    y = rng.integers(0, 3, size=64)
    model = impl([4, 8, 3], seed=0, dtype=dtype)

    def blow_up(m, history):
        big = np.finfo(dtype).max / 4
        m.set_params([np.full_like(W, big) for W in m.weights], m.biases)

    with pytest.raises(TrainingDivergedError, match="epoch 2, step 1:") as err:
        model.fit(X, y, epochs=3, batch_size=16, callbacks=[blow_up])
    assert err.value.epoch == 2 and err.value.step == 1
    assert all(np.abs(W).max() < 100 for W in model.weights)
    assert np.isfinite(model.evaluate(X, y)["loss"])


def test_mse_has_no_accuracy_for_targets_that_are_not_classes(impl, data):
    """(mse has an accuracy for class-coded targets only: test_losses.py)"""
    X, _ = data
    model = impl([4, 2], loss="mse", seed=0)
    y = np.zeros((20, 2))
    assert model.evaluate(X, y)["accuracy"] is None
    assert model.fit(X, y, epochs=1).accuracy == [None]
    with pytest.raises(ValueError, match="mse has an accuracy only for class targets"):
        model.score(X, y)
    with pytest.raises(ValueError, match="poisson has no class labels"):
        impl([4, 2], loss="poisson", seed=0).predict_labels(X)


@pytest.mark.parametrize("impl_name", ["engine", "reference"])
@pytest.mark.parametrize("batch_norm", [False, "before"])
def test_folding_input_scaling_gives_the_same_outputs_on_raw_inputs(impl_name, batch_norm):
    from conftest import IMPLEMENTATIONS

    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(50, 6))
    mean, scale = X.mean(axis=0), X.std(axis=0) + 0.1
    m = IMPLEMENTATIONS[impl_name]([6, 9, 3], dtype="float64", seed=1, batch_norm=batch_norm)
    m.fit((X - mean) / scale, rng.integers(0, 3, 50), epochs=2, batch_size=10)
    expected = m.predict((X - mean) / scale)
    m.fold_input_scaling(mean, scale)
    np.testing.assert_allclose(m.predict(X), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="scale must be > 0"):
        m.fold_input_scaling(mean, np.zeros(6))
    with pytest.raises(ValueError, match="shape"):
        m.fold_input_scaling(mean[:3], scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 65535, 65537, 1_000_003])
def test_all_finite_finds_every_nan_and_infinity(dtype, n):
    from fastmlp import _engine
    from fastmlp.validation import all_finite

    a = np.full(n, np.finfo(dtype).max, dtype=dtype)  # huge but finite: no overflow trap
    a[::2] *= -1
    assert _engine.all_finite(a) is True and all_finite(a)
    for bad in (np.nan, np.inf, -np.inf):
        for pos in {0, n // 2, n - 1}:
            b = a.copy()
            b[pos] = bad
            assert _engine.all_finite(b) is False and not all_finite(b)
            assert not all_finite(b[::-1])  # non-contiguous: the NumPy fallback
    assert _engine.all_finite(np.ones(3, np.float16)) is None  # not handled in C



@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_backend_snapshots_a_chunks_start_once_its_first_loss_is_finite(impl, dtype):
    """fit keeps one snapshot for the divergence guard; the backend refreshes it in place
    at the start of each chunk, after the first step's finite loss and before its update,
    and leaves it alone when that loss is not finite."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(96, 6))
    y = rng.integers(0, 3, size=96)
    model = impl([6, 12, 3], seed=0, dtype=dtype, dropout=0.2, batch_norm="before")
    from fastmlp import optim
    from fastmlp.train.regularization import augment_config, penalty_config
    from fastmlp.train.state import snapshot as _snapshot

    opt = optim.Adam(lr=0.01)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt)
    state = opt.state_for(0, (model._n_params,), model.dtype)
    before = _snapshot(model, state)
    snap = _snapshot(model, state)
    for a in (snap[0], snap[1], snap[2]["exp_avg"], snap[2]["exp_avg_sq"]):
        a[...] = 7
    order = np.arange(96, dtype=np.int64)
    Xd = X.astype(model._dtype)
    labels, dense = model._targets(y, len(X))
    args = (Xd, labels, dense, order, 8, 3, 8, np.full(3, 0.01), opt, state, (0.0, 0.0, False),
            penalty_config(), augment_config(6))
    status, done, *_ = model._backend_train(*args, None, snap)
    assert (status, done) == (0, 3)
    for got, want in [(snap[0], before[0]), (snap[1], before[1]),
                      (snap[2]["exp_avg"], before[2]["exp_avg"]),
                      (snap[2]["exp_avg_sq"], before[2]["exp_avg_sq"])]:
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(model.get_flat_params(), before[0])  # the chunk did update
    weights = model.weights
    weights[-1][...] = np.finfo(dtype).max  # logits overflow: the first loss is not finite
    model.set_params(weights, model.biases)
    for a in (snap[0], snap[1], snap[2]["exp_avg"], snap[2]["exp_avg_sq"]):
        a[...] = 7
    status, done, *_ = model._backend_train(*args, None, snap)
    assert done == 0 and status != 0
    assert all((a == 7).all()
               for a in (snap[0], snap[1], snap[2]["exp_avg"], snap[2]["exp_avg_sq"]))


def test_a_nan_the_loss_does_not_show_still_stops_training(impl):
    """Batch statistics that overflow give NaN activations, which ReLU turns into zeros:
    the loss stays finite while the gradient is NaN. fit notices the non-finite parameters
    after the chunk, goes back to its start and raises."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(96, 6))
    y = rng.integers(0, 3, size=96)
    model = impl([6, 12, 3], seed=0, batch_norm="before")
    model.set_flat_params(np.full(model.get_flat_params().shape, np.finfo(np.float32).max / 4))
    start = model.get_flat_params()
    with pytest.raises(TrainingDivergedError, match="the parameters are no longer finite"):
        model.fit(X, y, epochs=1, batch_size=8)
    np.testing.assert_array_equal(model.get_flat_params(), start)


def test_divergence_on_the_first_step_leaves_the_model_as_it_was(impl):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 4))
    y = rng.integers(0, 3, size=40)
    model = impl([4, 8, 3], seed=0)
    weights = model.weights
    weights[-1][...] = np.finfo(np.float32).max
    model.set_params(weights, model.biases)
    start = model.get_flat_params()
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 1:"):
        model.fit(X, y, epochs=2, batch_size=8)
    np.testing.assert_array_equal(model.get_flat_params(), start)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_after_divergence_a_fit_goes_on_as_one_from_the_restored_state(impl, dtype):
    """Divergence at epoch 3 (its first step) goes back to the start of epoch 2 (one step
    per epoch): weights, optimizer state, step counter and shuffling generator all as
    after epoch 1, so that the next fit equals, bit for bit, that of a twin trained for
    one epoch."""
    from fastmlp import optim

    rng = np.random.default_rng(3)
    X = rng.normal(size=(24, 4))
    y = rng.integers(0, 3, size=24)
    model, twin = impl([4, 8, 3], seed=0, dtype=dtype), impl([4, 8, 3], seed=0, dtype=dtype)
    opt, twin_opt = optim.Adam(lr=0.01), optim.Adam(lr=0.01)

    def blow_up(m, history):
        if len(history) == 2:
            big = np.finfo(dtype).max / 4
            m.set_params([np.full_like(W, big) for W in m.weights], m.biases)

    with pytest.raises(TrainingDivergedError, match="epoch 3, step 1:"):
        model.fit(X, y, epochs=4, batch_size=24, optimizer=opt, callbacks=[blow_up])
    twin.fit(X, y, epochs=1, batch_size=24, optimizer=twin_opt)
    assert model.training_step == twin.training_step == 1
    assert opt.state[0]["step"] == twin_opt.state[0]["step"] == 1
    np.testing.assert_array_equal(model._backend_rng_state(), twin._backend_rng_state())
    for a, b in [(model.get_flat_params(), twin.get_flat_params())] + [
            (opt.state[0][k], twin_opt.state[0][k]) for k in ("exp_avg", "exp_avg_sq")]:
        np.testing.assert_array_equal(a, b)
    model.fit(X, y, epochs=2, batch_size=8, optimizer=opt)
    twin.fit(X, y, epochs=2, batch_size=8, optimizer=twin_opt)
    np.testing.assert_array_equal(model.get_flat_params(), twin.get_flat_params())


def test_divergence_on_the_first_step_rewinds_counter_and_shuffling(impl):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 4))
    y = rng.integers(0, 3, size=40)
    model = impl([4, 8, 3], seed=0)
    model.fit(X, y, epochs=1, batch_size=8)
    counter, shuffling = model.training_step, model._backend_rng_state()
    weights = model.weights
    weights[-1][...] = np.finfo(np.float32).max
    model.set_params(weights, model.biases)
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 1:"):
        model.fit(X, y, epochs=2, batch_size=8)
    assert model.training_step == counter
    np.testing.assert_array_equal(model._backend_rng_state(), shuffling)


def test_training_diverged_error_is_a_value_error():
    """scikit-learn's MLPs raise ValueError for non-finite weights: code catching that
    catches ours too."""
    err = TrainingDivergedError("x", history=None, epoch=1, step=1)
    assert isinstance(err, ValueError) and isinstance(err, FloatingPointError)


@pytest.mark.parametrize("call", ["loss_grad", "predict", "evaluate"])
def test_the_engine_boundary_refuses_x_it_cannot_read(call):
    """Engine methods are called with checked arrays; one that is not (wrong dtype, not
    C-contiguous) must raise before C reads it, never be read as if it were."""
    from fastmlp import MLP

    model = MLP([4, 3, 2], seed=0, dtype="float32")
    engine = model._engine
    labels = np.zeros(5, dtype=np.int32)
    bad = [np.ones((5, 4), dtype=np.float64),                  # wrong dtype
           np.asfortranarray(np.ones((5, 4), dtype=np.float32))]  # column-major
    for X in bad:
        with pytest.raises(ValueError):
            if call == "loss_grad":
                engine.loss_grad(X, labels, None)
            elif call == "predict":
                engine.predict(X)
            else:
                engine.evaluate(X, labels, None)
