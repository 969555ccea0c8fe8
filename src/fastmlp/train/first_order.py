"""Minibatch gradient descent in the engine: the trainer behind ``MLP.fit``.

:func:`fit` checks the arguments and prepares the data once, then runs epochs of
:class:`EngineEpochs` (chunks of engine steps with the divergence guard, step callbacks,
per-step records and progress) under the shared :class:`~fastmlp.train.loop.Loop`, and
writes checkpoints between epochs.
"""

from __future__ import annotations

import math
import threading
import time
import weakref

import numpy as np

from fastmlp.io.csr import CSRInput
from fastmlp.model.base import STATUS_NONFINITE_LOSS, STATUS_OK
from fastmlp.model.losses import reports_accuracy
from fastmlp.optim import OPTIMIZERS, SGD, Optimizer
from fastmlp.schedules import Constant, Schedule
from fastmlp.train import checkpoint as checkpoint_io
from fastmlp.train.data import TrainingData, check_validation_data, hold_out, prepare
from fastmlp.train.history import History
from fastmlp.train.loop import Loop, check_callables, check_monitor
from fastmlp.train.options import FitOptions
from fastmlp.train.regularization import augment_config, penalty_config
from fastmlp.train.state import (
    SNAPSHOT_BYTES_PER_S,
    Guard,
    diverged,
    restore,
    snapshot,
    snapshot_bytes,
)
from fastmlp.validation import C_INT_MAX, all_finite, check_float, check_int

CHUNK_SECONDS = 0.2  # engine work per Python round trip, at least ...
MAX_CHUNK_SECONDS = 1.0  # ... and at most (how long Ctrl-C and the progress bar wait)
SNAPSHOT_SHARE = 0.02  # chunks long enough that the snapshots take at most this share
_SHUFFLE_MODES = {True: "epoch", "epoch": "epoch", "once": "once", False: "none", "none": "none"}


