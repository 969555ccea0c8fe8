"""The outer training loop every trainer shares: epochs (or iterations), the History,
validation, early stopping with the best weights, callbacks and the per-epoch line.

A trainer (the engine's minibatch epochs in :mod:`fastmlp.train.first_order`, a solver
iteration in :mod:`fastmlp.solvers`, a distributed step) does the work of one epoch and
hands its figures to :meth:`Loop.end_epoch`, which records them and decides whether to
stop; :meth:`Loop.finish` ends the run with the best weights when early stopping kept some.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastmlp.model.losses import reports_accuracy
from fastmlp.train.history import History
from fastmlp.train.state import restore, snapshot
from fastmlp.validation import C_INT_MAX, check_float, check_int

MONITORS = ("val_loss", "val_accuracy")


class Loop:
    """Epoch bookkeeping of one training run.

    Parameters
    ----------
    model : BaseMLP
    epochs : int
        The last epoch (for the per-epoch line).
    val : (X, labels, dense), optional
        Validation data, already checked (``model._check_X`` / ``model._targets``).
    callbacks : sequence of callables
        ``callback(model, history)`` after every epoch; a truthy return stops training.
    early_stopping : bool
        Keep the weights of the best `monitor` value and stop after `patience` epochs
        without an improvement larger than `min_delta`.
    validation_every : int
        Evaluate `val` every this many epochs and after the last one (1: every epoch);
        the other epochs record None, and early stopping judges the evaluated ones.
    tol, n_iter_no_change : float or None, int
        With `tol`, stop once the training loss has failed to improve on its best by more
        than `tol` for more than `n_iter_no_change` consecutive epochs (scikit-learn's
        rule for its MLPs without early stopping); None: never.
    restore_best : bool
        Keep the weights of the best `monitor` value (as early stopping does) and give
        them back at the end of the run however it ends: epochs used up, a callback or
        `tol` stopping it.
    verbose : bool
        Print one line per epoch.
    unit : str
        What an epoch is called in that line ("epoch", "iteration").
    history, best
        A History and early-stopping best ``(score, epoch, snapshot)`` to go on from (a
        resumed checkpoint).
    """

    def __init__(self, model, *, epochs: int, val: tuple | None = None,
                 callbacks: Sequence[Callable] | None = (), early_stopping: bool = False,
                 monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 verbose: bool = False, unit: str = "epoch", history: History | None = None,
                 best: tuple | None = None, validation_every: int = 1,
                 tol: float | None = None, n_iter_no_change: int = 10,
                 restore_best: bool = False) -> None:
        check_monitor(model, monitor, val)
        if restore_best and val is None:
            raise ValueError("restore_best needs validation data (validation_data or "
                             "validation_fraction)")
        self.model, self.epochs, self.val = model, epochs, val
        self.callbacks = check_callables(callbacks)
        self.validation_every = check_int(validation_every, "validation_every", 1, C_INT_MAX)
        self.tol = None if tol is None else check_float(tol, "tol", low=0.0)
        self.n_iter_no_change = check_int(n_iter_no_change, "n_iter_no_change", 1, C_INT_MAX)
        self.restore_best = bool(restore_best)
        self.early_stopping, self.monitor = early_stopping, monitor
        self.patience, self.min_delta = patience, min_delta
        self.verbose, self.unit = verbose, unit
        self.history = History() if history is None else history
        self.best = best

    def end_epoch(self, epoch: int, *, loss: float, accuracy: float | None, lr: float | None,
                  seconds: float, samples: int, grad_norm: list[float],
                  hooks: Sequence[Callable[[dict], object]] = ()) -> bool:
        """Record epoch `epoch` (validation metrics are computed here), call each of
        `hooks` with the epoch's metrics (a schedule's ``epoch_end``), print its line, keep
        the early-stopping best, run the callbacks; True when training should stop."""
        model, history = self.model, self.history
        vl = va = None
        validate = epoch % self.validation_every == 0 or epoch == self.epochs
        if self.val is not None and validate:
            metrics = model._evaluate_prepared(*self.val)
            vl, va = metrics["loss"], metrics["accuracy"]
        history.append(epoch=epoch, loss=loss, accuracy=accuracy, val_loss=vl,
                       val_accuracy=va, lr=lr, time=seconds,
                       samples_per_s=samples / max(seconds, 1e-9), grad_norm=grad_norm)
        for hook in hooks:
            hook({"loss": loss, "accuracy": accuracy, "val_loss": vl, "val_accuracy": va})
        if self.verbose:
            print(epoch_line(epoch, self.epochs, loss, accuracy, vl, va, seconds, samples,
                             self.unit), flush=True)
        if (self.early_stopping or self.restore_best) and vl is not None:
            score = vl if self.monitor == "val_loss" else -va
            best = self.best
            if best is None or score < best[0] - self.min_delta:
                self.best = (score, epoch, snapshot(model, None, best[2] if best else None))
            elif self.early_stopping and epoch - best[1] >= self.patience:
                history.stopped_epoch = epoch
        if self.tol is not None and no_improvement_count(history.loss, self.tol) > \
                self.n_iter_no_change:
            history.stopped_epoch = epoch
        stop = history.stopped_epoch == epoch or any([bool(cb(model, history))
                                                      for cb in self.callbacks])
        if stop:
            history.stopped_epoch = epoch
        return stop

    def finish(self) -> History:
        """End the run: with early stopping or `restore_best`, the model gets the best
        weights back (``history.best_epoch``). Returns the History."""
        if self.best is not None:
            restore(self.model, self.best[2], None)
            self.history.best_epoch = self.best[1]
        return self.history


def no_improvement_count(losses: list[float], tol: float) -> int:
    """The epochs at the end of `losses` in a row whose loss failed to improve on the best
    loss before it by more than `tol` (scikit-learn's count; reset by an improvement)."""
    count, best = 0, float("inf")
    for loss in losses:
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
    return count


def check_monitor(model, monitor: str, val: tuple | None = None) -> None:
    """ValueError unless early stopping can watch `monitor` on `model` (and on the
    validation data `val` = (X, labels, dense), when given)."""
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
    if monitor == "val_accuracy" and model.heads:
        raise ValueError("monitor='val_accuracy' needs one accuracy, and a model with heads "
                         "has one per head: monitor 'val_loss' (their weighted total)")
    if monitor == "val_accuracy" and not model._loss.has_accuracy:
        raise ValueError("monitor='val_accuracy' needs a loss with an accuracy "
                         "(not poisson)")
    if monitor == "val_accuracy" and val is not None and \
            not reports_accuracy(model._loss, val[2]):
        raise ValueError(f"monitor='val_accuracy': {model._loss.name} has an accuracy only "
                         f"for class targets (integer labels, one-hot or ±1 rows), and the "
                         f"validation targets are not")


def check_callables(items: Sequence[Callable] | None) -> list:
    """`items` (None: none) as a list; TypeError names the first that is not callable."""
    items = list(items or [])
    for cb in items:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
    return items


def epoch_line(epoch, epochs, loss, acc, val_loss, val_acc, seconds, n,
               unit: str = "epoch") -> str:
    """The per-epoch progress line."""
    parts = [f"{unit} {epoch:>{len(str(epochs))}}/{epochs}", f"loss {loss:.4f}"]
    if acc is not None:
        parts.append(f"acc {acc:.4f}")
    if val_loss is not None:
        parts.append(f"val_loss {val_loss:.4f}")
    if val_acc is not None:
        parts.append(f"val_acc {val_acc:.4f}")
    parts.append(f"{seconds:.2f}s ({n / max(seconds, 1e-9):,.0f} samples/s)")
    return "  ".join(parts)
