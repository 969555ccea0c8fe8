"""The training loop behind ``MLP.fit``: argument checks, chunks of engine steps,
learning-rate schedules, divergence handling, validation and early stopping."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator

import numpy as np

from fastmlp import checkpoint as checkpoint_io
from fastmlp._buffers import faulted
from fastmlp.base import STATUS_NONFINITE_LOSS, STATUS_OK
from fastmlp.errors import TrainingDivergedError
from fastmlp.history import History
from fastmlp.optim import OPTIMIZERS, SGD, Optimizer
from fastmlp.regularization import augment_config, penalty_config, stratified_split
from fastmlp.schedules import Constant, Schedule
from fastmlp.validation import (C_INT_MAX, all_finite, check_float, check_int,
                                check_sample_weight)

CHUNK_SECONDS = 0.2  # engine work per Python round trip, at least ...
MAX_CHUNK_SECONDS = 1.0  # ... and at most (how long Ctrl-C and the progress bar wait)
SNAPSHOT_SHARE = 0.02  # chunks long enough that the snapshots take at most this share
SNAPSHOT_BYTES_PER_S = 5e9  # a conservative copy speed, for the rule above
_SHUFFLE_MODES = {True: "epoch", "epoch": "epoch", "once": "once", False: "none", "none": "none"}
_MONITORS = ("val_loss", "val_accuracy")


def fit(
    model,
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
    l2: float = 0.0,
    l1: float = 0.0,
    l1_proximal: bool = False,
    penalize_biases: bool = False,
    activity_l1: float = 0.0,
    activity_l2: float = 0.0,
    input_noise: float = 0.0,
    shift: int = 0,
    image_shape: tuple | None = None,
    adversarial_eps: float = 0.0,
    adversarial_ratio: float = 0.5,
    early_stopping: bool = False,
    monitor: str = "val_loss",
    patience: int = 5,
    min_delta: float = 0.0,
    validation_fraction: float | None = None,
    callbacks: list | None = None,
    step_callbacks: list | None = None,
    step_every: int = 100,
    record: str = "epoch",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume_from: str | os.PathLike | None = None,
    progress=None,
    sample_weight: object = None,
) -> History:
    """Train `model` by minibatch gradient descent: the loop behind ``BaseMLP.fit``,
    whose docstring documents the arguments.

    If a batch loss (or a clipped gradient norm) becomes NaN or infinite, or the parameters
    do (a NaN that the loss does not show), the model goes back to the last state that
    gave a finite loss (weights, batch-norm statistics, optimizer state, step counter and
    shuffling generator, so that a later ``fit`` continues exactly as one from that
    state) and :class:`~fastmlp.errors.TrainingDivergedError` is raised.
    """
    X = model._check_X(X)
    labels, dense = model._targets(y, X.shape[0])
    weights = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    epochs = check_int(epochs, "epochs", 1, C_INT_MAX)
    batch_size = check_int(batch_size, "batch_size", 1, C_INT_MAX)
    resume = None
    if resume_from is not None:
        resume = checkpoint_io.load(resume_from)
        if optimizer is None and lr is None:
            optimizer = OPTIMIZERS[resume[0]["optimizer"]](**resume[0]["optimizer_hyper"])
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", 1)
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
    penalty = penalty_config(l2, l1, l1_proximal, penalize_biases, activity_l1, activity_l2)
    augment = augment_config(X.shape[1], input_noise, shift, image_shape, adversarial_eps,
                             adversarial_ratio)
    try:
        mode = _SHUFFLE_MODES[shuffle]
    except (KeyError, TypeError):
        raise ValueError(
            f"shuffle must be True/'epoch', 'once' or False/'none'; got {shuffle!r}"
        ) from None
    if monitor not in _MONITORS:
        raise ValueError(f"monitor must be one of {_MONITORS}, got {monitor!r}")
    if monitor == "val_accuracy" and not model._loss.has_accuracy:
        raise ValueError("monitor='val_accuracy' needs a loss with an accuracy (not mse or poisson)")
    callbacks = list(callbacks or [])
    step_callbacks = list(step_callbacks or [])
    for cb in callbacks + step_callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
    step_every = check_int(step_every, "step_every", 1, C_INT_MAX)
    if record not in ("epoch", "step"):
        raise ValueError(f"record must be 'epoch' or 'step', got {record!r}")
    patience = check_int(patience, "patience", 0)
    min_delta = check_float(min_delta, "min_delta", low=0.0)
    val = None
    if validation_data is not None:
        if validation_fraction is not None:
            raise ValueError("pass validation_data or validation_fraction, not both")
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        Xv = model._check_X(validation_data[0], "validation_data X")
        val = (Xv, *model._targets(validation_data[1], Xv.shape[0]))
    elif early_stopping or validation_fraction is not None and validation_fraction != 0:
        fraction = 0.1 if validation_fraction is None else validation_fraction
        train_idx, val_idx = stratified_split(labels, X.shape[0], fraction, model.seed)
        take = lambda a, i: None if a is None else np.ascontiguousarray(a[i])  # noqa: E731
        val = (take(X, val_idx), take(labels, val_idx), take(dense, val_idx))
        X, labels, dense = take(X, train_idx), take(labels, train_idx), take(dense, train_idx)
        weights = take(weights, train_idx)
        if weights is not None and not (weights > 0).any():
            raise ValueError("every training sample left after the validation split has "
                             "sample_weight 0")
    n = X.shape[0]
    batch_size = min(batch_size, n)
    if any(model._batch_norm) and (batch_size == 1 or n % batch_size == 1):
        raise ValueError(
            f"batch normalization needs at least 2 samples per batch; with {n} samples and "
            f"batch_size={batch_size} a batch would hold 1. Choose another batch_size."
        )
    state = optimizer.state_for(0, (model._n_params,), model.dtype)

    steps = math.ceil(n / batch_size)
    batch_rows = np.full(steps, batch_size, dtype=np.float64)
    batch_rows[-1] = n - (steps - 1) * batch_size
    batch_mass = batch_rows  # the weight of each step's batch in the epoch means
    model._backend_reserve(batch_size)
    order = np.arange(n, dtype=np.int64)
    history = History()
    best = None  # (metric, epoch, snapshot) for early stopping
    first_epoch = 1
    if resume is not None:
        optimizer, state, done_epochs, order, history, best = checkpoint_io.restore(
            resume_from, *resume, model=model, optimizer=optimizer, n=n, schedule=schedule)
        first_epoch = done_epochs + 1
    elif mode == "once":
        model._backend_shuffle(order)
    guard = _Guard(model, state)
    chunk = 1
    chunk_seconds = _chunk_seconds(guard.snapshot)
    rewind = None  # with checkpoints: the state at the start of the epoch (see below)
    for epoch in range(first_epoch, epochs + 1):
        if checkpoint is not None:
            rewind = (_snapshot(model, state, rewind[0] if rewind else None), model._counter,
                      model._backend_rng_state(), order.copy())
        rng_before = model._backend_rng_state()  # a rewind to this epoch's start needs it
        if mode == "epoch":
            model._backend_shuffle(order)
        if weights is not None:
            batch_mass = np.add.reduceat(weights[order].astype(np.float64),
                                         np.arange(0, n, batch_size))
        t_epoch = time.perf_counter()
        step_loss = np.empty(steps)
        step_correct = np.empty(steps)
        t = np.full(steps, epoch - 1) if schedule.interval == "epoch" else \
            (epoch - 1) * steps + np.arange(steps)
        rates = np.ascontiguousarray(schedule.rates(optimizer.lr, t), dtype=np.float64)
        s = 0
        stop_now = False
        try:
            while s < steps:
                k = min(chunk, steps - s)
                if step_callbacks:  # a chunk ends where the step callbacks are due
                    k = min(k, step_every - history.steps % step_every)
                t_chunk = time.perf_counter()
                status, done, sl, sc = guard.train(
                    rng_before if s == 0 else model._backend_rng_state(),
                    X, labels, dense, order, s * batch_size, k, batch_size, rates[s : s + k],
                    optimizer, state, clip, penalty, augment, weights,
                )
                if status != STATUS_OK:
                    guard.rewind()
                    what = (f"the batch loss is {sl[done]}" if status == STATUS_NONFINITE_LOSS
                            else "the gradient norm is not finite")
                    raise _diverged(epoch, s + done, what, rates[s + done], history)
                # (one thread: a fraction of a percent of a chunk, and no team to wait
                # for on a busy machine)
                if not all_finite(model._params_view(), threads=1):
                    # a NaN the losses did not show (a ReLU turns NaN into 0, for one)
                    guard.rewind()
                    raise _diverged(epoch, s + k - 1, "the parameters are no longer finite",
                                    rates[s + k - 1], history, within=k)
                step_loss[s : s + k] = sl
                step_correct[s : s + k] = sc
                if record == "step":
                    history.step_loss.extend(sl.tolist())
                    history.step_lr.extend(rates[s : s + k].tolist())
                s += k
                history.steps += k
                if step_callbacks and history.steps % step_every == 0 and \
                        any([bool(cb(model, history)) for cb in step_callbacks]):
                    stop_now = True
                    break
                if progress is not None:
                    mass = batch_mass[:s]
                    progress(epoch, epochs, int(batch_rows[:s].sum()), n,
                             float(np.sum(step_loss[:s] * mass) / max(mass.sum(), 1e-300)))
                elapsed = max(time.perf_counter() - t_chunk, 1e-6)
                chunk = max(1, min(16 * k, int(k * chunk_seconds / elapsed)))
        except KeyboardInterrupt:
            # Ctrl-C: with checkpoints, go back to the start of this epoch and save it, so
            # that the model and the checkpoint agree and resume_from repeats this epoch
            if rewind is not None:
                _restore(model, rewind[0], state)
                model._counter = rewind[1]
                model._backend_set_rng_state(rewind[2])
                order[:] = rewind[3]
                checkpoint_io.save(checkpoint, model=model, optimizer=optimizer, state=state,
                                   epoch=epoch - 1, order=order, history=history, best=best,
                                   schedule=schedule)
            raise
        if stop_now:  # a step callback stopped training inside this epoch
            history.stopped_epoch = epoch
            break
        # (elementwise, not `@`: a BLAS call would leave OpenBLAS threads spinning)
        total = float(batch_mass.sum())
        loss = float(np.sum(step_loss * batch_mass) / total)
        acc = float(np.sum(step_correct * batch_mass) / total) if model._loss.has_accuracy \
            else None
        vl = va = None
        if val is not None:
            metrics = model._evaluate_prepared(*val)
            vl, va = metrics["loss"], metrics["accuracy"]
        seconds = time.perf_counter() - t_epoch
        history.append(epoch=epoch, loss=loss, accuracy=acc, val_loss=vl, val_accuracy=va,
                       lr=float(rates[-1]), time=seconds, samples_per_s=n / max(seconds, 1e-9),
                       grad_norm=_layer_norms(model, model._backend_last_grad()))
        schedule.epoch_end({"loss": loss, "accuracy": acc, "val_loss": vl, "val_accuracy": va})
        if verbose:
            print(_epoch_line(epoch, epochs, loss, acc, vl, va, seconds, n), flush=True)
        if early_stopping:
            score = vl if monitor == "val_loss" else -va
            if best is None or score < best[0] - min_delta:
                best = (score, epoch, _snapshot(model, None, best[2] if best else None))
            elif epoch - best[1] >= patience:
                history.stopped_epoch = epoch
        stop = history.stopped_epoch == epoch or any([bool(cb(model, history))
                                                      for cb in callbacks])
        if checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs or stop):
            checkpoint_io.save(checkpoint, model=model, optimizer=optimizer, state=state,
                               epoch=epoch, order=order, history=history, best=best,
                               schedule=schedule)
        if stop:
            history.stopped_epoch = epoch
            break
    if best is not None:
        _restore(model, best[2], None)
        history.best_epoch = best[1]
    return history


class EpochRunner:
    """Epochs of minibatch training on data checked once, many epochs per engine call:
    the fast path of the scikit-learn estimators.

    Every epoch visits the samples of a fresh shuffle of ``arange(n)`` (or in order) in
    batches of `batch_size`, the last one shorter, at one learning rate; each engine call
    runs about ``CHUNK_SECONDS`` of steps, across epoch ends. This is what ``model.fit``
    does one epoch at a time (``epochs=1``, ``lr_schedule`` unset), bit for bit, without
    its per-call checks and set-up. A diverging step rewinds model, optimizer state, step
    counter and shuffling to the start of the engine call (see :class:`_Guard`) and raises
    TrainingDivergedError.

    Parameters
    ----------
    model : BaseMLP
    X : ndarray (n, n_features)
        C-contiguous, of the model's dtype and finite: the caller has checked it.
    y, sample_weight
        Targets and optional per-sample weights, as for ``model.fit``.
    optimizer : fastmlp.optim.Optimizer
        Its state goes on from where it is.
    batch_size : int
    shuffle : bool
    l2 : float
        The L2 penalty on the weights (as ``fit(l2=...)``).
    """

    def __init__(self, model, X: np.ndarray, y: object, sample_weight: object,
                 optimizer: Optimizer, batch_size: int, shuffle: bool, l2: float) -> None:
        n = X.shape[0]
        self.model, self.X, self.optimizer, self.shuffle = model, X, optimizer, shuffle
        self.labels, self.dense = model._targets(y, n)
        self.weights = check_sample_weight(sample_weight, n, model.dtype)
        self.batch_size = min(check_int(batch_size, "batch_size", 1), n)
        self.starts = np.arange(0, n, self.batch_size)  # of the batches in an epoch
        self.batch_rows = np.diff(np.append(self.starts, n)).astype(np.float64)
        self.state = optimizer.state_for(0, (model._n_params,), model.dtype)
        self.penalty = penalty_config(l2=l2)
        self.augment = augment_config(X.shape[1])
        model._backend_reserve(self.batch_size)
        self.guard = _Guard(model, self.state)
        self.chunk, self.chunk_seconds = 1, _chunk_seconds(self.guard.snapshot)
        self.epochs_done = 0

    def epochs(self, rates) -> Iterator[float]:
        """Train one epoch at each learning rate of `rates`; yield each epoch's mean loss
        (penalty included; weighted by sample weight) as soon as its last step is done."""
        model, n, S, B = self.model, self.X.shape[0], len(self.starts), self.batch_size
        E = len(rates)
        order = np.empty(E * n, dtype=np.int64)
        shuffling = []  # the generator's state before each epoch's shuffle, and after
        for e in range(E):
            shuffling.append(model._backend_rng_state())
            order[e * n : (e + 1) * n] = np.arange(n)
            if self.shuffle:
                model._backend_shuffle(order[e * n : (e + 1) * n])
        shuffling.append(model._backend_rng_state())
        step_rates = np.repeat(np.asarray(rates, dtype=np.float64), S)
        step_loss = np.empty(E * S)
        s = yielded = 0
        while s < E * S:
            e, j = divmod(s, S)
            k = min(self.chunk, E * S - s)
            t_chunk = time.perf_counter()
            status, done, sl, _ = self.guard.train(
                shuffling[e if j == 0 else e + 1], self.X, self.labels, self.dense, order,
                e * n + j * B, k, B, step_rates[s : s + k], self.optimizer, self.state,
                (0.0, 0.0, True), self.penalty, self.augment, self.weights)
            if status != STATUS_OK:
                self.guard.rewind()
                what = (f"the batch loss is {sl[done]}" if status == STATUS_NONFINITE_LOSS
                        else "the gradient norm is not finite")
                bad = divmod(s + done, S)
                raise _diverged(self.epochs_done + bad[0] - yielded + 1, bad[1], what,
                                step_rates[s + done], None)
            if not all_finite(model._params_view(), threads=1):  # as in fit
                self.guard.rewind()
                bad = divmod(s + k - 1, S)
                raise _diverged(self.epochs_done + bad[0] - yielded + 1, bad[1],
                                "the parameters are no longer finite", step_rates[s + k - 1],
                                None, within=min(k, bad[1] + 1))
            step_loss[s : s + k] = sl
            s += k
            elapsed = max(time.perf_counter() - t_chunk, 1e-6)
            self.chunk = max(1, min(16 * k, int(k * self.chunk_seconds / elapsed)))
            while yielded < s // S:
                e = yielded
                mass = self.batch_rows if self.weights is None else np.add.reduceat(
                    self.weights[order[e * n : (e + 1) * n]].astype(np.float64), self.starts)
                loss = float(np.sum(step_loss[e * S : (e + 1) * S] * mass) / float(mass.sum()))
                yielded += 1
                self.epochs_done += 1
                yield loss


def _layer_norms(model, grad: np.ndarray) -> list[float]:
    """L2 norm of each dense layer's weight gradient (no BLAS call, see above)."""
    norms = []
    for (w0, _, a, b, _, _) in model._layout:
        g = grad[w0 : w0 + a * b]  # float64 sums without a float64 copy of g
        norms.append(float(np.sqrt(np.einsum("i,i->", g, g, dtype=np.float64))))
    return norms


