"""fastmlp: fast multilayer-perceptron training on the CPU.

A C/OpenMP engine runs the training steps (fused forward, backpropagation, the
update) under a thin Python API; :mod:`fastmlp.reference` is the pure-NumPy twin
every kernel is checked against.

>>> import fastmlp
>>> model = fastmlp.MLP([784, 256, 128, 10], activation="relu", loss="cross_entropy")
"""

from fastmlp import datasets, optim, schedules
from fastmlp._engine import default_threads, have_openmp
from fastmlp.ensemble import Ensemble
from fastmlp.errors import TrainingDivergedError
from fastmlp.history import History
from fastmlp.model import MLP

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Ensemble",
    "History",
    "TrainingDivergedError",
    "datasets",
    "optim",
    "schedules",
    "default_threads",
    "have_openmp",
    "__version__",
]
