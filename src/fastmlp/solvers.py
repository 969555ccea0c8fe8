"""Second-order and quasi-Newton training on the full data set (or large minibatches).

Each solver takes a model and ``(X, y)`` like ``fit``, minimizes the objective of
:meth:`fastmlp.MLP.gradients` (the mean loss, ``sample_weight``-weighted when given, plus the
penalties ``l2``, ``l1``, ... given as keywords) over all of X, changes the model's
parameters in place and returns a :class:`fastmlp.History` with one entry per iteration
(``epoch`` counts iterations; ``loss`` is the objective at the iterate, ``accuracy`` and the
``val_*`` entries as in ``fit``; ``lr`` is None: these methods have no learning rate).

=====================  ====================================================================
solver                 step
=====================  ====================================================================
newton                 ``-H^{-1} g`` (exact Hessian, dense: small nets)
damped_newton          ``-(H + alpha I)^{-1} g``, alpha adapted Levenberg-style
bfgs, lbfgs,           SciPy's ``minimize`` (BFGS, L-BFGS-B, Polak-Ribiere CG) on the
nonlinear_cg           engine's objective and gradient
hessian_free           truncated CG on ``(G + lambda I) d = -g`` with Gauss-Newton products
                       on a minibatch, warm-started, lambda adapted by the reduction ratio
                       (Martens 2010)
levenberg_marquardt    ``-(J^T J + mu I)^{-1} J^T r`` for squared-error (``mse``) models, by
                       CG on Gauss-Newton products, mu adapted by the gain ratio
=====================  ====================================================================

Non-finite losses are handled as ``fit`` handles them: when a step leads to a NaN or
infinite objective (or gradient), the model gets back the last parameters that gave a
finite one and :class:`fastmlp.TrainingDivergedError` is raised, carrying the History so
far. The damped solvers reject steps that increase the objective and raise their damping.

Every solver runs under the training loop ``fit`` uses (:class:`fastmlp.train.Loop`), so
besides the penalties it takes ``fit``'s loop keywords: ``callbacks`` (called as
``callback(model, history)`` after every iteration; a truthy return stops),
``early_stopping`` with ``monitor``, ``patience`` and ``min_delta`` (needs
``validation_data``; the model ends with the best iterate, ``history.best_epoch``), and
``verbose`` (one line per iteration).

SciPy's methods do their own vector algebra (BFGS also a dense matrix-vector product) with
NumPy's BLAS; while they run, that BLAS is limited to one thread when ``threadpoolctl`` is
installed (it comes with scikit-learn). Those operations are too small to gain from
threads, and on a busy machine BLAS threads waiting for a core made L-BFGS on digits twice
as slow (2.2x CPU time at load 5.6): the engine's gradient keeps the model's threads.
The limit is process-wide for the call's duration.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from fastmlp.errors import TrainingDivergedError
from fastmlp.train.data import check_validation_data
from fastmlp.train.history import History
from fastmlp.train.loop import Loop
from fastmlp.validation import check_float, check_int

__all__ = ["newton", "damped_newton", "bfgs", "lbfgs", "nonlinear_cg", "hessian_free",
           "levenberg_marquardt"]


_LOOP_OPTIONS = ("callbacks", "early_stopping", "monitor", "patience", "min_delta")


class _Problem:
    """The model, its data and objective options, and the training loop
    (:class:`fastmlp.train.Loop`: History, validation, early stopping, callbacks) with the
    divergence handling."""

    def __init__(self, model, X, y, sample_weight, options, validation_data, verbose,
                 iterations):
        self.model = model
        self.X = model._check_X(X)
        self.y = y if model.heads else np.asarray(y)  # (heads: a dict or tuple per head)
        self.sample_weight = sample_weight
        loop_options = {k: options.pop(k) for k in _LOOP_OPTIONS if k in options}
        self.penalties = options
        val = None if validation_data is None else check_validation_data(model,
                                                                         validation_data)
        if loop_options.get("early_stopping") and val is None:
            raise ValueError("early_stopping needs validation_data")
        self.iterations = check_int(iterations, "iterations", 1)
        self.loop = Loop(model, epochs=self.iterations, val=val, verbose=bool(verbose),
                         unit="iteration", **loop_options)
        self.history = self.loop.history
        self.theta = model.get_flat_params()  # the last parameters with a finite objective
        self.t0 = time.perf_counter()

    def options(self, rows=None) -> dict:
        """Objective keywords (of all rows, or of `rows`)."""
        sw = self.sample_weight
        if sw is not None and rows is not None:
            sw = np.asarray(sw)[rows]
        return {"sample_weight": sw, **self.penalties}

    def value_grad(self, theta: np.ndarray, iteration: int) -> tuple[float, np.ndarray]:
        """Objective and flat gradient at theta (set on the model); a non-finite one restores
        the last finite parameters and raises TrainingDivergedError."""
        if not np.isfinite(theta).all():
            raise self.diverged(iteration, "the step is not finite")
        self.model.set_flat_params(theta)
        g = self.model.gradients(self.X, self.y, **self.options())
        if not (np.isfinite(g["loss"]) and np.isfinite(g["flat"]).all()):
            raise self.diverged(iteration, f"the objective became {g['loss']}")
        return float(g["loss"]), g["flat"].astype(np.float64)

    def accept(self, theta: np.ndarray) -> None:
        self.theta = np.array(theta, dtype=self.model.dtype)
        self.model.set_flat_params(self.theta)

    def diverged(self, iteration: int, what: str) -> TrainingDivergedError:
        self.model.set_flat_params(self.theta)
        return TrainingDivergedError(
            f"solver diverged at iteration {iteration}: {what}. The model keeps the last "
            "weights that gave a finite objective. Try more damping, a penalty (l2=...), "
            "or rescaled inputs.", history=self.history, epoch=iteration, step=1)

    def record(self, iteration: int, loss: float, grad: np.ndarray) -> bool:
        """One History entry for the accepted parameters (set on the model); True when the
        loop says stop (early stopping or a callback)."""
        model = self.model
        acc = model.evaluate(self.X, self.y)["accuracy"] if model._loss.has_accuracy else None
        seconds = time.perf_counter() - self.t0
        self.t0 = time.perf_counter()
        norms = [float(np.linalg.norm(grad[w0:b0])) for (w0, b0, *_) in model._layout]
        return self.loop.end_epoch(iteration, loss=loss, accuracy=acc, lr=None,
                                   seconds=seconds, samples=len(self.X), grad_norm=norms)

    def finish(self) -> History:
        """The History; with early stopping the model gets the best iterate back."""
        return self.loop.finish()


def _damped_loop(problem: _Problem, damping: float, solve, adjust) -> History:
    """The loop of the Newton-type solvers. ``solve(theta, g, damping) -> (d, q)``: the step
    and the change ``q = g.d + d.B d / 2`` its quadratic model predicts (B undamped; None:
    accept every step). ``adjust(damping, rho) -> damping`` from the reduction ratio
    ``rho = (f(theta + d) - f(theta)) / q``. Steps that do not lower the objective are
    rejected, unless the model is None."""
    theta = problem.theta.astype(np.float64)
    f, g = problem.value_grad(theta, 0)
    for it in range(1, problem.iterations + 1):
        d, q = solve(theta, g, damping)
        f_new, g_new = problem.value_grad(theta + d, it)
        rho = (f_new - f) / q if q is not None and q < 0 else -np.inf
        damping = adjust(damping, rho)
        if q is None or f_new < f:
            theta, f, g = theta + d, f_new, g_new
        problem.accept(theta)
        if problem.record(it, f, g):
            break
    return problem.finish()


def newton(model, X: object, y: object, *, iterations: int = 10,
           validation_data: tuple | None = None, sample_weight: object = None,
           verbose: bool = False, **penalties: object) -> History:
    """Newton's method: ``theta <- theta - H^{-1} g`` with the exact, dense Hessian
    (:meth:`fastmlp.MLP.hessian`; for small nets). A singular H takes the minimum-norm
    least-squares solution. Pure Newton: no line search and no damping, so it heads for the
    nearest stationary point, saddle points included; on a quadratic objective (a linear net
    with ``mse``) one step lands on the minimizer."""
    problem = _Problem(model, X, y, sample_weight, penalties, validation_data, verbose,
                       iterations)

    def solve(theta, g, damping):
        H = model.hessian(problem.X, problem.y, **problem.options()).astype(np.float64)
        return np.linalg.lstsq(H, -g, rcond=None)[0], None

    return _damped_loop(problem, 0.0, solve, lambda damping, rho: damping)


def damped_newton(model, X: object, y: object, *, iterations: int = 20, alpha: float = 1.0,
                  adapt: bool = True, validation_data: tuple | None = None,
                  sample_weight: object = None, verbose: bool = False,
                  **penalties: object) -> History:
    """Damped Newton: ``theta <- theta - (H + alpha I)^{-1} g`` with the exact Hessian.

    Large alpha makes it gradient descent with rate 1/alpha, small alpha Newton's method.
    With `adapt` (Levenberg's rule) a step that lowers the objective is taken and alpha
    divided by 10; one that does not is rejected and alpha multiplied by 10. Without it
    every step is taken with the fixed alpha."""
    alpha = check_float(alpha, "alpha", low=0.0)
    problem = _Problem(model, X, y, sample_weight, penalties, validation_data, verbose,
                       iterations)

    def solve(theta, g, damping):
        H = model.hessian(problem.X, problem.y, **problem.options()).astype(np.float64)
        d = np.linalg.lstsq(H + damping * np.eye(len(g)), -g, rcond=None)[0]
        return d, (g @ d + 0.5 * d @ H @ d if adapt else None)

    def levenberg(damping, rho):
        return damping if not adapt else damping / 10 if rho > 0 else damping * 10

    return _damped_loop(problem, alpha, solve, levenberg)


def _conjugate_gradient(matvec, b: np.ndarray, x0: np.ndarray, max_iter: int, tol: float,
                        martens: bool) -> np.ndarray:
    """Approximate solution of A x = b (A symmetric positive definite) by CG from x0.

    Stops after `max_iter` steps, when ``||r|| <= tol ||b||``, or (`martens`) by Martens'
    (2010) relative progress test on ``phi(x) = x.A x / 2 - b.x``: after step i, stop when
    ``phi`` improved by less than ``5e-4 k`` relative over the last ``k = max(10, i/10)``."""
    x = x0.copy()
    r = b - matvec(x)
    p = r.copy()
    rr = r @ r
    phis = []
    bnorm = np.linalg.norm(b)
    for i in range(1, max_iter + 1):
        if np.sqrt(rr) <= tol * bnorm:
            break
        Ap = matvec(p)
        pAp = p @ Ap
        if pAp <= 0:  # no positive curvature left along p: keep what we have
            break
        a = rr / pAp
        x += a * p
        r -= a * Ap
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
        if martens:
            phis.append(-0.5 * x @ (r + b))  # x.A x / 2 - b.x with A x = b - r
            k = max(10, i // 10)
            if i > k and phis[-1] < 0 and (phis[-1] - phis[-1 - k]) / phis[-1] < 5e-4 * k:
                break
    return x


def _gauss_newton_solver(problem: _Problem, rows_for, cg_iterations: int, tol: float,
                         martens: bool, warm: float):
    """solve(theta, g, damping) for the Gauss-Newton solvers: CG on (G + damping I) d = -g,
    G from the rows that ``rows_for()`` picks (None: all), warm-started from `warm` times the
    previous step."""
    model = problem.model
    prev = {"d": None}

    def solve(theta, g, damping):
        rows = rows_for()
        X = problem.X if rows is None else problem.X.take(rows)
        y = problem.y if rows is None else problem.y[rows]
        options = problem.options(rows)

        def G(v):
            out = model.gnvp(X, y, v.astype(model.dtype), **options)
            return out.astype(np.float64)

        x0 = np.zeros_like(g) if prev["d"] is None else warm * prev["d"]
        d = _conjugate_gradient(lambda v: G(v) + damping * v, -g, x0, cg_iterations, tol,
                                martens)
        prev["d"] = d
        return d, g @ d + 0.5 * d @ G(d)

    return solve


def hessian_free(model, X: object, y: object, *, iterations: int = 20, damping: float = 1.0,
                 cg_iterations: int = 50, curvature_batch: int | float | None = None,
                 seed: int = 0, validation_data: tuple | None = None,
                 sample_weight: object = None, verbose: bool = False,
                 **penalties: object) -> History:
    """Hessian-free optimization (Martens 2010).

    Each iteration takes the gradient g on all of X and approximately solves
    ``(G + lambda I) d = -g`` by truncated conjugate gradients, where ``G v`` are
    Gauss-Newton products (:meth:`fastmlp.MLP.gnvp`, positive semi-definite) on a random
    minibatch of `curvature_batch` rows (an int, a fraction of the data, or None for
    ``max(256, n // 10)`` rows), CG warm-started from 0.95 times the previous step and
    stopped by Martens' relative-progress test or after `cg_iterations` steps. The
    reduction ratio ``rho`` of the actual to the predicted change adapts the damping
    (Levenberg-Marquardt): ``lambda *= 2/3`` when ``rho > 3/4``, ``lambda *= 3/2`` when
    ``rho < 1/4``; a step that does not lower the objective is rejected. Left out: CG
    backtracking and preconditioning (Martens' sections 4.6-4.7). `seed` picks the
    minibatches."""
    problem = _Problem(model, X, y, sample_weight, penalties, validation_data, verbose,
                       iterations)
    n = len(problem.X)
    if curvature_batch is None:
        size = min(n, max(256, n // 10))
    elif isinstance(curvature_batch, float):
        size = max(1, int(round(check_float(curvature_batch, "curvature_batch", low=0.0,
                                            high=1.0) * n)))
    else:
        size = min(n, check_int(curvature_batch, "curvature_batch", 1))
    rng = np.random.default_rng(seed)

    def rows_for():
        return None if size >= n else np.sort(rng.choice(n, size, replace=False))

    def martens_rule(lam, rho):
        return lam * 2 / 3 if rho > 0.75 else lam * 1.5 if rho < 0.25 else lam

    solve = _gauss_newton_solver(problem, rows_for, check_int(cg_iterations, "cg_iterations", 1),
                                 0.0, True, 0.95)
    return _damped_loop(problem, check_float(damping, "damping", positive=True),
                        solve, martens_rule)


def levenberg_marquardt(model, X: object, y: object, *, iterations: int = 20,
                        damping: float = 1e-3, cg_iterations: int = 200, cg_tol: float = 1e-8,
                        validation_data: tuple | None = None, sample_weight: object = None,
                        verbose: bool = False, **penalties: object) -> History:
    """Levenberg-Marquardt for squared-error models (``loss="mse"``).

    For the objective ``f = mean(r^2)`` of the residuals r the Gauss-Newton matrix is
    ``G = 2 J^T J / (n K)``, so ``(G + mu I) d = -g`` is the Levenberg-Marquardt system
    ``(J^T J + lambda I) d = -J^T r`` with ``lambda = mu n K / 2``. It is solved by CG on
    Gauss-Newton products over all of X (to relative residual `cg_tol`, at most
    `cg_iterations` steps, from zero). mu starts at `damping` and follows Nielsen's rule
    (1999): a step with gain ratio ``rho > 0`` is taken and ``mu *= max(1/3, 1 - (2 rho -
    1)^3)``; otherwise it is rejected and mu grows by a factor that doubles each time."""
    if model.loss != "mse":
        raise ValueError(f"levenberg_marquardt needs a squared-error model (loss='mse'), not "
                         f"{model.loss!r}; use hessian_free for other losses")
    problem = _Problem(model, X, y, sample_weight, penalties, validation_data, verbose,
                       iterations)
    growth = {"nu": 2.0}

    def nielsen(mu, rho):
        if rho > 0:
            growth["nu"] = 2.0
            return mu * max(1 / 3, 1 - (2 * rho - 1) ** 3)
        mu, growth["nu"] = mu * growth["nu"], growth["nu"] * 2
        return mu

    solve = _gauss_newton_solver(problem, lambda: None,
                                 check_int(cg_iterations, "cg_iterations", 1),
                                 check_float(cg_tol, "cg_tol", low=0.0), False, 0.0)
    return _damped_loop(problem, check_float(damping, "damping", positive=True),
                        solve, nielsen)


class _NonFinite(Exception):
    """The objective was not finite at a point SciPy asked for."""


class _Stop(Exception):
    """The loop stopped the run (early stopping or a callback)."""


def _one_blas_thread():
    """NumPy's BLAS limited to one thread (see the module docstring), or nothing without
    threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _minimize(method: str, model, X, y, iterations, gtol, scipy_options, validation_data,
              sample_weight, verbose, penalties) -> History:
    """SciPy's `method` on the objective and gradient, one History entry per iteration."""
    try:
        from scipy.optimize import minimize
    except ImportError:  # pragma: no cover - scipy is in the test extra
        raise ImportError(f"the {method} solver needs SciPy: pip install scipy") from None
    problem = _Problem(model, X, y, sample_weight, penalties, validation_data, verbose,
                       iterations)
    last = {}
    count = {"it": 0}

    def fun(x):
        theta = x.astype(model.dtype)
        if not np.isfinite(theta).all():
            raise _NonFinite("the step is not finite")
        model.set_flat_params(theta)
        g = model.gradients(problem.X, problem.y, **problem.options())
        if not (np.isfinite(g["loss"]) and np.isfinite(g["flat"]).all()):
            raise _NonFinite(f"the objective became {g['loss']}")
        last.update(x=x.copy(), loss=float(g["loss"]), grad=g["flat"].astype(np.float64))
        return last["loss"], last["grad"]

    def callback(xk):
        count["it"] += 1
        loss, grad = fun(xk) if not np.array_equal(last.get("x"), xk) else (last["loss"],
                                                                           last["grad"])
        problem.accept(xk)
        if problem.record(count["it"], loss, grad):
            raise _Stop

    options = {"maxiter": problem.iterations,
               "gtol": check_float(gtol, "gtol", low=0.0), **scipy_options}
    try:
        with _one_blas_thread():
            result = minimize(fun, problem.theta.astype(np.float64), jac=True, method=method,
                              callback=callback, options=options)
        problem.accept(result.x)
    except _NonFinite as exc:
        raise problem.diverged(count["it"] + 1, str(exc)) from None
    except _Stop:
        pass  # the model holds the iterate the loop stopped at
    return problem.finish()


def bfgs(model, X: object, y: object, *, iterations: int = 100, gtol: float = 1e-5,
         validation_data: tuple | None = None, sample_weight: object = None,
         verbose: bool = False, **penalties: object) -> History:
    """BFGS (SciPy's ``minimize(method="BFGS")``): a dense inverse-Hessian estimate built
    from gradient differences, with a Wolfe line search. For small nets (n_params^2
    memory). Stops after `iterations` iterations or when the gradient's max-norm < `gtol`."""
    return _minimize("BFGS", model, X, y, iterations, gtol, {}, validation_data,
                     sample_weight, verbose, penalties)


def lbfgs(model, X: object, y: object, *, iterations: int = 100, memory: int = 10,
          gtol: float = 1e-5, validation_data: tuple | None = None,
          sample_weight: object = None, verbose: bool = False,
          **penalties: object) -> History:
    """L-BFGS (SciPy's ``minimize(method="L-BFGS-B")`` without bounds): BFGS from the last
    `memory` gradient differences, linear memory. Stops as :func:`bfgs` (SciPy's relative
    function-change test is switched off, ``ftol=0``)."""
    return _minimize("L-BFGS-B", model, X, y, iterations, gtol,
                     {"maxcor": check_int(memory, "memory", 1), "ftol": 0.0}, validation_data,
                     sample_weight, verbose, penalties)


def nonlinear_cg(model, X: object, y: object, *, iterations: int = 100, gtol: float = 1e-5,
                 validation_data: tuple | None = None, sample_weight: object = None,
                 verbose: bool = False, **penalties: object) -> History:
    """Nonlinear conjugate gradients, Polak-Ribiere (SciPy's ``minimize(method="CG")``):
    search directions conjugate with respect to the local Hessian, with a line search.
    Stops as :func:`bfgs`."""
    return _minimize("CG", model, X, y, iterations, gtol, {}, validation_data,
                     sample_weight, verbose, penalties)