def _diverged(epoch: int, step: int, what: str, lr: float, history,
              within: int = 1) -> TrainingDivergedError:
    """The error for step `step` (0-based) of `epoch`, or for one of the `within` steps
    that end there."""
    where = f"step {step + 1}" if within == 1 else f"steps {step + 2 - within}-{step + 1}"
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, {where}: {what}. The model keeps the last "
        f"weights that gave a finite loss. Try a smaller learning rate (lr={lr:g}), "
        f"gradient clipping, or rescaled inputs.",
        history=history, epoch=epoch, step=step + 1,
    )


class _Guard:
    """The divergence guard of one fit: the last training state known to give a finite
    loss, and the way back to it.

    `snapshot` (parameters, batch-norm statistics, optimizer state) is filled in place by
    the backend at the start of a call once that call's first step has seen a finite loss;
    `position` holds what the backend does not copy: the optimizer's step count, the
    model's step counter and the shuffling generator's state at that moment. Before the
    first fill, nothing has changed since `position` was taken.
    """

    def __init__(self, model, state: dict) -> None:
        self.model, self.state = model, state
        self.snapshot = _empty_snapshot(model, state)
        self.filled = False
        self.position = (state["step"], model._counter, model._backend_rng_state())

    def train(self, rng_state: np.ndarray, *args) -> tuple:
        """``model._backend_train(*args)`` guarded; `rng_state` is the shuffling
        generator's state that belongs to the call's starting point (a call at the start
        of an epoch starts before that epoch's shuffle). Returns what the backend does."""
        start = (self.state["step"], self.model._counter, rng_state)
        status, done, sl, sc = self.model._backend_train(*args, self.snapshot)
        if done > 0 or status != STATUS_NONFINITE_LOSS:  # the snapshot was refreshed
            self.snapshot[2]["step"] = start[0]
            self.filled = True
            self.position = start
        return status, done, sl, sc

    def rewind(self) -> None:
        """Put model and optimizer state back to the guarded state: a later ``fit`` goes
        on exactly as one that started from there."""
        if self.filled:
            _restore(self.model, self.snapshot, self.state)
        self.state["step"], self.model._counter = self.position[:2]
        self.model._backend_set_rng_state(self.position[2])