def fit(model, X: object, y: object, o: FitOptions) -> History:
    """Train `model` by minibatch gradient descent: the loop behind ``BaseMLP.fit``,
    whose docstring documents the options.

    If a batch loss (or a clipped gradient norm) becomes NaN or infinite, or the parameters
    do (a NaN that the loss does not show), the model goes back to the last state that
    gave a finite loss (weights, batch-norm statistics, optimizer state, step counter and
    shuffling generator, so that a later ``fit`` continues exactly as one from that
    state) and :class:`~fastmlp.errors.TrainingDivergedError` is raised.
    """
    data = prepare(model, X, y, o.sample_weight)
    epochs = check_int(o.epochs, "epochs", 1, C_INT_MAX)
    batch_size = check_int(o.batch_size, "batch_size", 1, C_INT_MAX)
    resume = None if o.resume_from is None else checkpoint_io.load(o.resume_from)
    checkpoint_every = check_int(o.checkpoint_every, "checkpoint_every", 1)
    optimizer, schedule, clip = update_rule(o, resume)
    penalty = penalty_config(o.l2, o.l1, o.l1_proximal, o.penalize_biases, o.activity_l1,
                             o.activity_l2)
    augment = augment_config(data.X.shape[1], o.input_noise, o.shift, o.image_shape,
                             o.adversarial_eps, o.adversarial_ratio, o.rotate, o.scale,
                             o.shear)
    if isinstance(data.X, CSRInput) and augment != augment_config(data.X.shape[1]):
        raise ValueError("input_noise, shift, rotate/scale/shear and adversarial training "
                         "need dense X: the engine multiplies sparse rows as they are. Pass "
                         "X.toarray()")
    try:
        mode = _SHUFFLE_MODES[o.shuffle]
    except (KeyError, TypeError):
        raise ValueError(
            f"shuffle must be True/'epoch', 'once' or False/'none'; got {o.shuffle!r}"
        ) from None
    check_monitor(model, o.monitor)
    callbacks = check_callables(o.callbacks)
    step_callbacks = check_callables(o.step_callbacks)
    step_every = check_int(o.step_every, "step_every", 1, C_INT_MAX)
    if o.record not in ("epoch", "step"):
        raise ValueError(f"record must be 'epoch' or 'step', got {o.record!r}")
    if o.record_grad_norms and o.record != "step":
        raise ValueError("record_grad_norms=True needs record='step' (it records every step)")
    patience = check_int(o.patience, "patience", 0)
    min_delta = check_float(o.min_delta, "min_delta", low=0.0)
    if o.validation_data is not None:
        if o.validation_fraction is not None:
            raise ValueError("pass validation_data or validation_fraction, not both")
        data.val = check_validation_data(model, o.validation_data)
    elif o.early_stopping or o.restore_best or \
            o.validation_fraction is not None and o.validation_fraction != 0:
        hold_out(data, 0.1 if o.validation_fraction is None else o.validation_fraction,
                 model.seed)
    n = data.n
    batch_size = min(batch_size, n)
    if any(model._batch_norm) and (batch_size == 1 or n % batch_size == 1):
        raise ValueError(
            f"batch normalization needs at least 2 samples per batch; with {n} samples and "
            f"batch_size={batch_size} a batch would hold 1. Choose another batch_size."
        )
    loop = Loop(model, epochs=epochs, val=data.val, callbacks=callbacks,
                early_stopping=o.early_stopping, monitor=o.monitor, patience=patience,
                min_delta=min_delta, verbose=o.verbose, validation_every=o.validation_every,
                tol=o.tol, n_iter_no_change=o.n_iter_no_change, restore_best=o.restore_best)
    # every refusal comes before the fit changes the model (the bias prior) or binds the
    # optimizer, which happens once the workspace is there (a fit that fails to reserve it
    # leaves the optimizer free); a resumed fit takes the checkpoint's state (restore
    # binds it)
    if resume is None:
        optimizer.check_model(model)
        model._apply_bias_prior(data.labels, data.dense, data.weights)
    model._backend_reserve(batch_size, isinstance(data.X, CSRInput))
    state = None if resume is not None else optimizer.model_state(model)
    order = np.arange(n, dtype=np.int64)
    first_epoch = 1
    if resume is not None:
        optimizer, state, done_epochs, order, loop.history, loop.best = checkpoint_io.restore(
            o.resume_from, *resume, model=model, optimizer=optimizer, n=n, schedule=schedule)
        first_epoch = done_epochs + 1
    elif mode == "once":
        model._backend_shuffle(order)
    trainer = EngineEpochs(model, data, optimizer, state, schedule, order, batch_size,
                           mode == "epoch", clip, penalty, augment, step_callbacks,
                           step_every, o.record, bool(o.record_grad_norms), o.progress,
                           epochs)

    def save(epoch):
        checkpoint_io.save(o.checkpoint, model=model, optimizer=optimizer, state=state,
                           epoch=epoch, order=order, history=loop.history, best=loop.best,
                           schedule=schedule)

    try:
        rewind = None  # with checkpoints: the state at the start of the epoch (see below)
        for epoch in range(first_epoch, epochs + 1):
            if o.checkpoint is not None:
                rewind = (snapshot(model, state, rewind[0] if rewind else None), model._counter,
                          model._backend_rng_state(), order.copy())
            try:
                figures = trainer.epoch(epoch, loop.history)
            except KeyboardInterrupt:
                # Ctrl-C: with checkpoints, go back to the start of this epoch and save it, so
                # that the model and the checkpoint agree and resume_from repeats this epoch
                if rewind is not None:
                    restore(model, rewind[0], state)
                    model._counter = rewind[1]
                    model._backend_set_rng_state(rewind[2])
                    order[:] = rewind[3]
                    save(epoch - 1)
                raise
            if figures is None:  # a step callback stopped training inside this epoch
                loop.history.stopped_epoch = epoch
                break
            stop = loop.end_epoch(epoch, **figures, hooks=(schedule.epoch_end,))
            if o.checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs
                                             or stop):
                save(epoch)
            if stop:
                break
        return loop.finish()
    finally:  # the guard's buffers go to the model's next fit
        trainer.guard.close()


def update_rule(o: FitOptions, resume: tuple | None) -> tuple[Optimizer, Schedule, tuple]:
    """The checked update of a fit: (optimizer, learning-rate schedule, clip tuple for the
    engine: max norm, max value, error_if_nonfinite) from `o` and a resumed checkpoint's
    (:func:`fastmlp.train.checkpoint.load`) optimizer."""
    optimizer = _optimizer(o, resume)
    if o.lr_schedule is not None and not isinstance(o.lr_schedule, Schedule):
        raise TypeError(f"lr_schedule must be a fastmlp.schedules schedule, got "
                        f"{o.lr_schedule!r}")
    clip = (
        0.0 if o.clip_grad_norm is None else check_float(o.clip_grad_norm, "clip_grad_norm",
                                                         positive=True),
        0.0 if o.clip_grad_value is None else check_float(o.clip_grad_value, "clip_grad_value",
                                                          positive=True),
        bool(o.clip_error_if_nonfinite),
    )
    return optimizer, o.lr_schedule or Constant(), clip


