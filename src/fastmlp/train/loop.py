"""The outer training loop every trainer shares: epochs (or iterations), the History,
validation, early stopping with the best weights, callbacks and the per-epoch line.

A trainer (the engine's minibatch epochs in :mod:`fastmlp.train.first_order`, a solver
iteration in :mod:`fastmlp.solvers`, a distributed step) does the work of one epoch and
hands its figures to :meth:`Loop.end_epoch`, which records them and decides whether to
stop; :meth:`Loop.finish` ends the run with the best weights when early stopping kept some.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastmlp.train.history import History
from fastmlp.train.state import restore, snapshot

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
                 best: tuple | None = None) -> None:
        check_monitor(model, monitor)
        self.model, self.epochs, self.val = model, epochs, val
        self.callbacks = check_callables(callbacks)
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
        if self.val is not None:
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
        if self.early_stopping:
            score = vl if self.monitor == "val_loss" else -va
            best = self.best
            if best is None or score < best[0] - self.min_delta:
                self.best = (score, epoch, snapshot(model, None, best[2] if best else None))
            elif epoch - best[1] >= self.patience:
                history.stopped_epoch = epoch
        stop = history.stopped_epoch == epoch or any([bool(cb(model, history))
                                                      for cb in self.callbacks])
        if stop:
            history.stopped_epoch = epoch
        return stop

    def finish(self) -> History:
        """End the run: with early stopping, the model gets the best weights back
        (``history.best_epoch``). Returns the History."""
        if self.best is not None:
            restore(self.model, self.best[2], None)
            self.history.best_epoch = self.best[1]
        return self.history


def check_monitor(model, monitor: str) -> None:
    """ValueError unless early stopping can watch `monitor` on `model`."""
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
    if monitor == "val_accuracy" and not model._loss.has_accuracy:
        raise ValueError("monitor='val_accuracy' needs a loss with an accuracy "
                         "(not mse or poisson)")


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
