"""The maths of an MLP in plain NumPy, one function per idea.

Shapes: X (n, n_0); W_l (n_l, n_{l+1}); b_l (n_{l+1},); Z (n, K) are the logits.
Losses are computed in float64 and return per-sample values whose mean is the
PyTorch ``reduction='mean'`` loss (for the elementwise losses a sample's value is
the mean over its K outputs).
"""

from __future__ import annotations

import numpy as np


# -- activations --------------------------------------------------------------------------------
def activation(name: str, z: np.ndarray, slope: float) -> np.ndarray:
    if name == "identity":
        return z
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, z, z.dtype.type(slope) * z)
    raise ValueError(name)


def activation_derivative(name: str, a: np.ndarray, slope: float) -> np.ndarray:
    """f'(z) written with the output a = f(z); relu'(0) = 0, leaky_relu'(0) = slope."""
    one = a.dtype.type(1)
    if name == "identity":
        return np.ones_like(a)
    if name == "sigmoid":
        return a * (one - a)
    if name == "tanh":
        return one - a * a
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "leaky_relu":
        return np.where(a > 0, one, a.dtype.type(slope))
    raise ValueError(name)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))


def output_activation(loss: str, z: np.ndarray) -> np.ndarray:
    from fastmlp.model.losses import get_loss

    if get_loss(loss).output_activation == "softmax":
        return np.exp(log_softmax(z.astype(np.float64))).astype(z.dtype)
    if loss == "binary_cross_entropy":
        return sigmoid(z.astype(np.float64)).astype(z.dtype)
    if loss == "poisson":
        return np.exp(z.astype(np.float64)).astype(z.dtype)
    return z.copy()


# -- forward / backward -----------------------------------------------------------------------
def forward(Ws, bs, activations, slope, X) -> list[np.ndarray]:
    """Activations of every layer: [X, A_1, ..., A_{L-1}, Z] (Z = logits, no activation)."""
    outs = [X]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = outs[-1] @ W + b
        outs.append(activation(activations[l], z, slope) if l < len(Ws) - 1 else z)
    return outs


def backward(Ws, activations, slope, outs, delta):
    """Gradients from delta = dLoss/dZ: returns dWs, dbs and dX = dLoss/dX."""
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in range(len(Ws) - 1, -1, -1):
        dWs[l] = outs[l].T @ delta
        dbs[l] = delta.sum(axis=0)
        delta = delta @ Ws[l].T
        if l > 0:
            delta = delta * activation_derivative(activations[l - 1], outs[l], slope)
    return dWs, dbs, delta