def _optimizer(o: FitOptions, resume: tuple | None) -> Optimizer:
    """The update rule of a fit: `o.optimizer`, SGD(`o.lr`), or the resumed checkpoint's."""
    optimizer = o.optimizer
    if resume is not None and optimizer is None and o.lr is None:
        optimizer = OPTIMIZERS[resume[0]["optimizer"]](**resume[0]["optimizer_hyper"])
    if optimizer is None:
        return SGD(lr=0.01 if o.lr is None else check_float(o.lr, "lr", positive=True))
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastmlp.optim optimizer, got {optimizer!r}")
    if o.lr is not None:
        raise ValueError("pass the learning rate to the optimizer, not to fit()")
    return optimizer


class EngineEpochs:
    """Epochs of minibatch steps in the engine, in chunks of about ``CHUNK_SECONDS`` of
    work per call, each guarded against divergence (:class:`~fastmlp.train.state.Guard`).

    `order` (the sample order, shuffled in place at every epoch's start when `reshuffle`)
    and the optimizer `state` belong to the caller, which checkpoints them.
    """

    def __init__(self, model, data: TrainingData, optimizer: Optimizer, state: dict,
                 schedule: Schedule, order: np.ndarray, batch_size: int, reshuffle: bool,
                 clip: tuple, penalty: tuple, augment: tuple, step_callbacks: list,
                 step_every: int, record: str, record_grad_norms: bool, progress,
                 epochs: int) -> None:
        self.model, self.data, self.optimizer, self.state = model, data, optimizer, state
        self.schedule, self.order, self.batch_size = schedule, order, batch_size
        self.reshuffle, self.clip, self.penalty, self.augment = reshuffle, clip, penalty, augment
        self.step_callbacks, self.step_every = step_callbacks, step_every
        self.record, self.progress, self.epochs = record, progress, epochs
        self.record_grad_norms = record_grad_norms
        n = data.n
        self.steps = math.ceil(n / batch_size)
        self.batch_rows = np.full(self.steps, batch_size, dtype=np.float64)
        self.batch_rows[-1] = n - (self.steps - 1) * batch_size
        self.batch_mass = self.batch_rows  # the weight of each step's batch in the means
        self.guard = Guard(model, state)
        self.pacer = Pacer(model, batch_size, chunk_seconds(self.guard.snapshot))

    def epoch(self, epoch: int, history: History) -> dict | None:
        """Run epoch `epoch`; its figures for :meth:`Loop.end_epoch`, or None when a step
        callback stopped training inside it. Steps go into `history` (``steps`` and, with
        ``record="step"``, the per-step lists)."""
        grad_norm = None
        model, data, n, steps = self.model, self.data, self.data.n, self.steps
        batch_size, order, rows = self.batch_size, self.order, self.batch_rows
        rng_before = model._backend_rng_state()  # a rewind to this epoch's start needs it
        if self.reshuffle:
            model._backend_shuffle(order)
        if data.weights is not None:
            self.batch_mass = np.add.reduceat(data.weights[order].astype(np.float64),
                                              np.arange(0, n, batch_size))
        mass = self.batch_mass
        t_epoch = time.perf_counter()
        step_loss = np.empty(steps)
        step_correct = np.empty(steps)
        t = np.full(steps, epoch - 1) if self.schedule.interval == "epoch" else \
            (epoch - 1) * steps + np.arange(steps)
        rates = np.ascontiguousarray(self.schedule.rates(self.optimizer.lr, t),
                                     dtype=np.float64)
        s = 0
        while s < steps:
            k = self.pacer.steps(steps - s)
            if self.step_callbacks:  # a chunk ends where the step callbacks are due
                k = min(k, self.step_every - history.steps % self.step_every)
            t_chunk = time.perf_counter()
            norms = np.empty((k, model.n_layers)) if self.record_grad_norms else None
            status, done, sl, sc = self.guard.train(
                rng_before if s == 0 else model._backend_rng_state(),
                data.X, data.labels, data.dense, order, s * batch_size, k, batch_size,
                rates[s : s + k], self.optimizer, self.state, self.clip, self.penalty,
                self.augment, data.weights, grad_norms=norms,
            )
            if status != STATUS_OK:
                self.guard.rewind()
                what = (f"the batch loss is {sl[done]}" if status == STATUS_NONFINITE_LOSS
                        else "the gradient norm is not finite")
                raise diverged(epoch, s + done, what, rates[s + done], history)
            # (one thread: a fraction of a percent of a chunk, and no team to wait
            # for on a busy machine)
            if not all_finite(model._params_view(), threads=1):
                # a NaN the losses did not show (a ReLU turns NaN into 0, for one)
                self.guard.rewind()
                raise diverged(epoch, s + k - 1, "the parameters are no longer finite",
                               rates[s + k - 1], history, within=k)
            step_loss[s : s + k] = sl
            step_correct[s : s + k] = sc
            if self.record == "step":
                history.step_loss.extend(sl.tolist())
                history.step_lr.extend(rates[s : s + k].tolist())
            if norms is not None:
                history.step_grad_norm.extend(norms.tolist())
            s += k
            if s == steps:  # before a step callback's own gradients() can overwrite it
                grad_norm = layer_norms(model, model._backend_last_grad())
            history.steps += k
            if self.step_callbacks and history.steps % self.step_every == 0 and \
                    any([bool(cb(model, history)) for cb in self.step_callbacks]):
                return None
            if self.progress is not None:
                done_mass = mass[:s]
                self.progress(epoch, self.epochs, int(rows[:s].sum()), n,
                              float(np.sum(step_loss[:s] * done_mass)
                                    / max(done_mass.sum(), 1e-300)))
            self.pacer.took(k, time.perf_counter() - t_chunk)
        # (elementwise, not `@`: a BLAS call would leave OpenBLAS threads spinning)
        total = float(mass.sum())
        seconds = time.perf_counter() - t_epoch
        return {
            "loss": float(np.sum(step_loss * mass) / total),
            "accuracy": (float(np.sum(step_correct * mass) / total)
                         if reports_accuracy(model._loss, data.dense) else None),
            "lr": float(rates[-1]), "seconds": seconds, "samples": n,
            "grad_norm": grad_norm,
        }


