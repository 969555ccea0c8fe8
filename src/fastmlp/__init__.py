"""fastmlp: fast multilayer-perceptron training on the CPU.

A C/OpenMP engine runs the training steps (fused forward, backpropagation, the
update) under a thin Python API; :mod:`fastmlp.reference` is the pure-NumPy twin
every kernel is checked against.

>>> import fastmlp
>>> model = fastmlp.MLP([784, 256, 128, 10], activation="relu", loss="cross_entropy")
"""

from __future__ import annotations

from fastmlp import curvature, datasets, optim, reference, schedules, serialization, solvers
from fastmlp._engine import (default_threads, flush_denormal, have_openmp, kernel_info,
                             set_flush_denormal)
from fastmlp.errors import ConcurrentFitError, TrainingDivergedError
from fastmlp.io.loading import build_model
from fastmlp.model import MLP
from fastmlp.model.ensemble import Ensemble
from fastmlp.model.heads import Head
from fastmlp.model.ties import Tie
from fastmlp.train.history import History

__version__ = "0.1.0"

_MODEL_KINDS = {"fastmlp.model.MLP": MLP, "fastmlp.reference.model.MLP": reference.MLP}


_ESTIMATOR_KINDS = ("fastmlp.estimators.MLPClassifier", "fastmlp.estimators.MLPRegressor")


def load(path, *, threads: int | None = None):
    """Read a model written by ``save(path)`` of :class:`MLP`, the reference MLP,
    :class:`MLPClassifier` or :class:`MLPRegressor`. The file format cannot execute code;
    a truncated, corrupted, oversized or foreign file raises ValueError naming the problem.
    """
    data = serialization.read_file(path)
    kind, config, arrays = serialization.loads(data, str(path))
    if kind in _ESTIMATOR_KINDS:
        from fastmlp import estimators

        cls = getattr(estimators, kind.rsplit(".", 1)[1])
        return cls._from_file(config, arrays, str(path), threads)
    cls = _MODEL_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"{path}: unknown model kind {kind!r}")
    return build_model(cls, config, arrays, str(path), threads)


def __getattr__(name: str):
    # the scikit-learn estimators import scikit-learn: only when asked for
    if name in ("MLPClassifier", "MLPRegressor"):
        from fastmlp import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


__all__ = [
    "MLP",
    "MLPClassifier",
    "MLPRegressor",
    "Ensemble",
    "Head",
    "Tie",
    "load",
    "History",
    "TrainingDivergedError",
    "ConcurrentFitError",
    "datasets",
    "optim",
    "schedules",
    "curvature",
    "solvers",
    "default_threads",
    "have_openmp",
    "kernel_info",
    "set_flush_denormal",
    "flush_denormal",
    "__version__",
]
