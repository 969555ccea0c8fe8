"""Second-order and quasi-Newton solvers: Newton's one-step solution of least squares,
damped Newton's gradient-descent limit, descent of the damped Gauss-Newton methods, the
quasi-Newton methods' common minimizer of a convex problem, and divergence handling."""

from __future__ import annotations

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import solvers

from conftest import IMPLEMENTATIONS, make_problem

ALL = ["newton", "damped_newton", "bfgs", "lbfgs", "nonlinear_cg", "hessian_free",
       "levenberg_marquardt"]


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_newton_solves_linear_least_squares_in_one_step(impl):
    X, y = make_problem("mse", 50, 3, 2, seed=1)
    model = IMPLEMENTATIONS[impl]([3, 2], loss="mse", dtype="float64", seed=0)
    history = solvers.newton(model, X, y, iterations=1)
    A = np.hstack([X, np.ones((50, 1))])
    solution = np.linalg.lstsq(A, y, rcond=None)[0]
    W, b = model.get_params()
    np.testing.assert_allclose(W[0], solution[:3], atol=1e-12)
    np.testing.assert_allclose(b[0], solution[3], atol=1e-12)
    assert history.epoch == [1] and history.lr == [None]
    assert history.loss[0] == pytest.approx(np.mean((A @ solution - y) ** 2), rel=1e-12)


def test_damped_newton_with_large_alpha_is_a_gradient_step():
    X, y = make_problem("cross_entropy", 30, 4, 3, seed=2)
    model = fastmlp.MLP([4, 5, 3], activation="tanh", dtype="float64", seed=2)
    theta, alpha = model.get_flat_params(), 1e6
    g = model.gradients(X, y)["flat"]
    solvers.damped_newton(model, X, y, iterations=1, alpha=alpha, adapt=False)
    step = model.get_flat_params() - theta
    # (H + alpha I)^-1 g = g / alpha + O(||H|| / alpha^2)
    np.testing.assert_allclose(step, -g / alpha, rtol=1e-4, atol=1e-3 * np.abs(g).max() / alpha)


@pytest.mark.parametrize("name,loss", [("damped_newton", "cross_entropy"),
                                       ("damped_newton", "mse"),
                                       ("hessian_free", "cross_entropy"),
                                       ("hessian_free", "mse"),
                                       ("levenberg_marquardt", "mse")])
def test_damped_solvers_lower_the_loss_monotonically(name, loss):
    X, y = make_problem(loss, 200, 4, 3, seed=3)
    model = fastmlp.MLP([4, 8, 3], activation="tanh", loss=loss, dtype="float64", seed=3)
    start = model.gradients(X, y, l2=1e-3)["loss"]
    history = getattr(solvers, name)(model, X, y, iterations=8, l2=1e-3)
    assert len(history) == 8
    assert np.all(np.diff([start] + history.loss) <= 0)  # rejected steps keep the weights
    assert history.loss[-1] < 0.8 * start
    assert history.loss[-1] == pytest.approx(model.gradients(X, y, l2=1e-3)["loss"], rel=1e-12)


def test_hessian_free_uses_minibatch_curvature_and_float32():
    X, y = make_problem("cross_entropy", 600, 10, 4, seed=4)
    model = fastmlp.MLP([10, 16, 4], activation="relu", dtype="float32", seed=4)
    start = model.evaluate(X, y)["loss"]
    history = solvers.hessian_free(model, X, y, iterations=6, curvature_batch=0.2,
                                   validation_data=(X[:100], y[:100]))
    assert np.all(np.diff([start] + history.loss) <= 0)
    assert history.loss[-1] < 0.8 * start  # (random labels: log 4 = 1.39 is chance)
    assert all(v is not None for v in history.val_loss + history.accuracy)


@pytest.mark.parametrize("name", ["bfgs", "lbfgs", "nonlinear_cg"])
def test_quasi_newton_methods_find_the_minimizer_of_a_convex_problem(name):
    """Softmax regression with L2 on weights and biases is strictly convex: all three find
    the point where the gradient vanishes."""
    X, y = make_problem("cross_entropy", 80, 4, 3, seed=5)
    model = fastmlp.MLP([4, 3], dtype="float64", seed=5)
    options = {"l2": 0.1, "penalize_biases": True}
    history = getattr(solvers, name)(model, X, y, iterations=200, gtol=1e-9, **options)
    assert np.abs(model.gradients(X, y, **options)["flat"]).max() <= 1e-6
    assert history.loss[-1] <= history.loss[0]
    assert np.all(np.isfinite(history.grad_norm))


