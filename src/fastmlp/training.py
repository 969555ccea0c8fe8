"""The training loop behind ``MLP.fit``: argument checks, chunks of engine steps,
learning-rate schedules, divergence handling, validation and early stopping."""

from __future__ import annotations

import math
import os
import time

import numpy as np

from fastmlp import checkpoint as checkpoint_io
from fastmlp._buffers import faulted
from fastmlp.base import STATUS_NONFINITE_LOSS, STATUS_OK
from fastmlp.errors import TrainingDivergedError
from fastmlp.history import History
from fastmlp.optim import OPTIMIZERS, SGD, Optimizer
from fastmlp.regularization import augment_config, penalty_config, stratified_split
from fastmlp.schedules import Constant, Schedule
from fastmlp.validation import all_finite, check_float, check_int, check_sample_weight

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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume_from: str | os.PathLike | None = None,
    progress=None,
    sample_weight: object = None,
) -> History:
    """Train `model` by minibatch gradient descent: the loop behind ``BaseMLP.fit``,
    whose docstring documents the arguments.

    If a batch loss (or a clipped gradient norm) becomes NaN or infinite, or the parameters
    do (a NaN that the loss does not show), the last weights and optimizer state that
    gave a finite loss are restored and :class:`~fastmlp.errors.TrainingDivergedError` is
    raised.
    """
    X = model._check_X(X)
    labels, dense = model._targets(y, X.shape[0])
    weights = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
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
        raise ValueError("monitor='val_accuracy' needs a loss with an accuracy (not mse)")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
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
    # The divergence guard: `good`, buffers for the parameters, statistics and optimizer
    # state, filled in place by the backend at the start of each chunk once the chunk's
    # first step has seen a finite loss. A diverging step goes back to it: to the last
    # weights that gave a finite loss. Before it is first filled nothing has changed.
    good, filled = None, False
    chunk = 1
    chunk_seconds = CHUNK_SECONDS
    rewind = None  # with checkpoints: the state at the start of the epoch (see below)
    for epoch in range(first_epoch, epochs + 1):
        if checkpoint is not None:
            rewind = (_snapshot(model, state, rewind[0] if rewind else None), model._counter,
                      model._backend_rng_state(), order.copy())
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
        try:
            while s < steps:
                if good is None:
                    good = _empty_snapshot(model, state)
                    chunk_seconds = _chunk_seconds(good)
                k = min(chunk, steps - s)
                t_chunk = time.perf_counter()
                start_step = state["step"]
                status, done, sl, sc = model._backend_train(
                    X, labels, dense, order, s * batch_size, k, batch_size, rates[s : s + k],
                    optimizer, state, clip, penalty, augment, weights, good,
                )
                if done > 0 or status != STATUS_NONFINITE_LOSS:  # `good` was refreshed
                    good[2]["step"] = start_step
                    filled = True
                if status != STATUS_OK:
                    if filled:
                        _restore(model, good, state)
                    what = (f"the batch loss is {sl[done]}" if status == STATUS_NONFINITE_LOSS
                            else "the gradient norm is not finite")
                    raise _diverged(epoch, s + done, what, rates[s + done], history)
                if not all_finite(model._params_view()):
                    # a NaN the losses did not show (a ReLU turns NaN into 0, for one)
                    _restore(model, good, state)
                    raise _diverged(epoch, s + k - 1, "the parameters are no longer finite",
                                    rates[s + k - 1], history, within=k)
                step_loss[s : s + k] = sl
                step_correct[s : s + k] = sc
                s += k
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
