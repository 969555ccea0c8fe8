"""scikit-learn drop-in estimators: ``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor``.

They take the constructor parameters of ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor``, expose the same methods and fitted attributes, and train with the C
engine (:class:`fastmlp.MLP`, float32 by default). Swap the import and keep the code::

    from fastmlp import MLPClassifier      # was: from sklearn.neural_network import ...

How the objective maps onto scikit-learn's (so that learning rates and ``alpha`` mean
the same): the data loss is log-loss (softmax for several classes, logistic for two
classes and for multilabel targets), squared error or the half Poisson deviance with an
``exp`` output (``MLPRegressor(loss="poisson")``), averaged over the batch (weighted by
``sample_weight``), and ``alpha`` adds ``alpha / (2 * batch weight) * ||W||^2`` over the
weights (not the biases). For whole batches this is exactly scikit-learn's objective;
``loss_`` and ``loss_curve_`` are reported on its scale (half the mean squared error; the
deviance summed over outputs). For the last, shorter batch of an epoch and for weighted
minibatches the ``alpha`` term uses the mean batch weight of the epoch. One difference
remains for several regression outputs with the squared error: scikit-learn's gradient
sums the outputs' errors while its loss averages them; here both average, so with k
outputs the data term's SGD steps are k times smaller and ``alpha`` weighs k times more.

``fit`` converts and checks X once and runs many epochs per engine call
(:class:`fastmlp.train.EpochRunner`); Python looks at the epoch losses after each call,
which is early enough for scikit-learn's stopping rules (see ``_epochs_per_run``).
Sparse X (``scipy.sparse``; CSR as it is, other formats converted once) is never made
dense: the engine's first layer multiplies the sparse rows (see :mod:`fastmlp.io.csr`);
``input_dropout`` needs dense X.

Extras beyond scikit-learn: ``dropout``, ``input_dropout``, ``batch_norm``, any fastmlp
optimizer as ``solver`` (with ``optimizer_params``), ``class_weight`` (classifier),
``threads`` and ``dtype``. ``solver="lbfgs"`` minimizes the engine's full-batch loss and
gradient with ``scipy.optimize.minimize(method="L-BFGS-B")``.
"""

from __future__ import annotations

import json
import numbers
import warnings

import numpy as np

try:
    from scipy.special import expit
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (
        _check_partial_fit_first_call,
        type_of_target,
        unique_labels,
    )
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "fastmlp.MLPClassifier and fastmlp.MLPRegressor need scikit-learn >= 1.6: "
        "pip install 'fastmlp[sklearn]'"
    ) from exc

