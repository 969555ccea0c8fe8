"""The model: :class:`MLP` (the C engine's model) on :class:`~fastmlp.model.base.BaseMLP`
(what it shares with the NumPy reference: constructor checks, initialization, the public
API), its activations, losses and initializers, the per-model lock that makes one model
safe to share between threads, and :class:`~fastmlp.model.ensemble.Ensemble`."""

from __future__ import annotations

from fastmlp.model.base import BaseMLP
from fastmlp.model.mlp import MLP

__all__ = ["MLP", "BaseMLP"]
