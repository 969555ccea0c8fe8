"""Figures of training and of the inside of a network (matplotlib, the ``plot`` extra:
``pip install 'fastmlp[plot]'``).

The functions draw on ``matplotlib.figure.Figure`` objects, never through pyplot's global
state, so they work with any backend (and none: ``fig.savefig(path)``) and leave no open
figures behind. Those that draw one panel take an optional ``ax`` and return the Axes;
those that draw several return the Figure (its panels in ``fig.axes``). In a Jupyter
notebook a returned Figure displays itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fastmlp.train.history import History

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_EPOCH_SERIES = {"loss": "val_loss", "accuracy": "val_accuracy", "lr": None}
_STEP_SERIES = {"loss": "step_loss", "lr": "step_lr", "grad_norm": "step_grad_norm"}
_PANEL = (4.0, 3.0)  # inches per panel


def _figure(n_panels: int, width: float | None = None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("fastmlp.plots needs matplotlib: pip install 'fastmlp[plot]'") \
            from None
    w, h = _PANEL
    return Figure(figsize=(width or w * n_panels, h), layout="constrained")


def _axes(ax: Axes | None) -> Axes:
    return _figure(1).add_subplot() if ax is None else ax


def plot_history(history: History, metrics: Sequence[str] = ("loss", "accuracy", "lr"),
                 *, label: str | None = None, fig: Figure | None = None) -> Figure:
    """Per-epoch curves of a :class:`~fastmlp.History`: one panel per metric, training
    values solid and validation values dashed (where there are any).

    Parameters
    ----------
    history : fastmlp.History
    metrics : sequence of {"loss", "accuracy", "lr"}
        The panels. A metric with no values (accuracy of a ``poisson`` model, or of ``mse``
        on non-class targets) is skipped.
    label : str, optional
        Legend name of these curves; pass the Figure back in `fig` to overlay the history
        of another run on the same panels.
    fig : matplotlib.figure.Figure, optional
        A Figure returned by an earlier call with the same metrics.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_metrics(metrics, _EPOCH_SERIES)
    shown = [m for m in metrics if any(v is not None for v in history[m])]
    if fig is None:
        fig = _figure(max(len(shown), 1))
        panels = fig.subplots(1, max(len(shown), 1), squeeze=False)[0]
    else:
        panels = fig.axes
        if len(panels) != len(shown):
            raise ValueError(f"fig has {len(panels)} panels, these metrics need {len(shown)}")
    prefix = "" if label is None else f"{label} "
    for ax, m in zip(panels, shown):
        line, = ax.plot(history.epoch, _values(history[m]), label=f"{prefix}train")
        val = _EPOCH_SERIES[m]
        if val is not None and any(v is not None for v in history[val]):
            ax.plot(history.epoch, _values(history[val]), "--", color=line.get_color(),
                    label=f"{prefix}validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        if m == "lr":
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    return fig


def plot_steps(history: History, metrics: Sequence[str] = ("loss", "lr"), *,
               smooth: int = 1, label: str | None = None, fig: Figure | None = None) -> Figure:
    """Per-step curves of a ``fit(record="step")`` History: the loss of every step's batch,
    the learning rate and (recorded with ``record_grad_norms=True``) each layer's gradient
    norm, one panel each.

    Parameters
    ----------
    history : fastmlp.History
        Recorded with ``record="step"``.
    metrics : sequence of {"loss", "lr", "grad_norm"}
        ``grad_norm`` draws one line per dense layer, on a log scale.
    smooth : int, default 1
        Also draw the moving average over this many steps (1: none) over the raw curve.
    label, fig
        As in :func:`plot_history`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_metrics(metrics, _STEP_SERIES)
    if not history.step_loss:
        raise ValueError("the history holds no steps: train with fit(record='step')")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be an int >= 1, got {smooth!r}")
    if fig is None:
        fig = _figure(len(metrics))
        panels = fig.subplots(1, len(metrics), squeeze=False)[0]
    else:
        panels = fig.axes
        if len(panels) != len(metrics):
            raise ValueError(f"fig has {len(panels)} panels, these metrics need {len(metrics)}")
    if "grad_norm" in metrics and len(history.step_grad_norm) != len(history.step_loss):
        raise ValueError("the history holds no per-step gradient norms: train with "
                         "fit(record='step', record_grad_norms=True)")
    for ax, m in zip(panels, metrics):
        series = np.asarray(getattr(history, _STEP_SERIES[m]), dtype=np.float64)
        if m == "grad_norm":
            names = [f"{label + ' ' if label else ''}layer {l + 1}"
                     for l in range(series.shape[1])]
        else:
            series, names = series[:, None], [label]
        steps = np.arange(1, len(series) + 1)
        for y, name in zip(series.T, names):
            if smooth > 1 and len(y) >= smooth:
                line, = ax.plot(steps, y, alpha=0.3, linewidth=0.8)
                ax.plot(steps[smooth - 1 :], np.convolve(y, np.ones(smooth) / smooth, "valid"),
                        color=line.get_color(), label=name)
            else:
                ax.plot(steps, y, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(m)
        if m != "loss" or np.all(series > 0):
            ax.set_yscale("log")
        if m == "grad_norm" or label is not None:
            ax.legend(fontsize="small")
    return fig


def plot_gradient_flow(norms: Sequence, *, labels: Sequence[str] | None = None,
                       ax: Axes | None = None) -> Axes:
    """Gradient norm per layer, input side first, on a log scale: vanishing gradients
    fall toward the input, exploding ones rise.

    Parameters
    ----------
    norms : sequence of float, or sequence of sequences of float
        One norm per dense layer (:func:`fastmlp.diagnostics.gradient_flow`, an entry of
        ``History.grad_norm``), or several such lists drawn as one line each (e.g. several
        initializers, or the values of a :class:`~fastmlp.diagnostics.Recorder`).
    labels : sequence of str, optional
        One legend entry per line.
    ax : matplotlib.axes.Axes, optional
        Draw here instead of in a new Figure.

    Returns
    -------
    matplotlib.axes.Axes
    """
    rows = np.asarray(norms, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError("norms must be one list of per-layer norms or a list of such lists")
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"got {len(labels)} labels for {len(rows)} lines")
    ax = _axes(ax)
    layers = np.arange(1, rows.shape[1] + 1)
    for i, row in enumerate(rows):
        ax.plot(layers, row, "o-", label=None if labels is None else labels[i])
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (input side first)")
    ax.set_ylabel("|dLoss/dW| (L2)")
    if labels is not None:
        ax.legend(fontsize="small")
    return ax


def plot_activation_histograms(model, X: object, *, which: str = "post",
                               bins: int = 50) -> Figure:
    """Histogram of each hidden layer's activations over X (one panel per layer; from
    :meth:`~fastmlp.model.base.BaseMLP.activations`, inference mode).

    Parameters
    ----------
    model : fastmlp.MLP or fastmlp.reference.MLP
    X : array-like of shape (n_samples, n_features)
    which : {"post", "pre"}
        The activation's output or its argument.
    bins : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    if which not in ("post", "pre"):
        raise ValueError(f"which must be 'post' or 'pre', got {which!r}")
    layers = model.activations(X)[:-1]
    if not layers:
        raise ValueError("the model has no hidden layer")
    fig = _figure(len(layers), width=min(3.0 * len(layers), 16.0))
    panels = fig.subplots(1, len(layers), squeeze=False, sharey=True)[0]
    for l, (ax, layer) in enumerate(zip(panels, layers)):
        ax.hist(getattr(layer, which).ravel().astype(np.float64), bins=bins)
        ax.set_title(f"layer {l + 1} ({layer.activation})", fontsize="small")
        ax.set_xlabel("f(z)" if which == "post" else "z")
    panels[0].set_ylabel("count")
    return fig