def _empty_snapshot(model, state: dict) -> tuple:
    """Buffers shaped like a snapshot of `model` and `state`, zeroed (not filled in)."""
    def like(a):
        return faulted(a.shape, a.dtype)

    opt = {k: (like(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    return (like(model._params_view()), like(model._running_view()), opt)


def _chunk_seconds(snapshot: tuple) -> float:
    """Engine time per chunk that keeps refreshing `snapshot` a small share of it."""
    flat, running, opt = snapshot
    size = flat.nbytes + running.nbytes + sum(
        v.nbytes for v in opt.values() if isinstance(v, np.ndarray))
    cost = size / SNAPSHOT_BYTES_PER_S
    return min(MAX_CHUNK_SECONDS, max(CHUNK_SECONDS, cost / SNAPSHOT_SHARE))


def _snapshot(model, state: dict | None, reuse: tuple | None = None) -> tuple:
    """Parameters, batch-norm statistics and optimizer state, to restore later; copies
    into the arrays of `reuse` (an earlier snapshot no longer needed) when given."""
    flat = model._backend_flat(None if reuse is None else reuse[0])
    running = model._backend_running(None if reuse is None else reuse[1])
    opt = None if state is None else {k: v for k, v in state.items()}
    if reuse is not None and reuse[2] is not None and opt is not None:
        for k, v in opt.items():
            if isinstance(v, np.ndarray):
                np.copyto(reuse[2][k], v)
                opt[k] = reuse[2][k]
    elif opt is not None:
        opt = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.items()}
    return flat, running, opt


def _restore(model, snapshot: tuple, state: dict | None) -> None:
    flat, running, opt = snapshot
    model._backend_set_flat(flat)
    model._backend_set_running(running)
    if state is not None and opt is not None:
        for k, v in opt.items():
            if isinstance(v, np.ndarray):
                np.copyto(state[k], v)
            else:
                state[k] = v


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
