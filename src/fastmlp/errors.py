"""Exceptions raised by fastmlp."""

from __future__ import annotations


class TrainingDivergedError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite.

    The model keeps the last weights known to give a finite loss (those at the
    start of the chunk of steps in which the loss diverged). ``history`` holds the
    epochs completed before; ``epoch`` and ``step`` locate the divergence.

    It is a ``FloatingPointError`` and also a ``ValueError``, the exception
    scikit-learn's ``MLPClassifier``/``MLPRegressor`` raise for non-finite weights,
    so that ``except ValueError`` code written for them catches it.
    """

    def __init__(self, message: str, *, history: object, epoch: int, step: int):
        super().__init__(message)
        self.history = history
        self.epoch = epoch
        self.step = step


class ConcurrentFitError(RuntimeError):
    """``fit`` was called on a model that another thread is fitting.

    Training writes the model in place; two fits at once would interleave their steps.
    Readers (``predict``, ``get_params``, ``save``, ...) may run during a fit.
    """
