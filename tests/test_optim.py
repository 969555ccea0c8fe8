"""Optimizers: the C update against the NumPy reference over many steps and every
option that changes the rule, the reference against hand-written formulas, state
round trips, convergence, and bad input."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import optim
from fastmlp.reference import optim as ref_optim

# every option combination that changes an update rule
CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adagrad", {}),
    ("Adagrad", {"eps_placement": "inside", "eps": 1e-3, "lr_decay": 0.01}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01,
                 "initial_accumulator_value": 0.1, "eps": 1e-6}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.01}),
    ("RMSprop", {}),
    ("RMSprop", {"weight_decay": 0.01, "alpha": 0.9}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "eps": 1e-4}),
    ("RMSprop", {"eps_placement": "inside", "eps": 1e-3}),
    ("RMSprop", {"eps_placement": "inside", "centered": True, "momentum": 0.5, "eps": 1e-4}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.1, "amsgrad": True}),
    ("Rprop", {}),
    ("Rprop", {"lr": 0.1, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2)}),
    ("DeltaBarDelta", {}),
    ("DeltaBarDelta", {"lr": 0.05, "kappa": 1e-3, "phi": 0.2, "theta": 0.5,
                       "weight_decay": 0.01}),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CONFIGS)]


def make(name, kwargs):
    return optim.OPTIMIZERS[name](**kwargs)


def run_reference(opt, params, grad_seq):
    params = [p.copy() for p in params]
    states = [opt._new_state(p.shape, p.dtype) for p in params]
    for grads in grad_seq:
        for p, g, st in zip(params, grads, states):
            ref_optim.update(type(opt).__name__, opt._engine_hyper(), st, p, g, opt.lr)
    return params


def random_problem(dtype, steps=60, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=(7, 5)).astype(dtype), rng.normal(size=(5,)).astype(dtype)]
    # correlated gradients, so sign-based rules (Rprop, DeltaBarDelta) see both cases
    grad_seq, g = [], [rng.normal(size=p.shape) for p in params]
    for _ in range(steps):
        g = [0.7 * a + rng.normal(size=a.shape) for a in g]
        grad_seq.append([a.astype(dtype) for a in g])
    return params, grad_seq


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
def test_c_step_matches_reference(name, kwargs, dtype, tol):
    params, grad_seq = random_problem(dtype)
    initial = [p.copy() for p in params]
    opt = make(name, kwargs)
    expected = run_reference(make(name, kwargs), params, grad_seq)
    for grads in grad_seq:
        opt.step(params, grads)
    assert opt.state[0]["step"] == len(grad_seq)
    for p, e, p0 in zip(params, expected, initial):
        assert p.dtype == np.dtype(dtype)
        assert np.abs(p - e).max() <= tol * max(1.0, np.abs(e).max())
        assert np.abs(p - p0).max() > 1e-3  # the steps did move the parameters


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
def test_state_round_trip_continues_identically(name, kwargs):
    params, grad_seq = random_problem("float64", steps=20, seed=3)
    straight = [p.copy() for p in params]
    opt = make(name, kwargs)
    for grads in grad_seq:
        opt.step(straight, grads)
    resumed = [p.copy() for p in params]
    first = make(name, kwargs)
    for grads in grad_seq[:8]:
        first.step(resumed, grads)
    saved = copy.deepcopy(first.state_dict())
    second = optim.OPTIMIZERS[name]()
    second.load_state_dict(saved)
    assert second.hyper() == first.hyper()
    for grads in grad_seq[8:]:
        second.step(resumed, grads)
    for a, b in zip(straight, resumed):
        assert np.array_equal(a, b)


def test_new_state_holds_its_initial_values():
    # the slots come from _buffers.faulted (written once now, see its docstring); a freed
    # dirty block of the same size is what the allocator hands out next, so an unfilled
    # array would show its 7s
    for shape in ((1000,), (300_000,)):
        dirty = np.full(shape, 7.0, dtype=np.float32)
        del dirty
        state = optim.Adam(amsgrad=True).state_for(0, shape, np.dtype(np.float32))
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert state[name].shape == shape and state[name].dtype == np.float32
            assert not state[name].any()
    rate = optim.DeltaBarDelta(lr=0.25).state_for(0, (7,), np.dtype(np.float64))["rate"]
    assert rate.dtype == np.float64 and (rate == 0.25).all()


def test_state_dict_is_a_copy_and_rejects_other_optimizers():
    opt = optim.Adam()
    p = [np.ones(3)]
    opt.step(p, [np.ones(3)])
    d = opt.state_dict()
    d["state"][0]["exp_avg"][:] = 99
    assert not np.any(opt.state[0]["exp_avg"] == 99)
    with pytest.raises(ValueError, match="not a SGD state dict"):
        optim.SGD().load_state_dict(d)


# -- the reference against the written formulas, one scalar weight -------------------------
def scalar_run(opt, w0, grads):
    p = np.array([w0])
    state = opt._new_state((1,), p.dtype)
    out = []
    for g in grads:
        ref_optim.update(type(opt).__name__, opt._engine_hyper(), state, p, np.array([g]), opt.lr)
        out.append(p[0])
    return out


def test_reference_sgd_momentum_nesterov_by_hand():
    g1, g2 = 0.5, -0.2
    assert scalar_run(optim.SGD(lr=0.1), 1.0, [g1]) == [pytest.approx(1 - 0.1 * g1)]
    # torch: b1 = g1; b2 = m b1 + (1 - d) g2; w -= lr b
    m, d = 0.9, 0.1
    w1 = 1 - 0.1 * g1
    w2 = w1 - 0.1 * (m * g1 + (1 - d) * g2)
    assert scalar_run(optim.SGD(lr=0.1, momentum=m, dampening=d), 1.0, [g1, g2]) == \
        [pytest.approx(w1), pytest.approx(w2)]
    # nesterov: w -= lr (g + m b)
    b2 = m * g1 + g2
    w1 = 1 - 0.1 * (g1 + m * g1)
    w2 = w1 - 0.1 * (g2 + m * b2)
    assert scalar_run(optim.SGD(lr=0.1, momentum=m, nesterov=True), 1.0, [g1, g2])[1] == \
        pytest.approx(w2)


def test_reference_adam_by_hand():
    lr, b1, b2, eps, g = 0.01, 0.9, 0.999, 1e-8, 0.3
    m, v = (1 - b1) * g, (1 - b2) * g * g
    mhat, vhat = m / (1 - b1), v / (1 - b2)
    w1 = 1.0 - lr * mhat / (math.sqrt(vhat) + eps)
    assert scalar_run(optim.Adam(lr=lr), 1.0, [g])[0] == pytest.approx(w1, rel=1e-12)
    # AdamW decays the weight first: w = w (1 - lr wd), then the Adam step
    assert scalar_run(optim.AdamW(lr=lr, weight_decay=0.5), 1.0, [g])[0] == \
        pytest.approx(1.0 * (1 - lr * 0.5) - lr * mhat / (math.sqrt(vhat) + eps), rel=1e-12)


def test_reference_adagrad_adadelta_rmsprop_by_hand():
    g = 0.4
    assert scalar_run(optim.Adagrad(lr=0.1), 1.0, [g])[0] == \
        pytest.approx(1 - 0.1 * g / (math.sqrt(g * g) + 1e-10))
    v = 0.1 * g * g
    delta = math.sqrt(0 + 1e-6) / math.sqrt(v + 1e-6) * g
    assert scalar_run(optim.Adadelta(), 1.0, [g])[0] == pytest.approx(1 - delta)
    v = 0.01 * g * g
    assert scalar_run(optim.RMSprop(), 1.0, [g])[0] == \
        pytest.approx(1 - 0.01 * g / (math.sqrt(v) + 1e-8))
    ga = 0.01 * g
    assert scalar_run(optim.RMSprop(centered=True), 1.0, [g])[0] == \
        pytest.approx(1 - 0.01 * g / (math.sqrt(v - ga * ga) + 1e-8))


def test_reference_eps_inside_the_square_root_by_hand():
    """Keras's / the course's forms: g / sqrt(v + eps)."""
    g, eps = 0.4, 0.01
    assert scalar_run(optim.Adagrad(lr=0.1, eps=eps, eps_placement="inside"), 1.0, [g])[0] == \
        pytest.approx(1 - 0.1 * g / math.sqrt(g * g + eps))
    v = 0.1 * g * g
    assert scalar_run(optim.RMSprop(alpha=0.9, eps=eps, eps_placement="inside"), 1.0,
                      [g])[0] == pytest.approx(1 - 0.01 * g / math.sqrt(v + eps))
    with pytest.raises(ValueError, match="eps_placement"):
        optim.RMSprop(eps_placement="under")


def test_reference_rprop_and_delta_bar_delta_by_hand():
    # Rprop: same sign -> step * 1.2; sign flip -> step * 0.5 and no move
    w = scalar_run(optim.Rprop(lr=0.1), 1.0, [1.0, 2.0, -3.0, -1.0])
    assert w == pytest.approx([0.9, 0.9 - 0.12, 0.9 - 0.12, 0.9 - 0.12 + 0.06])
    # DeltaBarDelta: rate grows by kappa while the sign agrees with the bar, shrinks on flips
    opt = optim.DeltaBarDelta(lr=0.1, kappa=0.05, phi=0.5, theta=0.0)
    w = scalar_run(opt, 1.0, [1.0, 1.0, -1.0])
    # step 1: bar 0 -> rate 0.1; step 2: agree -> 0.15; step 3: flip -> 0.075
    assert w == pytest.approx([0.9, 0.9 - 0.15, 0.9 - 0.15 + 0.075])


# -- fit through the engine equals fit through the reference ----------------------------------
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 2e-4)])
@pytest.mark.parametrize("name,kwargs", CONFIGS[::2], ids=IDS[::2])
def test_fit_with_optimizer_engine_matches_reference(name, kwargs, dtype, tol):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 3, size=60)
    models = [impl([5, 8, 3], activation="tanh", dtype=dtype, seed=4)
              for impl in (fastmlp.MLP, fastmlp.reference.MLP)]
    opts = [make(name, kwargs) for _ in models]
    for m, o in zip(models, opts):
        m.fit(X, y, epochs=3, batch_size=16, optimizer=o, clip_grad_norm=5.0)
    a, b = models
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        assert np.abs(p - q).max() <= tol * max(1.0, np.abs(q).max())
    assert opts[0].state[0]["step"] == opts[1].state[0]["step"] == 12


def test_fit_continues_with_the_same_optimizer():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 2, size=40)
    once = fastmlp.MLP([4, 6, 2], seed=2, threads=1)
    once.fit(X, y, epochs=4, batch_size=8, shuffle=False, optimizer=optim.Adam(lr=0.01))
    twice = fastmlp.MLP([4, 6, 2], seed=2, threads=1)
    opt = optim.Adam(lr=0.01)
    twice.fit(X, y, epochs=2, batch_size=8, shuffle=False, optimizer=opt)
    twice.fit(X, y, epochs=2, batch_size=8, shuffle=False, optimizer=opt)
    for p, q in zip(once.weights, twice.weights):
        assert np.array_equal(p, q)
    with pytest.raises(ValueError, match="state of another model"):
        fastmlp.MLP([4, 3, 2]).fit(X, y, optimizer=opt)
    restored = optim.Adam()
    restored.load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="use a new optimizer for a different model"):
        fastmlp.MLP([4, 3, 2]).fit(X, y, optimizer=restored)  # unbound, but the wrong shape


# -- convergence ------------------------------------------------------------------------------
TUNED = {  # (class, kwargs, steps) for the ill-conditioned quadratic
    "SGD": {"lr": 0.009, "momentum": 0.9},
    "Adagrad": {"lr": 0.5},
    "Adadelta": {"lr": 1.0, "rho": 0.95, "eps": 1e-4},
    "RMSprop": {"lr": 0.01},
    "Adam": {"lr": 0.05},
    "AdamW": {"lr": 0.05, "weight_decay": 0.0},
    "Rprop": {"lr": 0.1},
    "DeltaBarDelta": {"lr": 0.01, "kappa": 1e-3, "phi": 0.1},
}


@pytest.mark.parametrize("name", list(TUNED))
def test_minimizes_an_ill_conditioned_quadratic(name):
    A = np.diag([1.0, 10.0, 100.0])  # condition number 100
    x = [np.array([1.0, 1.0, 1.0])]
    loss = lambda: 0.5 * x[0] @ A @ x[0]  # noqa: E731
    start = loss()
    opt = make(name, TUNED[name])
    for _ in range(500):
        opt.step(x, [A @ x[0]])
    # AdaDelta's unit-free step hovers around the minimum of a quadratic (it never
    # anneals); the others converge by many orders of magnitude
    assert loss() < (1e-2 if name == "Adadelta" else 1e-6) * start


@pytest.mark.parametrize("name", list(TUNED))
def test_trains_fashion_mnist_subset(name):
    data = fastmlp.datasets.load_embedded_fashion_mnist()
    X, y = data.X_train[:2000], data.y_train[:2000]
    model = fastmlp.MLP([784, 64, 10], seed=0)
    lr = {"SGD": 0.05, "Adagrad": 0.01, "Adadelta": 1.0, "RMSprop": 0.001, "Adam": 0.001,
          "AdamW": 0.001, "Rprop": 0.001, "DeltaBarDelta": 0.01}[name]
    before = model.evaluate(X, y)["loss"]
    # Rprop adapts on the sign of the full gradient: it is a full-batch method
    epochs, batch = (40, len(X)) if name == "Rprop" else (3, 32)
    history = model.fit(X, y, epochs=epochs, batch_size=batch,
                        optimizer=optim.OPTIMIZERS[name](lr=lr))
    assert history.loss[-1] < 0.8 * before
    assert model.score(data.X_test, data.y_test) > 0.6


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: optim.SGD(lr=-0.1), "lr must be > 0"),
        (lambda: optim.SGD(lr=0.0), "lr must be > 0"),
        (lambda: optim.SGD(momentum=-1), "momentum must be >= 0"),
        (lambda: optim.SGD(nesterov=True), "Nesterov momentum requires"),
        (lambda: optim.Adam(betas=(1.0, 0.999)), r"betas\[0\] must be < 1"),
        (lambda: optim.Adam(betas=(0.9, -0.1)), r"betas\[1\] must be >= 0"),
        (lambda: optim.Adam(eps=0.0), "eps must be > 0"),
        (lambda: optim.Adam(eps=-1e-8), "eps must be > 0"),
        (lambda: optim.Adam(lr=float("nan")), "lr must be finite"),
        (lambda: optim.Adagrad(eps=0), "eps must be > 0"),
        (lambda: optim.Adadelta(rho=1.5), "rho must be < 1"),
        (lambda: optim.RMSprop(alpha=-0.1), "alpha must be >= 0"),
        (lambda: optim.Rprop(etas=(1.5, 1.2)), r"etas\[0\] must be < 1"),
        (lambda: optim.Rprop(step_sizes=(1.0, 0.1)), "min <= max"),
        (lambda: optim.DeltaBarDelta(phi=1.0), "phi must be < 1"),
        (lambda: optim.AdamW(weight_decay=-1), "weight_decay must be >= 0"),
    ],
)
def test_bad_hyperparameters(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_bad_step_arguments():
    opt = optim.Adam()
    p = [np.zeros(3), np.zeros((2, 2))]
    with pytest.raises(ValueError, match="got 2 parameter arrays but 1 gradients"):
        opt.step(p, [np.zeros(3)])
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(4,\)"):
        opt.step(p, [np.zeros(3), np.zeros(4)])
    with pytest.raises(TypeError, match=r"grads\[0\] is float32 but params\[0\] is float64"):
        opt.step(p, [np.zeros(3, np.float32), np.zeros((2, 2))])
    with pytest.raises(TypeError, match=r"params\[0\] must be a float32 or float64"):
        opt.step([np.zeros(3, int)], [np.zeros(3, int)])
    ro = np.zeros(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        opt.step([ro], [np.zeros(3)])
    with pytest.raises(TypeError, match="lists of arrays"):
        opt.step(np.zeros(3), np.zeros(3))
    assert opt.state == []  # nothing was touched


def test_non_contiguous_params_are_updated_in_place():
    big = np.ones((4, 6))
    view = big[:, ::2]
    optim.SGD(lr=0.5).step([view], [np.ones((4, 3))])
    assert np.all(big[:, ::2] == 0.5) and np.all(big[:, 1::2] == 1.0)


def test_fit_optimizer_arguments():
    X, y = np.zeros((4, 2)), np.zeros(4, int)
    model = fastmlp.MLP([2, 2])
    with pytest.raises(ValueError, match="pass the learning rate to the optimizer"):
        model.fit(X, y, lr=0.1, optimizer=optim.SGD())
    with pytest.raises(TypeError, match="optimizer must be a fastmlp.optim optimizer"):
        model.fit(X, y, optimizer="adam")
    with pytest.raises(ValueError, match="clip_grad_norm must be > 0"):
        model.fit(X, y, clip_grad_norm=0)


def test_fit_state_dict_round_trip_equals_uninterrupted_training():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(48, 4)), rng.integers(0, 3, size=48)
    straight = fastmlp.MLP([4, 7, 3], seed=3, dtype="float64")
    straight.fit(X, y, epochs=4, batch_size=8, shuffle="once",
                 optimizer=optim.RMSprop(lr=0.01, momentum=0.5, centered=True))
    first = fastmlp.MLP([4, 7, 3], seed=3, dtype="float64")
    opt = optim.RMSprop(lr=0.01, momentum=0.5, centered=True)
    first.fit(X, y, epochs=2, batch_size=8, shuffle="once", optimizer=opt)
    saved_params, saved_opt = first.get_params(), copy.deepcopy(opt.state_dict())
    # rebuild: a new model (same seed: same data order under shuffle="once") and optimizer
    resumed = fastmlp.MLP([4, 7, 3], seed=3, dtype="float64")
    resumed.set_params(*saved_params)
    opt2 = optim.RMSprop()
    opt2.load_state_dict(saved_opt)
    resumed.fit(X, y, epochs=2, batch_size=8, shuffle="once", optimizer=opt2)
    for p, q in zip(straight.weights + straight.biases, resumed.weights + resumed.biases):
        assert np.array_equal(p, q)


def test_history_records_rates_speed_gradient_norms_and_callbacks_stop():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, size=60)
    norms = []
    for impl in (fastmlp.MLP, fastmlp.reference.MLP):
        seen = []

        def stop_after_two(model, history, seen=seen):
            seen.append((model, len(history)))
            return len(history) == 2

        m = impl([4, 6, 5, 3], seed=0, dtype="float64")
        h = m.fit(X, y, epochs=5, batch_size=20, lr=0.1, callbacks=[stop_after_two])
        assert len(h) == 2 and h.stopped_epoch == 2 and seen == [(m, 1), (m, 2)]
        assert all(len(g) == 3 and all(v > 0 for v in g) for g in h.grad_norm)
        assert all(v > 0 for v in h.samples_per_s)
        assert h.grad_norm[0] != h.grad_norm[1]
        norms.append(h.grad_norm)
    # the engine's record matches the reference's independently computed gradients
    np.testing.assert_allclose(norms[0], norms[1], rtol=1e-9)
    # ... and is each layer's weight-gradient norm of the last step, summed in float64 even
    # for a float32 model
    m = fastmlp.MLP([4, 300, 5, 3], seed=0)
    h = m.fit(X.astype(np.float32), y, epochs=1, batch_size=60, lr=0.1)
    grad = m._backend_last_grad()
    exact = [np.linalg.norm(grad[w0 : w0 + a * b].astype(np.float64))
             for (w0, _, a, b, _, _) in m._layout]
    np.testing.assert_allclose(h.grad_norm[-1], exact, rtol=1e-13)
    with pytest.raises(TypeError, match="callbacks must be callables"):
        fastmlp.MLP([4, 3]).fit(X, y, callbacks=[42])
