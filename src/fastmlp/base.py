"""What the C-engine model and the NumPy reference share: constructor checks,
initialization, the public API and the training loop. A subclass supplies the
backend (the `_backend_*` methods) that computes."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from fastmlp.activations import canonical_activation
from fastmlp.errors import TrainingDivergedError
from fastmlp.history import History
from fastmlp.init import check_initializer, initialize
from fastmlp.losses import get_loss, prepare_targets
from fastmlp.optim import SGD, Optimizer
from fastmlp.schedules import Constant, Schedule
from fastmlp.validation import check_dtype, check_features, check_float, check_int

MAX_LAYERS = 64  # dense layers; the engine's FM_MAX_LAYERS
STATUS_OK = 0  # engine status codes (csrc/fastmlp.h)
STATUS_NONFINITE_LOSS = 1
STATUS_NONFINITE_GRAD = 3
_CHUNK_SECONDS = 0.2  # engine work per Python round trip during fit
_SHUFFLE_MODES = {True: "epoch", "epoch": "epoch", "once": "once", False: "none", "none": "none"}


class BaseMLP:
    """A multilayer perceptron: dense layers, a hidden activation, an output loss.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths from the input to the output layer, e.g. ``[784, 256, 128, 10]``.
    activation : str or sequence of str
        Hidden-layer activation (``identity``, ``sigmoid``/``logistic``, ``tanh``, ``relu``,
        ``leaky_relu``), one name for all hidden layers or one per hidden layer.
    loss : str
        ``cross_entropy``, ``binary_cross_entropy``, ``mse``, ``hinge`` or ``multi_hinge``;
        it fixes the output activation (see :mod:`fastmlp.losses`).
    init : str
        Weight initializer (see :mod:`fastmlp.init`), with parameters in `init_kwargs`.
    init_kwargs : dict, optional
        Parameters of the initializer, e.g. ``{"std": 0.1}`` for ``normal``.
    bias_init : float
        Constant initial bias (0 by default; e.g. 0.1 for ReLU units).
    leaky_slope : float
        Negative-side slope of ``leaky_relu``, in [0, 1).
    dtype : {"float32", "float64"}
        Parameter and compute precision. float32 is the fast path.
    seed : int, optional
        Seeds the initializer and the shuffling. Same seed (and thread count) gives
        bit-identical training. None draws a fresh seed (kept in ``self.seed``).
    threads : int, optional
        Threads for the engine (None: OpenMP's default, i.e. ``OMP_NUM_THREADS`` or all
        cores). Results do not depend on it.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str | Sequence[str] = "relu",
        loss: str = "cross_entropy",
        init: str = "he_normal",
        *,
        init_kwargs: dict | None = None,
        bias_init: float = 0.0,
        leaky_slope: float = 0.01,
        dtype: str = "float32",
        seed: int | None = None,
        threads: int | None = None,
    ) -> None:
        self._sizes = _check_layer_sizes(layer_sizes)
        n_hidden = len(self._sizes) - 2
        if isinstance(activation, str):
            acts = [canonical_activation(activation)] * n_hidden
        else:
            acts = [canonical_activation(a) for a in activation]
            if len(acts) != n_hidden:
                raise ValueError(
                    f"got {len(acts)} activations for {n_hidden} hidden layers"
                )
        self._activations = acts
        self._loss = get_loss(loss)
        check_initializer(init, init_kwargs)
        self._init = init
        self._init_kwargs = dict(init_kwargs or {})
        self._bias_init = check_float(bias_init, "bias_init")
        self._leaky_slope = check_float(leaky_slope, "leaky_slope", low=0.0, high=1.0)
        self._dtype = check_dtype(dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self._seed = check_int(seed, "seed", 0)
        self._backend_setup(None if threads is None else check_int(threads, "threads", 1))
        rng = np.random.default_rng(self._seed)
        Ws, bs = [], []
        for n_in, n_out in zip(self._sizes[:-1], self._sizes[1:]):
            W = initialize(init, n_in, n_out, rng, **self._init_kwargs)
            if not np.isfinite(W).all():
                raise ValueError(f"init {init!r} with {self._init_kwargs} gave non-finite weights")
            Ws.append(W.astype(self._dtype))
            bs.append(np.full(n_out, self._bias_init, dtype=self._dtype))
        self._backend_set_params(Ws, bs)
        self._backend_seed(self._seed)

    # -- description ------------------------------------------------------------------------
    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return self._sizes

    @property
    def n_layers(self) -> int:
        """Number of dense (weight) layers."""
        return len(self._sizes) - 1

    @property
    def activation(self) -> list[str]:
        """Activation name of each hidden layer."""
        return list(self._activations)

    @property
    def loss(self) -> str:
        return self._loss.name

    @property
    def output_activation(self) -> str:
        return self._loss.output_activation

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def leaky_slope(self) -> float:
        return self._leaky_slope

    def __repr__(self) -> str:
        return (
            f"{type(self).__module__}.{type(self).__name__}({list(self._sizes)}, "
            f"activation={self._activations!r}, loss={self.loss!r}, dtype={self._dtype.name!r})"
        )

    # -- parameters ---------------------------------------------------------------------------
    @property
    def weights(self) -> list[np.ndarray]:
        """Copies of the weight matrices; ``weights[l]`` has shape ``(n_l, n_{l+1})``."""
        return self._backend_get_params()[0]

    @property
    def biases(self) -> list[np.ndarray]:
        """Copies of the bias vectors; ``biases[l]`` has shape ``(n_{l+1},)``."""
        return self._backend_get_params()[1]

    def get_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(weights, biases)``, copies."""
        return self._backend_get_params()

    def set_params(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> None:
        """Copy weights and biases in, after checking count, shapes, dtypes and finiteness.

        Values are cast to the model's dtype; float16, complex and non-numeric arrays are
        rejected.
        """
        L = self.n_layers
        if len(weights) != L or len(biases) != L:
            raise ValueError(
                f"expected {L} weight matrices and {L} bias vectors, "
                f"got {len(weights)} and {len(biases)}"
            )
        Ws, bs = [], []
        for l, (W, b) in enumerate(zip(weights, biases)):
            shape_w, shape_b = (self._sizes[l], self._sizes[l + 1]), (self._sizes[l + 1],)
            Ws.append(_check_param(W, shape_w, self._dtype, f"weights[{l}]"))
            bs.append(_check_param(b, shape_b, self._dtype, f"biases[{l}]"))
        self._backend_set_params(Ws, bs)

    # -- inference ----------------------------------------------------------------------------
    def predict(self, X: object) -> np.ndarray:
        """Network output after the output activation, shape ``(n, n_outputs)``:
        class probabilities for ``cross_entropy``, per-output probabilities for
        ``binary_cross_entropy``, raw scores otherwise."""
        return self._backend_predict(self._check_X(X))

    def predict_labels(self, X: object) -> np.ndarray:
        """Predicted classes: argmax for ``cross_entropy``/``multi_hinge``; 0/1 per output
        for ``binary_cross_entropy``; -1/+1 per output for ``hinge``."""
        out = self.predict(X)
        name = self._loss.name
        if name in ("cross_entropy", "multi_hinge"):
            return out.argmax(axis=1)
        if name == "binary_cross_entropy":
            return (out > 0.5).astype(np.int64)
        if name == "hinge":
            return np.where(out > 0, 1, -1)
        raise ValueError("mse has no class labels; use predict()")

    def evaluate(self, X: object, y: object) -> dict[str, float | None]:
        """Mean loss and accuracy over ``(X, y)`` (accuracy None for ``mse``)."""
        X = self._check_X(X)
        labels, dense = self._targets(y, X.shape[0])
        return self._evaluate_prepared(X, labels, dense)

    def score(self, X: object, y: object) -> float:
        """Accuracy on ``(X, y)``."""
        if not self._loss.has_accuracy:
            raise ValueError("mse has no accuracy; use evaluate(X, y)['loss']")
        return self.evaluate(X, y)["accuracy"]

    def loss_and_grad(
        self, X: object, y: object, *, return_input_grad: bool = False
    ) -> tuple:
        """Mean loss over the batch and its gradients.

        Returns ``(loss, dW, db)``, lists shaped like ``weights`` and ``biases``; with
        ``return_input_grad=True`` also ``dX = dloss/dX`` of shape ``X.shape``.
        """
        X = self._check_X(X)
        labels, dense = self._targets(y, X.shape[0])
        loss, dW, db, dX = self._backend_loss_grad(X, labels, dense, bool(return_input_grad))
        return (loss, dW, db, dX) if return_input_grad else (loss, dW, db)

    # -- training -----------------------------------------------------------------------------
    def fit(
        self,
        X: object,
        y: object,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float | None = None,
        shuffle: bool | str = True,
        validation_data: tuple | None = None,
        verbose: bool = False,
        *,
        optimizer: Optimizer | None = None,
        lr_schedule: Schedule | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        clip_error_if_nonfinite: bool = True,
    ) -> History:
        """Train by minibatch gradient descent and return the per-epoch History.

        Parameters
        ----------
        epochs : int
            Passes over the data (>= 1).
        batch_size : int
            Samples per step: 1 is pure stochastic gradient descent, ``len(X)`` (or more)
            is full-batch gradient descent. The last batch of an epoch may be smaller.
        lr : float, optional
            Learning rate of plain SGD (default 0.01) when no `optimizer` is given; with an
            optimizer, set the rate on the optimizer instead.
        shuffle : True/"epoch", "once" or False/"none"
            Reshuffle every epoch, shuffle once before the first epoch and keep that
            order, or keep the data's order. Shuffling is seeded by the model's seed.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch (``val_loss``, ``val_accuracy``).
        verbose : bool
            Print one line per epoch.
        optimizer : fastmlp.optim.Optimizer, optional
            The update rule (default ``SGD(lr)``). Its state lives on the optimizer object,
            so passing the same optimizer to a later ``fit`` continues where this one ended.
        lr_schedule : fastmlp.schedules.Schedule, optional
            Learning rate per epoch or per batch, from the optimizer's ``lr``.
        clip_grad_norm : float, optional
            Scale each step's gradient to at most this global L2 norm
            (``torch.nn.utils.clip_grad_norm_``). A NaN/inf norm stops training with
            TrainingDivergedError unless ``clip_error_if_nonfinite=False``.
        clip_grad_value : float, optional
            Clamp every gradient component to [-value, value] (after norm clipping).

        The engine runs many steps per call (about 0.2 s of work), so Ctrl-C stops
        training within a fraction of a second, with the weights of the last finished
        call. If a batch loss (or a clipped gradient norm) becomes NaN or infinite, the
        last weights and optimizer state that gave a finite loss are restored and
        :class:`~fastmlp.errors.TrainingDivergedError` is raised.
        """
        X = self._check_X(X)
        n = X.shape[0]
        labels, dense = self._targets(y, n)
        epochs = check_int(epochs, "epochs", 1)
        batch_size = min(check_int(batch_size, "batch_size", 1), n)
        if optimizer is None:
            optimizer = SGD(lr=0.01 if lr is None else check_float(lr, "lr", positive=True))
        elif not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastmlp.optim optimizer, got {optimizer!r}")
        elif lr is not None:
            raise ValueError("pass the learning rate to the optimizer, not to fit()")
        if lr_schedule is not None and not isinstance(lr_schedule, Schedule):
            raise TypeError(f"lr_schedule must be a fastmlp.schedules schedule, got {lr_schedule!r}")
        schedule = lr_schedule or Constant()
        clip = (
            0.0 if clip_grad_norm is None else check_float(clip_grad_norm, "clip_grad_norm", positive=True),
            0.0 if clip_grad_value is None else check_float(clip_grad_value, "clip_grad_value", positive=True),
            bool(clip_error_if_nonfinite),
        )
        try:
            mode = _SHUFFLE_MODES[shuffle]
        except (KeyError, TypeError):
            raise ValueError(
                f"shuffle must be True/'epoch', 'once' or False/'none'; got {shuffle!r}"
            ) from None
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            Xv = self._check_X(validation_data[0], "validation_data X")
            val = (Xv, *self._targets(validation_data[1], Xv.shape[0]))
        n_params = sum(a * b + b for a, b in zip(self._sizes[:-1], self._sizes[1:]))
        state = optimizer.state_for(0, (n_params,), self._dtype)

        steps = math.ceil(n / batch_size)
        batch_rows = np.full(steps, batch_size, dtype=np.float64)
        batch_rows[-1] = n - (steps - 1) * batch_size
        self._backend_reserve(batch_size)
        order = np.arange(n, dtype=np.int64)
        if mode == "once":
            self._backend_shuffle(order)
        history = History()
        chunk = 1
        for epoch in range(1, epochs + 1):
            if mode == "epoch":
                self._backend_shuffle(order)
            t_epoch = time.perf_counter()
            step_loss = np.empty(steps)
            step_correct = np.empty(steps)
            if schedule.interval == "epoch":
                rates = schedule.rates(optimizer.lr, np.full(steps, epoch - 1))
            else:
                rates = schedule.rates(optimizer.lr, (epoch - 1) * steps + np.arange(steps))
            rates = np.ascontiguousarray(rates, dtype=np.float64)
            s = 0
            previous = current = self._snapshot(state)
            while s < steps:
                k = min(chunk, steps - s)
                t_chunk = time.perf_counter()
                status, done, sl, sc = self._backend_train(
                    X, labels, dense, order, s * batch_size, k, batch_size, rates[s : s + k],
                    optimizer, state, clip,
                )
                if status != STATUS_OK:
                    # `current` gave a finite loss on this chunk's first batch if done > 0;
                    # otherwise `previous` did, on the previous chunk's first batch.
                    self._restore(current if done > 0 else previous, state)
                    what = (f"the batch loss is {sl[done]}" if status == STATUS_NONFINITE_LOSS
                            else "the gradient norm is not finite")
                    raise TrainingDivergedError(
                        f"training diverged at epoch {epoch}, step {s + done + 1}: {what}. "
                        f"The model keeps the last weights that gave a finite loss. Try a "
                        f"smaller learning rate (lr={rates[s + done]:g}), gradient clipping, "
                        f"or rescaled inputs.",
                        history=history, epoch=epoch, step=s + done + 1,
                    )
                step_loss[s : s + k] = sl
                step_correct[s : s + k] = sc
                s += k
                previous, current = current, self._snapshot(state)
                elapsed = max(time.perf_counter() - t_chunk, 1e-6)
                chunk = max(1, min(4 * k, int(k * _CHUNK_SECONDS / elapsed)))
            loss = float(step_loss @ batch_rows / n)
            acc = float(step_correct @ batch_rows / n) if self._loss.has_accuracy else None
            vl = va = None
            if val is not None:
                metrics = self._evaluate_prepared(*val)
                vl, va = metrics["loss"], metrics["accuracy"]
            seconds = time.perf_counter() - t_epoch
            history.append(epoch=epoch, loss=loss, accuracy=acc, val_loss=vl,
                           val_accuracy=va, lr=float(rates[-1]), time=seconds)
            schedule.epoch_end({"loss": loss, "accuracy": acc, "val_loss": vl,
                                "val_accuracy": va})
            if verbose:
                print(_epoch_line(epoch, epochs, loss, acc, vl, va, seconds, n), flush=True)
        return history

    def _snapshot(self, state: dict) -> tuple:
        """Parameters and optimizer state, to restore after a divergence."""
        return self._backend_snapshot(), {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                          for k, v in state.items()}

    def _restore(self, snapshot: tuple, state: dict) -> None:
        params, saved = snapshot
        self._backend_restore(params)
        for k, v in saved.items():
            if isinstance(v, np.ndarray):
                np.copyto(state[k], v)
            else:
                state[k] = v

    # -- helpers ------------------------------------------------------------------------------
    def _check_X(self, X: object, name: str = "X") -> np.ndarray:
        return check_features(X, self._sizes[0], self._dtype, name)

    def _targets(self, y: object, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        return prepare_targets(self._loss, y, n, self._sizes[-1], self._dtype)

    def _evaluate_prepared(self, X, labels, dense) -> dict[str, float | None]:
        loss_sum, correct_sum = self._backend_evaluate(X, labels, dense)
        n = X.shape[0]
        return {
            "loss": loss_sum / n,
            "accuracy": correct_sum / n if self._loss.has_accuracy else None,
        }

    # -- backend interface (implemented by subclasses) ------------------------------------------
    def _backend_setup(self, threads: int | None) -> None:
        raise NotImplementedError

    def _backend_get_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        raise NotImplementedError

    def _backend_set_params(self, Ws: list[np.ndarray], bs: list[np.ndarray]) -> None:
        raise NotImplementedError

    def _backend_predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backend_loss_grad(self, X, labels, dense, input_grad: bool) -> tuple:
        raise NotImplementedError

    def _backend_evaluate(self, X, labels, dense) -> tuple[float, float]:
        raise NotImplementedError

    def _backend_reserve(self, batch_size: int) -> None:
        raise NotImplementedError

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, rates,
                       optimizer, state, clip) -> tuple:
        """Run n_steps steps; update `state` in place; return (status, done, losses, accs)."""
        raise NotImplementedError

    def _backend_seed(self, seed: int) -> None:
        raise NotImplementedError

    def _backend_shuffle(self, order: np.ndarray) -> None:
        raise NotImplementedError

    def _backend_snapshot(self) -> object:
        raise NotImplementedError

    def _backend_restore(self, snapshot: object) -> None:
        raise NotImplementedError


def _check_layer_sizes(layer_sizes: object) -> tuple[int, ...]:
    if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
    sizes = tuple(check_int(s, "every layer size", 1) for s in layer_sizes)
    if not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise ValueError(
            f"layer_sizes needs 2 to {MAX_LAYERS + 1} entries (inputs, ..., outputs); "
            f"got {len(sizes)}"
        )
    return sizes


def _check_param(a: object, shape: tuple, dtype: np.dtype, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf" or arr.dtype == np.float16:
        raise TypeError(f"{name} must be a float32/float64 (or integer) array, got {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return out


def _epoch_line(epoch, epochs, loss, acc, val_loss, val_acc, seconds, n) -> str:
    parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs}", f"loss {loss:.4f}"]
    if acc is not None:
        parts.append(f"acc {acc:.4f}")
    if val_loss is not None:
        parts.append(f"val_loss {val_loss:.4f}")
    if val_acc is not None:
        parts.append(f"val_acc {val_acc:.4f}")
    parts.append(f"{seconds:.2f}s ({n / max(seconds, 1e-9):,.0f} samples/s)")
    return "  ".join(parts)