class _Exploding(fastmlp.reference.MLP):
    """The reference MLP whose objective turns NaN once a parameter passes `limit` away
    from the start: a stand-in for an overflowing step."""

    def arm(self, limit):
        self.start, self.limit = self.get_flat_params(), limit

    def _backend_loss_grad(self, *args, **kwargs):
        loss, grad, dX = super()._backend_loss_grad(*args, **kwargs)
        if np.abs(self._flat - self.start).max() > self.limit:
            loss = float("nan")
        return loss, grad, dX


@pytest.mark.parametrize("name", ALL)
def test_non_finite_objective_restores_the_last_finite_weights(name):
    X, y = make_problem("mse", 40, 3, 2, seed=6)
    model = _Exploding([3, 4, 2], activation="tanh", loss="mse", dtype="float64", seed=6)
    model.arm(0.05)
    before = model.get_flat_params()
    options = {"alpha": 1e-3, "adapt": False} if name == "damped_newton" else {}
    with pytest.raises(fastmlp.TrainingDivergedError, match="diverged") as info:
        getattr(solvers, name)(model, X, y, iterations=50, **options)
    after = model.get_flat_params()
    assert np.abs(after - before).max() <= 0.05  # weights that gave a finite objective
    assert np.isfinite(model.gradients(X, y)["loss"])
    assert info.value.history is not None and info.value.epoch >= 1


def test_levenberg_marquardt_needs_squared_errors():
    X, y = make_problem("cross_entropy", 10, 3, 2, seed=7)
    with pytest.raises(ValueError, match="mse"):
        solvers.levenberg_marquardt(fastmlp.MLP([3, 2], seed=0), X, y)


def _classification(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    return X[:80], y[:80], X[80:], y[80:]


@pytest.mark.parametrize("name", ["damped_newton", "hessian_free", "lbfgs"])
def test_a_callback_stops_a_solver_after_the_iteration_it_returns_true(name):
    X, y, _, _ = _classification()
    model = fastmlp.MLP([4, 6, 2], activation="tanh", dtype="float64", seed=0)
    seen = []

    def stop_at_three(m, history):
        seen.append(len(history))
        return len(history) == 3

    history = getattr(solvers, name)(model, X, y, iterations=20, callbacks=[stop_at_three])
    assert seen == [1, 2, 3] and len(history) == 3 and history.stopped_epoch == 3


@pytest.mark.parametrize("name", ["damped_newton", "lbfgs"])
def test_solver_early_stopping_keeps_the_best_validation_iterate(name):
    X, y, Xv, yv = _classification()
    yv = 1 - yv  # validation labels that get worse as training fits the training set
    model = fastmlp.MLP([4, 6, 2], activation="tanh", dtype="float64", seed=0)
    kept = {}

    def remember(m, history):
        kept[len(history)] = m.get_flat_params()

    history = getattr(solvers, name)(model, X, y, iterations=30, validation_data=(Xv, yv),
                                     early_stopping=True, patience=2, callbacks=[remember])
    best = int(np.argmin(history.val_loss)) + 1
    assert history.best_epoch == best and history.stopped_epoch == best + 2
    np.testing.assert_array_equal(model.get_flat_params(), kept[best])
    assert model.evaluate(Xv, yv)["loss"] == min(history.val_loss)


def test_solver_early_stopping_needs_validation_data():
    X, y, _, _ = _classification()
    model = fastmlp.MLP([4, 6, 2], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="early_stopping needs validation_data"):
        solvers.lbfgs(model, X, y, early_stopping=True)


@pytest.mark.parametrize("name", ["bfgs", "lbfgs", "nonlinear_cg"])
def test_scipy_solvers_run_with_one_blas_thread_and_restore_the_limit(name):
    """While SciPy's method runs, NumPy's BLAS is limited to one thread (its vector algebra
    gains nothing from threads, and waits for busy cores); afterwards the limit is what it
    was."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [d["num_threads"] for d in threadpoolctl.threadpool_info()
                if d["user_api"] == "blas"]

    X, y, _, _ = _classification()
    model = fastmlp.MLP([4, 6, 2], activation="tanh", dtype="float64", seed=0)
    seen = []
    # two BLAS threads to start from, whatever this machine's core count
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert before and all(t == 2 for t in before), before
        getattr(solvers, name)(model, X, y, iterations=3,
                               callbacks=[lambda m, h: seen.append(blas_threads())])
        assert blas_threads() == before
    assert seen and all(threads == [1] * len(before) for threads in seen)