def plot_decision_boundary(model, X: object, y: object, *, resolution: int = 200,
                           classify: Callable[[np.ndarray], object] | None = None,
                           ax: Axes | None = None) -> Axes:
    """The classes `model` predicts over the plane of two-feature inputs X, with the
    samples on top (coloured by `y`).

    Parameters
    ----------
    model : fastmlp.MLP or fastmlp.reference.MLP
        A model with 2 inputs; its classes are ``predict_labels`` (a single-output hinge
        or sigmoid model: the sign or the 0/1 output).
    X : array-like of shape (n_samples, 2)
    y : array-like of shape (n_samples,)
        Colours of the samples.
    resolution : int, default 200
        Grid points per axis.
    classify : callable, optional
        Maps inputs ``(m, 2)`` to one class per row, in place of ``model.predict_labels``
        (which a model without class labels, e.g. ``poisson``, lacks): for instance
        ``lambda X: model.predict(X)[:, 0] > 0.5``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n_samples, 2), got {X.shape}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 1e-9
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    labels = model.predict_labels(grid) if classify is None else classify(grid)
    labels = np.asarray(labels, dtype=np.float64)
    if labels.size != resolution * resolution:
        raise ValueError("plot_decision_boundary needs one class per sample: a model with "
                         "class labels or a single output")
    labels = labels.reshape(resolution, resolution)
    ax = _axes(ax)
    ax.contourf(gx, gy, labels, alpha=0.3, cmap="coolwarm")
    ax.scatter(X[:, 0], X[:, 1], c=np.ravel(y), s=8, cmap="coolwarm", edgecolors="none")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    return ax


def _values(series: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in series], dtype=np.float64)


def _check_metrics(metrics: Sequence[str], known: dict) -> None:
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty sequence of names from {list(known)}")
    for m in metrics:
        if m not in known:
            raise ValueError(f"unknown metric {m!r}; choose from {list(known)}")
