"""Training: one loop shape shared by every way of training a model.

- :mod:`~fastmlp.train.data` prepares the data once (checked inputs and targets, sample
  weights, the validation split);
- a trainer does one epoch's work: :class:`~fastmlp.train.first_order.EngineEpochs`
  (minibatch steps in the engine, the trainer of ``MLP.fit``), an iteration of a
  :mod:`fastmlp.solvers` method, a distributed step;
- :class:`~fastmlp.train.loop.Loop` owns what is common to all of them: epochs, the
  History, validation, early stopping with the best weights, callbacks, the per-epoch line;
- :mod:`~fastmlp.train.state` keeps the states to go back to (snapshots, the divergence
  guard); checkpoints are :mod:`fastmlp.train.checkpoint`'s.

:class:`~fastmlp.train.epoch_runner.EpochRunner` is the scikit-learn estimators' fast path:
many epochs per engine call with their own stopping rules.
"""

from __future__ import annotations

import importlib

# Imported on first use: the model (fastmlp.model.base) imports train.regularization and
# train.history, and the trainers import the model back.
_EXPORTS = {"fit": "first_order", "EpochRunner": "epoch_runner", "Loop": "loop",
            "FitOptions": "options"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fastmlp.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fastmlp.train' has no attribute {name!r}")


__all__ = ["fit", "EpochRunner", "Loop", "FitOptions"]
