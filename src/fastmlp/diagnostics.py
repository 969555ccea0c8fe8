"""Looking inside a network: dead units, saturation, activation sparsity, gradient flow.

Each measure is a function of a model and data returning one value per layer, and
:class:`Recorder` turns any of them into a ``fit`` callback (per epoch or per step) that
keeps the values over training::

    dead = diagnostics.Recorder(diagnostics.dead_units, X[:1000])
    flow = diagnostics.Recorder(diagnostics.gradient_flow, X[:256], y[:256])
    model.fit(X, y, callbacks=[dead], step_callbacks=[flow], step_every=50)
    dead.values, flow.steps  # one entry per call

The activation measures run :meth:`~fastmlp.model.base.BaseMLP.activations` (inference mode: no
dropout, batch norm with running statistics) and return one entry per hidden layer, None
where the measure does not apply to the layer's activation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastmlp.train.history import History
from fastmlp.validation import check_float

# The bounds of the saturating activations' outputs.
_BOUNDS = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
DEFAULT_SATURATION_EPS = 0.01


def dead_units(model, X: object) -> list[float | None]:
    """Fraction of dead ReLU units in each hidden layer: units whose pre-activation is
    ``<= 0`` for every sample of X, so that they output 0 and pass no gradient on any of
    them (``relu'(0) = 0``).

    Parameters
    ----------
    model : fastmlp.MLP or fastmlp.reference.MLP
    X : array-like of shape (n_samples, n_features)
        The samples over which a unit must stay inactive to count as dead (at least one).

    Returns
    -------
    list of float or None
        Per hidden layer, the dead fraction of its units in [0, 1]; None for a layer whose
        activation is not ``relu`` (leaky ReLU units always pass a gradient).
    """
    out = []
    for layer in _hidden(model, X):
        out.append(float(np.mean(np.all(layer.pre <= 0, axis=0)))
                   if layer.activation == "relu" else None)
    return out


def saturation(model, X: object, *, eps: float | None = None,
               threshold: float | None = None) -> list[float | None]:
    """Fraction of saturated outputs of the sigmoid and tanh layers: entries (sample,
    unit) where the activation is flat, so little gradient passes.

    An entry counts as saturated when its output lies within `eps` of a bound of the
    activation (0 and 1 for sigmoid, -1 and 1 for tanh), or, with `threshold`, when its
    pre-activation has ``|z| >= threshold``. Give one of the two (default ``eps=0.01``:
    sigmoid outside about ``|z| < 4.6``, tanh outside about ``|z| < 2.6``).

    Returns
    -------
    list of float or None
        Per hidden layer, the saturated share of its ``n_samples * n_units`` outputs;
        None for layers with another activation.
    """
    if eps is not None and threshold is not None:
        raise ValueError("give saturation either eps or threshold, not both")
    if threshold is not None:
        threshold = check_float(threshold, "threshold", positive=True)
    else:
        eps = check_float(DEFAULT_SATURATION_EPS if eps is None else eps, "eps", low=0.0)
    out = []
    for layer in _hidden(model, X):
        bounds = _BOUNDS.get(layer.activation)
        if bounds is None:
            out.append(None)
        elif threshold is not None:
            out.append(float(np.mean(np.abs(layer.pre) >= threshold)))
        else:
            post = layer.post.astype(np.float64)
            out.append(float(np.mean((post <= bounds[0] + eps) | (post >= bounds[1] - eps))))
    return out


def activation_sparsity(model, X: object, *, tol: float = 0.0) -> list[float]:
    """Fraction of (sample, unit) outputs of each hidden layer's activation with
    ``|f(z)| <= tol``: how sparse the representation is (ReLU layers are sparse; a
    sigmoid layer's outputs are never exactly 0).

    Returns
    -------
    list of float
        Per hidden layer, the share of zero (within `tol`) activation outputs.
    """
    tol = check_float(tol, "tol", low=0.0)
    return [float(np.mean(np.abs(layer.post) <= tol)) for layer in _hidden(model, X)]


def gradient_flow(model, X: object, y: object, **options: object) -> list[float]:
    """L2 norm of each dense layer's weight gradient of the objective on ``(X, y)``,
    input side first: vanishing gradients shrink toward the input, exploding ones grow.

    Parameters
    ----------
    model : fastmlp.MLP or fastmlp.reference.MLP
    X, y : array-like
        The batch, as for :meth:`~fastmlp.model.base.BaseMLP.gradients`.
    **options
        Passed to ``model.gradients`` (``training``, ``step``, ``sample_weight``,
        penalties).

    Returns
    -------
    list of float
        One norm per dense layer (the same quantity as ``History.grad_norm``).
    """
    grads = model.gradients(X, y, **options)["weights"]
    return [float(np.sqrt(np.sum(np.square(g, dtype=np.float64)))) for g in grads]


class Recorder:
    """A ``fit`` callback that evaluates a measure each time it is called and keeps it.

    Pass it in ``fit(callbacks=[...])`` (after every epoch) or
    ``fit(step_callbacks=[...], step_every=k)`` (every k steps). It never stops training.

    Parameters
    ----------
    measure : callable
        Called as ``measure(model, *args, **kwargs)``, e.g. :func:`dead_units` with
        ``args=(X,)``; any function of the model works.
    *args, **kwargs
        Its further arguments (typically a fixed probe set of samples).

    Attributes
    ----------
    values : list
        What the measure returned, one entry per call.
    steps : list of int
        Training steps the fit had taken at each call (``history.steps``).
    epochs : list of int
        Epochs completed at each call (``len(history)``).
    """

    def __init__(self, measure: Callable, *args: object, **kwargs: object) -> None:
        if not callable(measure):
            raise TypeError(f"measure must be callable, got {measure!r}")
        self.measure, self.args, self.kwargs = measure, args, kwargs
        self.values: list = []
        self.steps: list[int] = []
        self.epochs: list[int] = []

    def __call__(self, model: object, history: History) -> bool:
        self.values.append(self.measure(model, *self.args, **self.kwargs))
        self.steps.append(history.steps)
        self.epochs.append(len(history))
        return False

    def as_array(self) -> np.ndarray:
        """The values as a float array of shape ``(calls, layers)`` (None becomes NaN)."""
        return np.array([[np.nan if v is None else v for v in row] for row in self.values],
                        dtype=np.float64).reshape(len(self.values), -1)


def _hidden(model, X: object) -> list:
    return model.activations(X)[:-1]
