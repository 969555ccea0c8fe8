"""Population statistics of batch normalization: each batch-norm layer's inference mean
and variance computed from a whole data set, in place of the running averages that
training keeps.

Layer by layer in network order, one pass over the data per batch-norm layer: the inputs
of layer l's normalization depend on the statistics of the layers below it, which are
therefore final before layer l is measured. A pass runs the network in inference mode
(NumPy, the model's dtype) in blocks of rows and merges the blocks' means and sums of
squared deviations in float64 (Chan et al.'s pairwise update), so the mean is the exact
mean of all rows up to rounding, whatever the block size. The variance stored is the
unbiased one (divided by n - 1), as PyTorch keeps ``running_var``.
"""

from __future__ import annotations

import numpy as np

from fastmlp.reference import functional as F


def population_statistics(model, X, batch_size: int) -> list:
    """Per hidden layer: None, or ``(mean, unbiased variance)`` (float64, shape (n_l,))
    of its batch normalization's input over all rows of X (n, n_0), each layer measured
    with the new statistics of the layers below it. X is checked (an array of the model's
    dtype, or :class:`fastmlp.io.inputs.Features`, read `batch_size` rows at a time, so a
    memory map is never converted whole), n >= 2."""
    flat, running = model._backend_flat(), model._backend_running().copy()
    dtype = model.dtype.type
    layers = model._split(flat)
    bn_layers = [l for l, code in enumerate(model._batch_norm) if code]
    result: list = [None] * (model.n_layers - 1)
    for target in bn_layers:
        n = 0
        mean = m2 = None
        for r0 in range(0, len(X), batch_size):
            x = _bn_input(model, layers, running, _block(X, r0, batch_size), target, dtype)
            block = x.astype(np.float64)
            k, block_mean = len(block), block.mean(axis=0)
            block_m2 = ((block - block_mean) ** 2).sum(axis=0)
            if mean is None:
                n, mean, m2 = k, block_mean, block_m2
                continue
            delta = block_mean - mean
            total = n + k
            mean = mean + delta * (k / total)
            m2 = m2 + block_m2 + delta**2 * (n * k / total)
            n = total
        var = m2 / (n - 1)
        result[target] = (mean, var)
        r0, width = model._layout[target][5], model._layout[target][3]
        running[r0 : r0 + width] = mean
        running[r0 + width : r0 + 2 * width] = var
    return result


def _bn_input(model, layers, running, x, target, dtype):
    """The input of hidden layer `target`'s batch normalization for rows x, inference mode,
    with the running statistics `running`."""
    classic = model._dropout_mode == "classic"
    if classic and model._dropout[0] > 0:
        x = x * dtype(1 - model._dropout[0])
    bn_index = 0
    for l in range(target + 1):
        W, b = layers["weights"][l], layers["biases"][l]
        code = model._batch_norm[l]
        z = x @ W + b
        if code and l < target:
            gamma, beta = layers["gamma"][bn_index], layers["beta"][bn_index]
            r0, width = model._layout[l][5], model._layout[l][3]
            rm, rv = running[r0 : r0 + width], running[r0 + width : r0 + 2 * width]
            bn_index += 1
        if code == 1:  # before the activation
            if l == target:
                return z
            z = F.batch_norm_infer(z, gamma, beta, rm, rv, model._bn_eps)[0]
        a = F.activation(model._activations[l], z, model._leaky_slope)
        if code == 2:  # after the activation
            if l == target:
                return a
            a = F.batch_norm_infer(a, gamma, beta, rm, rv, model._bn_eps)[0]
        p = model._dropout[l + 1]
        x = a * dtype(1 - p) if classic and p > 0 else a
    raise AssertionError("unreachable: layer `target` has batch normalization")


def _block(X, r0: int, size: int) -> np.ndarray:
    """Rows [r0, r0 + size) of X as the network sees them."""
    if isinstance(X, np.ndarray):
        return X[r0 : r0 + size]
    return X.take(np.arange(r0, min(r0 + size, len(X)), dtype=np.int64)).dense()