from fastmlp import optim, serialization
from fastmlp.errors import TrainingDivergedError
from fastmlp.io.loading import build_model
from fastmlp.model import MLP
from fastmlp.model.locking import fitting
from fastmlp.train import EpochRunner
from fastmlp.train.splitting import holdout_split
from fastmlp.validation import check_dtype, check_input

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "leaky_relu": "leaky_relu"}
_OPTIMIZER_SOLVERS = {name.lower(): cls for name, cls in optim.OPTIMIZERS.items()}
_SOLVERS = ("lbfgs", *_OPTIMIZER_SOLVERS)
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_REGRESSION_LOSSES = ("squared_error", "poisson")
ORDER_ENTRIES = 1 << 22  # sample indices (8 bytes each) one run of epochs may lay out
_SPARSE_FORMATS = ("csr", "csc", "coo")  # scipy.sparse input taken as is; others become CSR


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, training loops, files."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, input_dropout=0.0, batch_norm=False, optimizer_params=None,
                 threads=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.batch_norm = batch_norm
        self.optimizer_params = optimizer_params
        self.threads = threads
        self.dtype = dtype

    # -- fitted weights ---------------------------------------------------------------------
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape (n_i, n_{i+1}): copies of the fitted
        model's; assign a new list to change them."""
        return self._fitted_model().weights

    @coefs_.setter
    def coefs_(self, value) -> None:
        model = self._fitted_model()
        model.set_params(list(value), model.biases)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, ``intercepts_[i]`` of shape (n_{i+1},): copies, as ``coefs_``."""
        return self._fitted_model().biases

    @intercepts_.setter
    def intercepts_(self, value) -> None:
        model = self._fitted_model()
        model.set_params(model.weights, list(value))

    def _fitted_model(self) -> MLP:
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet: "
                                 "its weights exist after fit()")
        return model

    # -- hyper-parameters ------------------------------------------------------------------
    def _checked_params(self) -> dict:
        """The hyper-parameters, validated (TypeError/ValueError naming the bad one)."""
        hidden = self.hidden_layer_sizes
        if _is_int(hidden):
            hidden = [hidden]
        if isinstance(hidden, str) or not hasattr(hidden, "__iter__") or \
                not all(_is_int(h) and h >= 1 for h in hidden):
            raise ValueError("hidden_layer_sizes must be a positive integer or a sequence of "
                             f"positive integers, got {self.hidden_layer_sizes!r}")
        hidden = [int(h) for h in hidden]
        _choice("activation", self.activation, _ACTIVATIONS)
        _choice("solver", self.solver, _SOLVERS)
        _choice("learning_rate", self.learning_rate, _LEARNING_RATES)
        if not (self.batch_size == "auto" or _is_int(self.batch_size) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got "
                             f"{self.batch_size!r}")
        _real("alpha", self.alpha, low=0.0)
        _real("learning_rate_init", self.learning_rate_init, low=0.0, open_low=True)
        _real("power_t", self.power_t, low=0.0)
        _real("tol", self.tol, low=0.0)
        _real("momentum", self.momentum, low=0.0, high=1.0, closed_high=True)
        _real("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
              open_low=True)
        _real("beta_1", self.beta_1, low=0.0, high=1.0)
        _real("beta_2", self.beta_2, low=0.0, high=1.0)
        _real("epsilon", self.epsilon, low=0.0, open_low=True)
        for name in ("max_iter", "max_fun"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        patience = self.n_iter_no_change
        if not (_is_int(patience) and patience >= 1 or _is_real(patience) and patience == np.inf):
            raise ValueError("n_iter_no_change must be an integer >= 1 or np.inf (never stop "
                             f"on tol), got {patience!r}")
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        extra = self.optimizer_params
        if extra is not None and not isinstance(extra, dict):
            raise TypeError(f"optimizer_params must be a dict or None, got {extra!r}")
        if self.solver == "lbfgs" and (extra or _any_regularizer(self)):
            raise ValueError("solver='lbfgs' minimizes a deterministic full-batch objective: "
                             "dropout, input_dropout, batch_norm and optimizer_params need a "
                             "stochastic solver")
        return {"hidden": hidden, "dtype": check_dtype(self.dtype)}

    # -- training ---------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and targets y; returns self.

        ``sample_weight`` (n_samples,) weighs each sample's loss (batch loss is
        ``sum(w * loss) / sum(w)``).
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _check_stochastic(self) -> bool:
        """partial_fit exists for the stochastic solvers only (as in scikit-learn)."""
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers; "
                                 "solver='lbfgs' is not stochastic")
        return True

    def _fit(self, X, y, sample_weight, incremental):
        with fitting(self):  # one fit or partial_fit at a time (fastmlp.model.locking)
            return self._fit_unguarded(X, y, sample_weight, incremental)

    def _fit_unguarded(self, X, y, sample_weight, incremental):
        params = self._checked_params()
        first = "model_" not in self.__dict__ or not (self.warm_start or incremental)
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=first, y_numeric=not isinstance(self, ClassifierMixin),
                             accept_sparse=_SPARSE_FORMATS)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        targets = self._encode_targets(y, first, incremental)
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, dtype=np.float64)
        weights = self._weigh_classes(y, weights)
        if weights is not None:
            if (weights < 0).any():
                raise ValueError("sample_weight must be non-negative")
            if not (weights > 0).any():
                raise ValueError("sample_weight is zero for every sample; there is nothing "
                                 "to learn")
        if first:
            self._initialize(X.shape[1], targets.shape[1] if targets.ndim == 2 else
                             len(self.classes_), params)
        else:
            fitted = (list(self.model_.layer_sizes[1:-1]), self.model_.dtype, self.model_.loss)
            if fitted != (params["hidden"], params["dtype"], self._loss_name):
                raise ValueError(
                    f"warm_start and partial_fit continue the fitted network (hidden layers "
                    f"{fitted[0]}, {fitted[1]}, loss {fitted[2]}); hidden_layer_sizes="
                    f"{self.hidden_layer_sizes!r}, dtype={self.dtype!r} ask for another. Fit "
                    "afresh (warm_start=False).")
        X = check_input(X, X.shape[1], params["dtype"])  # finite in the network's dtype
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, targets, weights)
        else:
            self._fit_stochastic(X, y, targets, weights, incremental)
        return self

    def _initialize(self, n_features: int, n_outputs: int, params: dict) -> None:
        """A fresh model: scikit-learn's Glorot-uniform weights and biases."""
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        sizes = [n_features, *params["hidden"], n_outputs]
        gain = np.sqrt(1.0 / 3.0) if self.activation == "logistic" else 1.0
        model = MLP(sizes, activation=_ACTIVATIONS[self.activation], loss=self._loss_name,
                    init="xavier_uniform", init_kwargs={"gain": float(gain)},
                    dtype=params["dtype"], seed=seed, threads=self.threads,
                    input_dropout=self.input_dropout, dropout=self.dropout,
                    batch_norm=self.batch_norm)
        bias_rng = np.random.default_rng(seed)
        model.set_params(model.weights, [
            bias_rng.uniform(-b, b, size=n_out)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
            for b in [gain * np.sqrt(6.0 / (n_in + n_out))]
        ])
        self.model_ = model
        self._split_seed = seed
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(sizes)
        self.out_activation_ = self._out_activation()
        self._optimizer = None
        if self.solver != "lbfgs":
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _make_optimizer(self) -> optim.Optimizer:
        """The update rule of `solver`, with scikit-learn's hyper-parameters."""
        extra = dict(self.optimizer_params or {})
        cls = _OPTIMIZER_SOLVERS[self.solver]
        lr = self.learning_rate_init * self._lr_scale()
        if cls is optim.SGD:
            kwargs = {"momentum": self.momentum,
                      "nesterov": bool(self.nesterovs_momentum and self.momentum > 0)}
        elif issubclass(cls, optim.Adam):
            kwargs = {"betas": (self.beta_1, self.beta_2), "eps": self.epsilon}
        else:
            kwargs = {}
        kwargs.update(extra)
        try:
            return cls(lr=lr, **kwargs)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"solver={self.solver!r} with optimizer_params={extra}: {exc}") \
                from None

    def _fit_stochastic(self, X, y, targets, weights, incremental) -> None:
        if self._optimizer is None or not incremental:
            self._optimizer = self._make_optimizer()
        early_stopping = self.early_stopping and not incremental
        X_val = y_val = w_val = None
        if early_stopping:
            X, targets, weights, X_val, y_val, w_val = self._validation_split(X, y, targets,
                                                                               weights)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` larger than the sample size. It is going to "
                              "be clipped", UserWarning, stacklevel=5)
            batch_size = min(self.batch_size, n)
        mean_weight = 1.0 if weights is None else float(weights.mean())
        l2 = self.alpha / (self._loss_scale() * batch_size * mean_weight)
        runner = EpochRunner(self.model_, X, targets, weights, self._optimizer, batch_size,
                             bool(self.shuffle), l2)
        self.n_iter_ = 0  # epochs of this call (loss_curve_ and t_ go on counting)
        try:
            stop = False
            while not stop and self.n_iter_ < self.max_iter:
                rates = self._epoch_rates(self._epochs_per_run(early_stopping, incremental, n), n)
                for loss in runner.epochs(rates):
                    stop = self._end_epoch(loss, n, early_stopping, incremental, X_val, y_val,
                                           w_val)
                    if stop:
                        break
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        except TrainingDivergedError as exc:
            if not early_stopping:
                raise
            warnings.warn(f"{exc} Training stopped; the model keeps the weights of the best "
                          "validation score.", ConvergenceWarning, stacklevel=4)
        finally:
            runner.close()
        if early_stopping:
            self.model_.set_flat_params(self._best_params[0])
            self.model_.set_batch_norm_state(self._best_params[1])

    def _epochs_per_run(self, early_stopping, incremental, n) -> int:
        """How many epochs the engine may run before Python must look: one with early
        stopping (validation after each) and in partial_fit; else the epochs left, but no
        more than can pass before the no-improvement count could reach its limit (only at
        a run's last epoch can training stop or the adaptive rate change), and no more
        than ORDER_ENTRIES sample indices."""
        if early_stopping or incremental:
            return 1
        epochs = self.max_iter - self.n_iter_
        if self.n_iter_no_change != np.inf:
            epochs = min(epochs, max(1, self.n_iter_no_change + 1 - self._no_improvement_count))
        return max(1, min(epochs, ORDER_ENTRIES // n))

    def _epoch_rates(self, epochs, n) -> list[float]:
        """The learning rate of each of the next `epochs` epochs: the optimizer's, and for
        sgd's invscaling the rate that each epoch end sets (see _end_epoch)."""
        rates = [self._optimizer.lr]
        for i in range(1, epochs):
            rates.append(self._invscaling_rate(self.t_ + i * n) if self._invscaling()
                         else self._optimizer.lr)
        return rates

    def _invscaling(self) -> bool:
        return self.solver == "sgd" and self.learning_rate == "invscaling"

    def _invscaling_rate(self, t: int) -> float:
        return self.learning_rate_init * self._lr_scale() / (t + 1) ** self.power_t

    def _end_epoch(self, loss, n, early_stopping, incremental, X_val, y_val, w_val) -> bool:
        """scikit-learn's bookkeeping after an epoch with mean engine loss `loss`: the
        fitted attributes, the no-improvement count, learning-rate changes, the
        convergence warning. Returns whether training stops."""
        self.n_iter_ += 1
        self.loss_ = loss * self._loss_scale()
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(early_stopping, X_val, y_val, w_val)
        if self._invscaling():
            self._optimizer.lr = self._invscaling_rate(self.t_)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if (self.solver == "sgd" and self.learning_rate == "adaptive"
                    and self._optimizer.lr / self._lr_scale() > 1e-6):
                self._optimizer.lr /= 5.0
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{msg} Setting learning rate to "
                          f"{self._optimizer.lr / self._lr_scale():f}")
            else:
                if self.verbose:
                    print(f"{msg} Stopping.")
                return True
        if incremental:
            return True
        if self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=5)
        return False

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, w_val) -> None:
        """scikit-learn's rule: count epochs that fail to improve by more than tol."""
        if early_stopping:
            score, loss = self._validation_metrics(X_val, y_val, w_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            best, best_loss = self.best_validation_score_, self._best_validation_loss
            # A score within tol of the best is a tie, decided by the validation loss
            # (accuracy on a small validation set moves in coarse steps). The model kept is
            # the best by that order; best_validation_score_ is its score.
            higher, tie = score > best + self.tol, score >= best - self.tol
            if higher or (tie and loss < best_loss - self.tol):
                self._no_improvement_count = 0
            else:
                self._no_improvement_count += 1
            if higher or (tie and loss < best_loss):
                self.best_validation_score_ = score
                self._best_validation_loss = loss
                self._best_params = (self.model_.get_flat_params(),
                                     self.model_.batch_norm_state())
        else:
            best = np.inf if self.best_loss_ is None else self.best_loss_  # None: partial_fit
            if self.loss_curve_[-1] > best - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(best, self.loss_curve_[-1])

    def _validation_split(self, X, y, targets, weights):
        """Hold out `validation_fraction` of the sample weight by the content of the samples
        (see :mod:`fastmlp.train.splitting`), stratified for single-output classification."""
        labels = None
        if isinstance(self, ClassifierMixin) and y.ndim == 1:
            labels = targets.ravel()
        train, val = holdout_split(X, targets, weights, self.validation_fraction,
                                   self._split_seed, labels)
        take = lambda a, i: None if a is None else a[i]  # noqa: E731
        if weights is not None and not (weights[train] > 0).any():
            raise ValueError("every training sample left after the validation split has "
                             "sample_weight 0")
        self._best_params = (self.model_.get_flat_params(), self.model_.batch_norm_state())
        self._best_validation_loss = np.inf
        return (X[train], targets[train], take(weights, train), X[val], y[val],
                take(weights, val))

    def _fit_lbfgs(self, X, targets, weights) -> None:
        from scipy.optimize import minimize

        model, scale = self.model_, self._loss_scale()
        mass = X.shape[0] if weights is None else float(weights.sum())
        l2 = self.alpha / (scale * mass)
        w = None if weights is None else weights.astype(model.dtype)

        def objective(x):
            if not np.isfinite(x).all():
                return np.inf, np.zeros_like(x)
            model.set_flat_params(x)
            g = model.gradients(X, targets, sample_weight=w, l2=l2)
            return scale * g["loss"], scale * g["flat"].astype(np.float64)

        iterations = [0]

        def report(intermediate_result):
            iterations[0] += 1
            print(f"Iteration {iterations[0]}, loss = {intermediate_result.fun:.8f}")

        result = minimize(objective, model.get_flat_params().astype(np.float64),
                          method="L-BFGS-B", jac=True,
                          callback=report if self.verbose else None,
                          options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                   "gtol": self.tol})
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {result.nit} iteration(s) "
                          f"({result.message}). Increase max_iter/max_fun or scale the data.",
                          ConvergenceWarning, stacklevel=4)
        self.n_iter_ = int(min(result.nit, self.max_iter))
        self.loss_ = float(result.fun)
        model.set_flat_params(result.x)

    # -- prediction -------------------------------------------------------------------------
    def _validated(self, X):
        """X checked against the fit (an array, or a scipy sparse matrix of the formats the
        model takes as they are)."""
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                             accept_sparse=_SPARSE_FORMATS)

    # -- model files ------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted estimator to `path` (atomically, no pickle; see
        :mod:`fastmlp.serialization`); ``fastmlp.load(path)`` reads it back. The optimizer
        state is not stored: ``partial_fit`` after loading starts a fresh one."""
        check_is_fitted(self)
        params = self.get_params(deep=False)
        if not (params["random_state"] is None or _is_int(params["random_state"])):
            params["random_state"] = None  # a RandomState object is not stored
        fitted = {name: getattr(self, name) for name in self._FITTED if name in self.__dict__}
        arrays = {f"model.{k}": v for k, v in self.model_._state_arrays().items()}
        extra = self._extra_state(arrays)
        config = {"params": _jsonable(params, "parameter"), "fitted": _jsonable(fitted, "fit"),
                  "model": self.model_.config(), "extra": extra}
        kind = f"{__name__}.{type(self).__name__}"
        serialization.write_atomic(path, serialization.dumps(kind, config, arrays))

    _FITTED = ("n_iter_", "t_", "n_outputs_", "n_layers_", "out_activation_", "loss_",
               "loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
               "n_features_in_", "feature_names_in_")

    @classmethod
    def _from_file(cls, config: dict, arrays: dict, source: str, threads: int | None):
        parts = ("params", "fitted", "model", "extra")
        if set(config) != set(parts) or not all(isinstance(config[k], dict) for k in parts):
            raise ValueError(f"{source}: invalid {cls.__name__} file: expected the objects "
                             f"{list(parts)}")
        try:
            est = cls(**_from_json(config["params"]))
            if threads is not None:
                est.threads = threads
            model = build_model(MLP, config["model"], {k[6:]: v for k, v in arrays.items()
                                                       if k.startswith("model.")}, source,
                                threads if threads is not None else config["params"]["threads"])
            fitted = _from_json(config["fitted"])
            est.__dict__.update({k: v for k, v in fitted.items() if k in cls._FITTED})
            if "feature_names_in_" in fitted:
                est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
            est.model_ = model
            est._optimizer = None
            est._no_improvement_count = 0
            est._split_seed = model.seed
            est._restore_extra(config["extra"], arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid {cls.__name__} file: {exc}") from None
        return est

    def _extra_state(self, arrays: dict) -> dict:
        return {}

    def _restore_extra(self, extra: dict, arrays: dict) -> None:
        pass

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # the engine multiplies sparse rows (fastmlp.io.csr)
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier with scikit-learn's API, trained by the C engine.

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` (see there), plus:

    class_weight : None, "balanced" or dict {class: weight}
        Multiplies each sample's weight by its class's weight.
    dropout, input_dropout : float or per-hidden-layer list
        Dropout rates of the hidden layers' outputs and of the inputs (stochastic solvers).
    batch_norm : bool, "before"/"after" or per-hidden-layer list
        Batch normalization of the hidden layers (see :class:`fastmlp.MLP`).
    solver : "adam", "sgd", "lbfgs" or any fastmlp optimizer name ("adamw", "rmsprop",
        "adagrad", "adadelta", "rprop", "deltabardelta")
    optimizer_params : dict
        Further keyword arguments of that optimizer (e.g. ``{"weight_decay": 0.01}``).
    threads : int, optional
        Engine threads (default: all cores).
    dtype : "float32" (default) or "float64"
        Precision of the network.

    Fitted attributes: ``classes_``, ``coefs_``, ``intercepts_``, ``loss_``,
    ``loss_curve_``, ``best_loss_``, ``validation_scores_``, ``best_validation_score_``,
    ``n_iter_``, ``t_``, ``n_features_in_``, ``n_layers_``, ``n_outputs_``,
    ``out_activation_``, and ``model_`` (the trained :class:`fastmlp.MLP`).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, dropout=0.0, input_dropout=0.0, batch_norm=False,
                 optimizer_params=None, threads=None, dtype="float32"):
        _BaseMLP.__init__(self, **_arguments(locals(), "class_weight"))
        self.class_weight = class_weight

    @available_if(lambda est: est._check_stochastic())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y) continuing the current model (stochastic solvers only).

        ``classes`` (all labels that will ever appear) is required on the first call and,
        when given later, must be the same; y may hold only labels among them. For
        multilabel y the classes are its columns. Early stopping applies to ``fit`` only:
        partial_fit trains on all of (X, y).
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    @property
    def _loss_name(self) -> str:
        return "cross_entropy" if self._label_binarizer.y_type_ == "multiclass" \
            else "binary_cross_entropy"

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _loss_scale(self) -> float:
        # scikit-learn sums the multilabel log-loss over labels; the engine averages
        return float(self.n_outputs_) if self._label_binarizer.y_type_.startswith(
            "multilabel") else 1.0

    def _lr_scale(self) -> float:
        return self._loss_scale()

    def _encode_targets(self, y, first, incremental):
        """Class labels as the engine's targets: int32 indices (several classes) or 0/1
        columns (two classes; multilabel). The classes are set and checked as scikit-learn
        does: a new fit learns them from y; warm_start (also with partial_fit) needs y to
        hold exactly the known classes; partial_fit needs y to hold only known ones."""
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass", "multilabel-indicator"):
            raise ValueError(f"Unknown label type: {kind!r}; MLPClassifier takes class labels "
                             "or a multilabel indicator matrix")
        if "classes_" not in self.__dict__ or not (self.warm_start or incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            present = unique_labels(y)
            if self.warm_start and set(present) != set(self.classes_):
                raise ValueError("warm_start can only be used where `y` has the same classes "
                                 f"as in the previous call to fit. Previously got "
                                 f"{self.classes_}, `y` has {present}")
            if len(np.setdiff1d(present, self.classes_)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {present}.")
        if self._label_binarizer.y_type_ == "multiclass" and not kind.startswith("multilabel"):
            # every label of y is one of the sorted classes_ (checked above): its index is
            # what the binarizer's one-hot row's argmax would give, without the one-hot
            # matrix and the binarizer's second look at y (1.3 ms of a 1,347-sample fit)
            return np.searchsorted(self.classes_, y).astype(np.int32)
        Y = self._label_binarizer.transform(y)
        return np.ascontiguousarray(Y, dtype=np.float64)

    def _weigh_classes(self, y, weights):
        if self.class_weight is None:
            return weights
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError("class_weight is not supported for multilabel targets; use "
                             "sample_weight")
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names classes that are not in the data: "
                                 f"{sorted(unknown, key=str)}")
        elif self.class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got "
                             f"{self.class_weight!r}")
        cw = compute_sample_weight(self.class_weight, y)
        return cw if weights is None else weights * cw

    def _validation_metrics(self, X, y, w) -> tuple[float, float]:
        """(accuracy, log-loss) on validation data, weighted by w."""
        proba = self._probabilities(X)
        Y = self._label_binarizer.transform(y).astype(np.float64)
        if self.n_outputs_ == 1:
            Y = np.column_stack([1 - Y[:, 0], Y[:, 0]])
        per_sample = -(Y * np.log(proba)).sum(axis=1)
        if self._label_binarizer.y_type_.startswith("multilabel"):
            per_sample -= ((1 - Y) * np.log1p(-proba)).sum(axis=1)
        return (float(accuracy_score(y, self._labels(proba), sample_weight=w)),
                float(np.average(per_sample, weights=w)))

    def _probabilities(self, X) -> np.ndarray:
        """float64 class probabilities from the network's logits: softmax for several
        classes; logistic (two classes: both columns; multilabel: one per label), kept
        within [eps, 1 - eps] (eps: float64's machine epsilon) so that no probability is
        exactly 0 or 1."""
        z = self.model_.predict_logits(X).astype(np.float64)
        if self.out_activation_ == "softmax":
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            return z / z.sum(axis=1, keepdims=True)
        eps = np.finfo(np.float64).eps
        p = np.clip(expit(z), eps, 1 - eps)
        return np.column_stack([1 - p[:, 0], p[:, 0]]) if self.n_outputs_ == 1 else p

    def _labels(self, proba) -> np.ndarray:
        if self._label_binarizer.y_type_ == "multiclass":
            return self.classes_[proba.argmax(axis=1)]
        return self._label_binarizer.inverse_transform(proba[:, 1] if self.n_outputs_ == 1
                                                       else proba)

    def predict(self, X):
        """Predicted class labels (n_samples,), or an indicator matrix for multilabel."""
        return self._labels(self.predict_proba(X))

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) ordered as ``classes_``, float64;
        for multilabel targets one probability per label."""
        return self._probabilities(self._validated(X))

    def predict_log_proba(self, X):
        """Logarithm of ``predict_proba``."""
        return np.log(self.predict_proba(X))

    def _extra_state(self, arrays):
        classes = self.classes_
        if classes.dtype.kind in "iub":
            arrays["classes"] = classes.astype(np.int64)
            return {"classes": "array", "y_type": self._label_binarizer.y_type_}
        if classes.dtype.kind == "f":
            arrays["classes"] = classes.astype(np.float64)
            return {"classes": "array", "y_type": self._label_binarizer.y_type_}
        if all(isinstance(c, str) for c in classes):
            return {"classes": [str(c) for c in classes], "y_type": self._label_binarizer.y_type_}
        raise TypeError("save() supports class labels that are integers, floats or strings; "
                        f"got {classes.dtype}")

    def _restore_extra(self, extra, arrays):
        classes = arrays["classes"] if extra["classes"] == "array" else \
            np.asarray(extra["classes"], dtype=object)
        if extra["classes"] != "array":
            classes = np.asarray(classes.tolist())
        n_out = self.model_.layer_sizes[-1]
        if classes.ndim != 1 or len(classes) > max(2, n_out):  # before np.eye(len(classes))
            raise ValueError(f"{classes.shape} classes do not fit a network with {n_out} outputs")
        lb = LabelBinarizer()
        lb.fit(classes if extra["y_type"] != "multilabel-indicator" else
               np.eye(len(classes), dtype=int))
        lb.y_type_ = extra["y_type"]
        self._label_binarizer = lb
        self.classes_ = lb.classes_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor with scikit-learn's API, trained by the C engine.

    Parameters
    ----------
    loss : "squared_error" (default) or "poisson"
        As in scikit-learn: half the squared error with an identity output (``loss_`` is
        half the mean squared error), or the half Poisson deviance
        ``xlogy(y, y / mu) - y + mu`` with ``mu = exp(output)`` (log link; ``predict``
        returns ``mu``, y must be >= 0), averaged over samples and summed over outputs.

    The other parameters, extras and fitted attributes are those of
    :class:`MLPClassifier` (without ``class_weight`` and ``classes_``).
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, input_dropout=0.0, batch_norm=False, optimizer_params=None,
                 threads=None, dtype="float32"):
        _BaseMLP.__init__(self, **_arguments(locals(), "loss"))
        self.loss = loss

    @property
    def _loss_name(self) -> str:
        return "poisson" if self.loss == "poisson" else "mse"

    def _checked_params(self) -> dict:
        _choice("loss", self.loss, _REGRESSION_LOSSES)
        return super()._checked_params()

    @available_if(lambda est: est._check_stochastic())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) continuing the current model (stochastic solvers only).
        Early stopping applies to ``fit`` only: partial_fit trains on all of (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _loss_scale(self) -> float:
        if self.loss == "poisson":  # scikit-learn sums the deviance over outputs
            return float(self.n_outputs_)
        return 0.5  # scikit-learn's squared error is half the engine's mean squared error

    def _lr_scale(self) -> float:
        # SGD: the engine's gradient is 1/scale of scikit-learn's (one output for the
        # squared error); scaling SGD's rate by it gives the same steps
        return self._loss_scale() if self.solver == "sgd" else 1.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    def _encode_targets(self, y, first, incremental):
        if self.loss == "poisson" and y.size and y.min() < 0:
            raise ValueError("Some value(s) of y are out of the valid range of the loss "
                             f"'poisson': y must be >= 0, got {y.min():g}")
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first and Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} output(s) but the model was fitted with "
                             f"{self.n_outputs_}")
        return np.ascontiguousarray(Y, dtype=np.float64)

    def _weigh_classes(self, y, weights):
        return weights

    def _validation_metrics(self, X, y, w) -> tuple[float, float]:
        """(R^2, mean squared error) on validation data, weighted by w."""
        pred = self.model_.predict(X).astype(np.float64)
        pred = pred.ravel() if y.ndim == 1 else pred
        error = np.average(np.square(pred - y).reshape(len(y), -1).mean(axis=1), weights=w)
        return float(r2_score(y, pred, sample_weight=w)), float(error)

    def predict(self, X):
        """Predictions (n_samples,) for one output, else (n_samples, n_outputs), in X's
        float dtype."""
        X = self._validated(X)
        out = self.model_.predict(X).astype(X.dtype, copy=False)
        return out.ravel() if self.n_outputs_ == 1 else out


# -- helpers ---------------------------------------------------------------------------------
def _arguments(values: dict, own: str) -> dict:
    """A subclass's ``locals()`` at the start of its ``__init__``: the arguments of
    ``_BaseMLP.__init__`` (all but ``self`` and the subclass's `own` parameter)."""
    return {k: v for k, v in values.items() if k not in ("self", own)}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _choice(name, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


def _real(name, value, *, low=None, high=None, open_low=False, closed_high=False) -> None:
    if not _is_real(value) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low or open_low and value == low):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {low}, got {value}")
    if high is not None and (value > high or not closed_high and value == high):
        raise ValueError(f"{name} must be {'<=' if closed_high else '<'} {high}, got {value}")


def _any_regularizer(est) -> bool:
    dropout = est.dropout if isinstance(est.dropout, (list, tuple)) else [est.dropout]
    bn = est.batch_norm if isinstance(est.batch_norm, (list, tuple)) else [est.batch_norm]
    return any(d != 0 for d in dropout) or est.input_dropout != 0 or any(bn)


def _jsonable(values: dict, what: str) -> dict:
    """`values` as JSON that :func:`_from_json` turns back into equal values (tuples, dicts
    with any keys, arrays and NumPy scalars are tagged); TypeError names anything that
    cannot be stored."""
    def convert(v):
        if isinstance(v, np.ndarray):
            return {"__ndarray__": convert(v.tolist())}
        if isinstance(v, (np.generic,)):
            return v.item()
        if isinstance(v, tuple):
            return {"__tuple__": [convert(x) for x in v]}
        if isinstance(v, list):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {"__dict__": [[convert(k), convert(x)] for k, x in v.items()]}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"cannot store {what} value {v!r} of type {type(v).__name__}")

    out = {k: convert(v) for k, v in values.items()}
    json.dumps(out)
    return out


def _from_json(values: dict) -> dict:
    def convert(v):
        if isinstance(v, dict) and "__ndarray__" in v:
            return np.asarray(v["__ndarray__"])
        if isinstance(v, dict) and "__tuple__" in v:
            return tuple(convert(x) for x in v["__tuple__"])
        if isinstance(v, dict) and "__dict__" in v:
            return {_hashable(convert(k)): convert(x) for k, x in v["__dict__"]}
        if isinstance(v, list):
            return [convert(x) for x in v]
        return v

    return {k: convert(v) for k, v in values.items()}


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v