def layer_norms(model, grad: np.ndarray) -> list[float]:
    """L2 norm of each dense layer's weight gradient (no BLAS call, see above)."""
    norms = []
    for (w0, _, a, b, _, _) in model._layout:
        g = grad[w0 : w0 + a * b]  # float64 sums without a float64 copy of g
        norms.append(float(np.sqrt(np.einsum("i,i->", g, g, dtype=np.float64))))
    return norms


# model -> (batch size, seconds an engine call took a step): the last fit's pace, for the
# first call of the model's next fit
_PACE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PACE_LOCK = threading.Lock()


class Pacer:
    """How many steps each engine call of a fit takes: about `seconds` of work (see
    :func:`chunk_seconds`) at the pace the previous call took its steps.

    A fit's first call takes one step unless the model's previous fit measured the pace
    at the same batch size; then it starts at that pace. A call also takes the steps
    left when they are at most half a call more (up to 1.5 x `seconds`): a short last
    call would pay the per-call costs (the guard's snapshot, the weights' layout
    conversions in and out of the engine, the parameters' finite check) for little
    work (20-36 ms a call for 784-2048-2048-2048-10). A one-epoch fit of that network at
    batch 512 (8 steps) took calls of 1, 5 and 2 steps before, one call of 8 now: one
    call against three, one thread, min 1.208 against 1.247 s (benchmarks/RESULTS.md,
    session 12). How the steps are cut into calls changes no result
    (tests/test_pacing.py, tests/test_epoch_runner.py).
    """

    def __init__(self, model, batch_size: int, seconds: float) -> None:
        self.model, self.batch_size, self.seconds = model, batch_size, seconds
        with _PACE_LOCK:
            last = _PACE.get(model)
        self.chunk = 1 if last is None or last[0] != batch_size else \
            max(1, int(seconds / last[1]))

    def steps(self, left: int) -> int:
        """The steps of the next call when `left` (>= 1) are left to take."""
        k = min(self.chunk, left)
        return left if left <= k + k // 2 else k

    def took(self, k: int, seconds: float) -> None:
        """The last call took `k` steps in `seconds` (its Python round trip included)."""
        seconds = max(seconds, 1e-6)
        self.chunk = max(1, min(16 * k, int(k * self.seconds / seconds)))
        with _PACE_LOCK:
            _PACE[self.model] = (self.batch_size, seconds / k)


def chunk_seconds(snap: tuple) -> float:
    """Engine time per chunk that keeps refreshing the snapshot `snap` a small share of it."""
    cost = snapshot_bytes(snap) / SNAPSHOT_BYTES_PER_S
    return min(MAX_CHUNK_SECONDS, max(CHUNK_SECONDS, cost / SNAPSHOT_SHARE))
