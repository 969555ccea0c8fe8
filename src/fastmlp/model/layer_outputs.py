"""Every layer's outputs in inference mode: what ``model.activations(X)`` returns.

The forward pass here is the documented one of ``predict`` (no dropout; batch norm with its
running statistics; classic dropout's ``(1 - p)`` scaling), written in NumPy from the model's
parameters in the model's dtype, so that each intermediate array can be kept. For the engine
model it agrees with ``predict`` to float rounding (the engine sums in another order); for
:class:`fastmlp.reference.MLP` it is the same arithmetic as its own forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmlp.reference import functional as F


@dataclass(frozen=True)
class LayerActivations:
    """The outputs of one dense layer for a batch of inputs, each of shape
    ``(n_samples, n_units)``.

    Attributes
    ----------
    activation : str
        The layer's activation function: a hidden activation name, or for the output layer
        the loss's output activation (``softmax``, ``sigmoid``, ``exp`` or ``identity``).
    pre : numpy.ndarray
        The argument of the activation function: ``x @ W + b``, batch-normalized first for a
        ``batch_norm="before"`` layer. For the output layer, the logits.
    post : numpy.ndarray
        The activation function's output ``f(pre)``. For the output layer, ``predict(X)``
        (with multitask heads: the logits, ``predict``'s blocks before their activations).
    output : numpy.ndarray
        What the next layer receives: `post`, batch-normalized for a ``batch_norm="after"``
        layer and scaled by ``1 - p`` under classic dropout (the same array as `post` when
        neither applies).
    """

    activation: str
    pre: np.ndarray
    post: np.ndarray
    output: np.ndarray


def layer_outputs(model, X: np.ndarray) -> list[LayerActivations]:
    """The inference-mode forward pass of `model` on checked inputs X, layer by layer."""
    weights, biases = model.get_params()
    bn_state = model.batch_norm_state()
    f = model.dtype.type
    classic = model._dropout_mode == "classic"
    eps = model._bn_eps
    x = X * f(1 - model.dropout[0]) if classic and model.dropout[0] > 0 else X
    out = []
    for l, (W, b) in enumerate(zip(weights[:-1], biases[:-1])):
        bn, state, name = model.batch_norm[l], bn_state[l], model.activation[l]
        pre = x @ W + b
        if bn == "before":
            pre = _bn(pre, state, eps)
        post = F.activation(name, pre, model.leaky_slope)
        x = _bn(post, state, eps) if bn == "after" else post
        p = model.dropout[l + 1]
        if classic and p > 0:
            x = x * f(1 - p)
        out.append(LayerActivations(name, pre, post, x))
    logits = x @ weights[-1] + biases[-1]
    post = logits.copy() if model.heads else F.output_activation(model.loss, logits)
    out.append(LayerActivations(model.output_activation, logits, post, post))
    return out


def _bn(x: np.ndarray, state: dict, eps: float) -> np.ndarray:
    return F.batch_norm_infer(x, state["gamma"], state["beta"], state["running_mean"],
                              state["running_var"], eps)[0]