def sgd_step(params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
    """p <- p - lr * g, in place."""
    for p, g in zip(params, grads):
        p -= p.dtype.type(lr) * g


# -- losses ------------------------------------------------------------------------------------
def smoothed(t: np.ndarray, smoothing: float) -> np.ndarray:
    """Target rows t (n, K) mixed with the uniform distribution: (1 - s) t + s / K."""
    return (1 - smoothing) * t + smoothing / t.shape[1]


def xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x log y, 0 where x is 0."""
    return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def loss_terms(loss: str, Z: np.ndarray, labels, dense, weights=None, smoothing: float = 0.0):
    """Per-sample loss (n,), per-sample accuracy (n,) and delta = d(mean loss)/dZ (n, K).

    `smoothing` is cross-entropy's label smoothing (torch.nn.CrossEntropyLoss's).

    With per-sample `weights` (n,) the batch loss is sum(w * loss) / sum(w): each sample's
    loss, accuracy and delta are scaled by its share w_i * n / sum(w) (0 when sum(w) is 0),
    so plain means of the returned arrays are the weighted means.
    """
    z = Z.astype(np.float64)
    n, K = z.shape
    t = None if dense is None else dense.astype(np.float64)
    if loss == "cross_entropy":
        logp = log_softmax(z)
        if t is None:
            t = np.eye(K)[labels]
            correct = z.argmax(axis=1) == labels
        else:
            correct = z.argmax(axis=1) == t.argmax(axis=1)
        t = smoothed(t, smoothing)
        per_sample = -(t * logp).sum(axis=1)
        delta = (np.exp(logp) * t.sum(axis=1, keepdims=True) - t) / n
    elif loss in ("kl_divergence", "symmetric_kl", "bhattacharyya"):
        logq = log_softmax(z)
        q = np.exp(logq)
        correct = z.argmax(axis=1) == t.argmax(axis=1)
        if loss == "bhattacharyya":  # -log sum sqrt(t q), in the log domain
            a = np.where(t > 0, 0.5 * (np.log(np.where(t > 0, t, 1.0)) + logq), -np.inf)
            m = a.max(axis=1, keepdims=True)
            log_bc = m + np.log(np.exp(a - m).sum(axis=1, keepdims=True))
            per_sample = -log_bc[:, 0]
            delta = 0.5 * (q - np.exp(a - log_bc)) / n
        else:  # KL(t || q) = sum t log t - t log q; its gradient is cross-entropy's
            per_sample = (xlogy(t, t) - t * logq).sum(axis=1)
            delta = (q * t.sum(axis=1, keepdims=True) - t) / n
            if loss == "symmetric_kl":  # + KL(q || t) = sum q (log q - log t)
                f = logq - np.log(t)
                per_sample = per_sample + (q * f).sum(axis=1)
                delta = delta + q * (f - (q * f).sum(axis=1, keepdims=True)) / n
    elif loss == "binary_cross_entropy":
        elem = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        per_sample = elem.mean(axis=1)
        correct = ((z > 0) == (t > 0.5)).mean(axis=1)
        delta = (sigmoid(z) - t) / (n * K)
    elif loss == "mse":
        per_sample = ((z - t) ** 2).mean(axis=1)
        # meaningful for class-coded targets (losses.class_coded): argmax, or one output's sign
        correct = z.argmax(axis=1) == t.argmax(axis=1) if K > 1 else (z[:, 0] > 0) == (t[:, 0] > 0)
        delta = 2 * (z - t) / (n * K)
    elif loss == "poisson":
        mu = np.exp(z)
        t_log_t = t * np.log(np.where(t > 0, t, 1.0))  # 0 log 0 = 0
        per_sample = (mu - t * z + t_log_t - t).mean(axis=1)
        correct = np.zeros(n)
        delta = (mu - t) / (n * K)
    elif loss == "hinge":
        margin = 1 - t * z
        per_sample = np.maximum(margin, 0).mean(axis=1)
        correct = ((z > 0) == (t > 0)).mean(axis=1)
        delta = np.where(margin > 0, -t, 0) / (n * K)
    elif loss == "multi_hinge":
        rows = np.arange(n)
        margin = 1 - z[rows, labels][:, None] + z
        margin[rows, labels] = 0
        active = margin > 0
        per_sample = np.where(active, margin, 0).sum(axis=1) / K
        correct = z.argmax(axis=1) == labels
        delta = active / (n * K)
        delta[rows, labels] = -active.sum(axis=1) / (n * K)
    else:
        raise ValueError(loss)
    return _weighted(per_sample, correct.astype(np.float64), delta, weights, Z.dtype)


def _weighted(per_sample, correct, delta, weights, dtype):
    """loss_terms' result scaled by each sample's share w_i * n / sum(w) (see there)."""
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        total = w.sum()
        share = w * len(w) / total if total > 0 else np.zeros(len(w))
        per_sample, correct, delta = per_sample * share, correct * share, delta * share[:, None]
    return per_sample, correct, delta.astype(dtype)


def head_loss_terms(heads, Z: np.ndarray, dense: np.ndarray, weights=None):
    """loss_terms of a multitask net (fastmlp.model.heads): `heads` holds one
    (offset, width, loss, labels, weight, label_smoothing) per head; each head's loss is
    loss_terms' on its column block of Z against its targets in the packed `dense` (a class
    index in the block's first column when `labels`), and the sample's loss is
    sum_h weight_h * loss_h, its delta weight_h * the head's delta per block. A head of
    weight 0 is skipped (delta 0). Accuracy is 0 (heads report it per head)."""
    n, K = Z.shape
    per_sample, delta = np.zeros(n), np.zeros((n, K))
    for a, width, loss, labels, weight, smoothing in heads:
        if weight == 0:
            continue
        block = slice(a, a + width)
        y = dense[:, a].astype(np.int64) if labels else None
        ps, _, d = loss_terms(loss, Z[:, block].astype(np.float64), y,
                              None if labels else dense[:, block], smoothing=smoothing)
        per_sample += weight * ps
        delta[:, block] = weight * d
    return _weighted(per_sample, np.zeros(n), delta, weights, Z.dtype)


# -- regularizers ------------------------------------------------------------------------------
def dropout_mask(base: int, shape: tuple, p: float, classic: bool, dtype) -> np.ndarray:
    """0 with probability p (drawn from the step's hash stream `base`), else 1/(1-p)
    (inverted dropout) or 1 (classic)."""
    from fastmlp.reference.rng import uniform_at

    u = uniform_at(base, np.arange(int(np.prod(shape)))).reshape(shape)
    keep = dtype.type(1) if classic else dtype.type(1.0 / (1.0 - p))
    return np.where(u >= p, keep, dtype.type(0))


def batch_norm_train(x, gamma, beta, eps):
    """y = gamma * xhat + beta with the batch's mean and biased variance."""
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    xhat = (x - mean) / np.sqrt(var.astype(np.float64) + eps).astype(x.dtype)
    return gamma * xhat + beta, xhat, mean, var


def batch_norm_infer(x, gamma, beta, running_mean, running_var, eps):
    xhat = (x - running_mean) / np.sqrt(running_var.astype(np.float64) + eps).astype(x.dtype)
    return gamma * xhat + beta, xhat


def batch_norm_backward(dy, xhat, var, gamma, eps, training):
    """dx, dgamma, dbeta; training differentiates through the batch statistics."""
    dgamma = (dy * xhat).sum(axis=0)
    dbeta = dy.sum(axis=0)
    scale = gamma / np.sqrt(var.astype(np.float64) + eps).astype(dy.dtype)
    if training:
        return scale * (dy - (dbeta + xhat * dgamma) / dy.dtype.type(len(dy))), dgamma, dbeta
    return scale * dy, dgamma, dbeta


def shift_images(X, base: int, k: int, shape: tuple) -> np.ndarray:
    """Move every row's (h, w, c) image by random (dy, dx) in [-k, k], zero fill."""
    from fastmlp.reference.rng import uniform_at

    h, w, c = shape
    n = len(X)
    u = uniform_at(base, np.arange(2 * n)).reshape(n, 2)
    d = (u * (2 * k + 1)).astype(np.int64) - k
    out = np.zeros_like(X).reshape(n, h, w, c)
    imgs = X.reshape(n, h, w, c)
    for i, (dy, dx) in enumerate(d):
        src_r = slice(max(0, -dy), h - max(0, dy))
        dst_r = slice(max(0, dy), h - max(0, -dy))
        src_c = slice(max(0, -dx), w - max(0, dx))
        dst_c = slice(max(0, dx), w - max(0, -dx))
        out[i, dst_r, dst_c] = imgs[i, src_r, src_c]
    return out.reshape(n, -1)


def affine_matrices(base: int, n: int, rotate: float, scale: float, shear: float) -> np.ndarray:
    """The (n, 2, 2) affine maps A = R(theta) Sh(phi) s of n samples in (column, row)
    coordinates, from three hash draws each: theta ~ U(-rotate, rotate) degrees with
    R = [[cos, sin], [-sin, cos]], s ~ U(1 - scale, 1 + scale), phi ~ U(-shear, shear)
    degrees with Sh = [[1, tan phi], [0, 1]]."""
    from fastmlp.reference.rng import uniform_at

    u = uniform_at(base, np.arange(3 * n)).reshape(n, 3)
    theta = np.deg2rad((2 * u[:, 0] - 1) * rotate)
    s = 1 + (2 * u[:, 1] - 1) * scale
    t = np.tan(np.deg2rad((2 * u[:, 2] - 1) * shear))
    c, sn = np.cos(theta), np.sin(theta)
    R = np.stack([np.stack([c, sn], -1), np.stack([-sn, c], -1)], -2)
    Sh = np.zeros((n, 2, 2))
    Sh[:, 0, 0] = Sh[:, 1, 1] = 1
    Sh[:, 0, 1] = t
    return R @ Sh * s[:, None, None]


def affine_images(X, base: int, rotate: float, scale: float, shear: float,
                  shape: tuple) -> np.ndarray:
    """Map every row's (h, w, c) image by its random affine map (affine_matrices) about
    the image centre: out(p) = in(centre + A^-1 (p - centre)), bilinear, zero outside."""
    h, w, c = shape
    n = len(X)
    inv = np.linalg.inv(affine_matrices(base, n, rotate, scale, shear))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    d = np.stack([cols - (w - 1) / 2, rows - (h - 1) / 2]).reshape(2, -1)  # (2, h w)
    src = inv @ d  # (n, 2, h w)
    sx, sy = src[:, 0] + (w - 1) / 2, src[:, 1] + (h - 1) / 2
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = sx - x0, sy - y0
    imgs = X.reshape(n, h * w, c).astype(np.float64)
    out = np.zeros((n, h * w, c))
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        flat = np.where(inside, yy * w + xx, 0).astype(np.int64)
        values = np.take_along_axis(imgs, flat[:, :, None], axis=1)
        out += np.where(inside, weight, 0)[:, :, None] * values
    return out.reshape(n, -1).astype(X.dtype)


def gaussian_noise(shape: tuple, base: int, std: float) -> np.ndarray:
    """std * N(0, 1) by Box-Muller from two hash draws per element."""
    from fastmlp.reference.rng import uniform_at

    count = int(np.prod(shape))
    u = uniform_at(base, np.arange(2 * count)).reshape(count, 2)
    z = np.sqrt(-2.0 * np.log1p(-u[:, 0])) * np.cos(6.283185307179586 * u[:, 1])
    return (std * z).reshape(shape)


def penalty(flat, grad, layout, pen, tied=()):
    """Weight penalty value of the flat parameters; adds its (sub)gradient to grad. The
    weights of the layers in `tied` (another layer's, penalized there) are left out."""
    l2, l1, proximal, biases, _, _ = pen
    total = 0.0
    for l, (w0, b0, _n_in, _n_out, _, _) in enumerate(layout):
        end = layout[l + 1][0] if l + 1 < len(layout) else len(flat)
        for lo, hi in ([] if l in tied else [(w0, b0)]) + ([(b0, end)] if biases else []):
            p = flat[lo:hi]
            total += 0.5 * l2 * float(np.sum(p.astype(np.float64) ** 2)) + \
                l1 * float(np.sum(np.abs(p.astype(np.float64))))
            if grad is not None:
                grad[lo:hi] += (p.dtype.type(l2) * p
                                + p.dtype.type(0 if proximal else l1) * np.sign(p))
    return total


def prox_l1(flat, layout, t, biases):
    """Soft-threshold the penalized parameters in place: sign(w) max(|w| - t, 0)."""
    for l, (w0, b0, _, _, _, _) in enumerate(layout):
        end = layout[l + 1][0] if l + 1 < len(layout) else len(flat)
        hi = end if biases else b0
        p = flat[w0:hi]
        p[...] = np.sign(p) * np.maximum(np.abs(p) - p.dtype.type(t), 0)
