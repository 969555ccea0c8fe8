"""Curvature products of an MLP's objective in plain NumPy: Hessian-vector products by
Pearlmutter's R-operator, Gauss-Newton(-Bartlett) products and forward-mode Jacobian-vector
products. The oracle that the engine's ``fm_hvp`` / ``fm_gnvp`` / ``fm_jvp`` are checked against.

The R-operator (Pearlmutter 1994) of a quantity q is ``R{q} = d/dr q(theta + r v) at r = 0``.
Every quantity of the forward pass is carried as a pair (value, R-value) -- forward-mode
differentiation along the direction v -- and the backward pass is differentiated the same
way, so that the R-value of the gradient is ``H v``:

=================  ==========================================  ==================================
pass               value                                       R-value
=================  ==========================================  ==================================
forward            ``z = x W + b``,  ``a = f(z)``              ``R z = R x W + x V + v_b``,
                                                               ``R a = f'(z) R z``
loss               ``d = dL/dZ``                               ``R d = H_L R Z``
backward           ``gW = x^T d``,  ``d_x = (d W^T) f'(z)``    ``R gW = R x^T d + x^T R d``,
                                                               ``R d_x = (R d W^T + d V^T) f'(z)
                                                               + (d W^T) f''(z) R z``
=================  ==========================================  ==================================

``H_L`` is the Hessian of the loss with respect to the logits Z: ``diag(p) - p p^T`` (times
the target mass) for softmax cross-entropy, ``s (1 - s) / K`` for binary cross-entropy,
``2 / K`` for mse, ``exp(z) / K`` for poisson, 0 for the piecewise linear hinge losses (their
kinks have measure zero),
each scaled by the sample's share of the mean. The Gauss-Newton(-Bartlett) product
(Schraudolph 2002) ``G v = J^T H_L J v`` is the same computation with the gradient part
``d`` set to zero: what remains of the backward pass is the transposed Jacobian applied to
``H_L J v``. G is positive semi-definite whenever H_L is, i.e. for every loss here (convex in
the logits).

Penalties (as in ``gradients``): ``l2/2 ||w||^2`` adds ``l2 v`` to both products; ``l1 |w|``
adds nothing (its second derivative is 0 away from w = 0, where it does not exist);
``activity_l2`` adds ``activity_l2 / n * J_a^T J_a v`` (its Hessian in the activations, to
both products), ``activity_l1`` nothing. Batch normalization is differentiated through its
batch statistics in training mode and is an affine map with the running statistics
otherwise; dropout uses the masks of training step `counter` (training) or the classic
(1-p) scaling (inference), as ``gradients`` does.

Everything is computed in float64 (the model's parameters are read and cast), whatever the
model's dtype: the results are the exact products of the model as it is stored.
"""

from __future__ import annotations

import numpy as np

from fastmlp.reference import functional as F
from fastmlp.reference.rng import STREAM_DROPOUT, stream_base


class _Net:
    """What the passes need from a model (fastmlp.MLP or the reference MLP), in float64."""

    def __init__(self, model, training: bool, counter: int):
        self.model = model
        self.flat = model._backend_flat().astype(np.float64)
        self.running = model._backend_running().astype(np.float64)
        self.layout = model._layout
        self.training = bool(training)
        self.counter = int(counter)

    def views(self, flat):
        """Per layer (W, b, gamma, beta) views into a parameter-shaped vector."""
        out = []
        for (w0, b0, n_in, n_out, g0, _) in self.layout:
            gamma = flat[g0 : g0 + n_out] if g0 >= 0 else None
            beta = flat[g0 + n_out : g0 + 2 * n_out] if g0 >= 0 else None
            out.append((flat[w0:b0].reshape(n_in, n_out), flat[b0 : b0 + n_out], gamma, beta))
        return out

    def running_stats(self, l):
        r0, n = self.layout[l][5], self.layout[l][3]
        return self.running[r0 : r0 + n], self.running[r0 + n : r0 + 2 * n]

    def dropout(self, l, shape):
        """Multiplier of the input of dense layer l: a mask (training), the classic (1-p)
        scale (inference), or None."""
        m = self.model
        p = m._dropout[l]
        if p == 0:
            return None
        if self.training:
            base = stream_base(m._seed, self.counter, STREAM_DROPOUT + l)
            return F.dropout_mask(base, shape, p, m._dropout_mode == "classic",
                                  np.dtype(np.float64))
        return 1 - p if m._dropout_mode == "classic" else None


def _second_derivative(name: str, a: np.ndarray) -> np.ndarray:
    """f''(z) written with a = f(z): sigmoid f'(1 - 2a), tanh -2a f', 0 for the piecewise
    linear ones."""
    if name == "sigmoid":
        return a * (1 - a) * (1 - 2 * a)
    if name == "tanh":
        return -2 * a * (1 - a * a)
    return np.zeros_like(a)


def _bn_forward(rec, x, rx, gamma, beta, rgamma, rbeta, net, l):
    """Batch norm on (x, R x): batch statistics (differentiated) in training, running ones
    otherwise. Keeps in `rec` what the backward pass needs."""
    eps = net.model._bn_eps
    if net.training:
        mu, rmu = x.mean(axis=0), rx.mean(axis=0)
        xc, rxc = x - mu, rx - rmu
        var, rvar = (xc * xc).mean(axis=0), 2 * (xc * rxc).mean(axis=0)
    else:
        mu, var = net.running_stats(l)
        xc, rxc, rvar = x - mu, rx, np.zeros_like(var)
    s = np.sqrt(var + eps)
    rs = rvar / (2 * s)
    xhat = xc / s
    rxhat = rxc / s - xhat * rs / s
    rec.update(xhat=xhat, rxhat=rxhat, s=s, rs=rs)
    return gamma * xhat + beta, rgamma * xhat + gamma * rxhat + rbeta


def _bn_backward(rec, dy, rdy, gamma, rgamma, training):
    """(dx, R dx, dgamma, R dgamma, dbeta, R dbeta) of batch norm from (dy, R dy)."""
    xhat, rxhat, s, rs = rec["xhat"], rec["rxhat"], rec["s"], rec["rs"]
    dgamma, rdgamma = (dy * xhat).sum(axis=0), (rdy * xhat + dy * rxhat).sum(axis=0)
    dbeta, rdbeta = dy.sum(axis=0), rdy.sum(axis=0)
    k, rk = gamma / s, rgamma / s - gamma * rs / (s * s)
    if training:
        g_mean = (dy * xhat).mean(axis=0)
        inner = dy - dy.mean(axis=0) - xhat * g_mean
        rinner = (rdy - rdy.mean(axis=0) - rxhat * g_mean
                  - xhat * (rdy * xhat + dy * rxhat).mean(axis=0))
    else:
        inner, rinner = dy, rdy
    return k * inner, rk * inner + k * rinner, dgamma, rdgamma, dbeta, rdbeta


def _forward(net, X, v, vx):
    """Logits and their R-values along parameters v and inputs vx; the cache of the
    backward pass."""
    m = net.model
    P, V = net.views(net.flat), net.views(v)
    x, rx = X, vx
    mask = net.dropout(0, X.shape)
    if mask is not None:
        x, rx = x * mask, rx * mask
    cache = {"in": [(x, rx)], "layers": []}
    for l in range(m.n_layers - 1):
        (W, b, gamma, beta), (VW, vb, rgamma, rbeta) = P[l], V[l]
        bn, rec = m._batch_norm[l], {"mask": None}
        z, rz = x @ W + b, rx @ W + x @ VW + vb
        if bn == 1:
            z, rz = _bn_forward(rec, z, rz, gamma, beta, rgamma, rbeta, net, l)
        a = F.activation(m._activations[l], z, m._leaky_slope)
        fp = F.activation_derivative(m._activations[l], a, m._leaky_slope)
        ra = fp * rz
        rec.update(a=a, ra=ra, rz=rz, fp=fp)
        x, rx = (_bn_forward(rec, a, ra, gamma, beta, rgamma, rbeta, net, l) if bn == 2
                 else (a, ra))
        mask = net.dropout(l + 1, x.shape)
        if mask is not None:
            x, rx = x * mask, rx * mask
            rec["mask"] = mask
        cache["layers"].append(rec)
        cache["in"].append((x, rx))
    (W, b, _, _), (VW, vb, _, _) = P[-1], V[-1]
    return x @ W + b, rx @ W + x @ VW + vb, cache


def _backward(net, cache, v, d, rd, pen, gauss_newton):
    """R-value of the flat gradient from (d, R d) at the logits: H v, or G v with
    `gauss_newton` (d = 0 then: the gradient part vanishes and only the transposed
    Jacobian remains)."""
    m = net.model
    P, V = net.views(net.flat), net.views(v)
    out = np.zeros_like(net.flat)
    G = net.views(out)
    n = len(d)
    act_l1, act_l2 = pen[4] / n, pen[5] / n
    for l in range(m.n_layers - 1, -1, -1):
        x, rx = cache["in"][l]
        G[l][0][...] = rx.T @ d + x.T @ rd
        G[l][1][...] = rd.sum(axis=0)
        if l == 0:
            return out
        W, VW = P[l][0], V[l][0]
        d, rd = d @ W.T, rd @ W.T + d @ VW.T
        k, rec = l - 1, cache["layers"][l - 1]
        (gamma, rgamma), bn = (P[k][2], V[k][2]), m._batch_norm[k]
        if rec["mask"] is not None:
            d, rd = d * rec["mask"], rd * rec["mask"]
        if bn == 2:
            d, rd, _, G[k][2][...], _, G[k][3][...] = _bn_backward(rec, d, rd, gamma, rgamma,
                                                                   net.training)
        a = rec["a"]
        if not gauss_newton:
            d = d + act_l1 * np.sign(a) + act_l2 * a
        rd = rd + act_l2 * rec["ra"]
        f2 = _second_derivative(m._activations[k], a)
        d, rd = d * rec["fp"], rd * rec["fp"] + d * f2 * rec["rz"]
        if bn == 1:
            d, rd, _, G[k][2][...], _, G[k][3][...] = _bn_backward(rec, d, rd, gamma, rgamma,
                                                                   net.training)
    return out


def loss_hessian_product(loss: str, Z: np.ndarray, U: np.ndarray, labels, dense,
                         weights=None, smoothing: float = 0.0) -> np.ndarray:
    """``H_L U`` row by row: the Hessian of the mean loss with respect to the logits Z (n, K)
    applied to U (n, K), cross-entropy's targets smoothed by `smoothing`. Zero for the hinge
    losses (piecewise linear); symmetric_kl and bhattacharyya have none here."""
    n, K = Z.shape
    if weights is None:
        c = np.full(n, 1.0 / n)
    else:
        w = np.asarray(weights, dtype=np.float64)
        c = w / w.sum() if w.sum() > 0 else np.zeros(n)
    if loss in ("cross_entropy", "kl_divergence"):
        t = F.smoothed(np.eye(K)[labels] if dense is None else dense.astype(np.float64),
                       smoothing)
        p = np.exp(F.log_softmax(Z))
        pu = p * U
        r = t.sum(axis=1, keepdims=True) * (pu - p * pu.sum(axis=1, keepdims=True))
    elif loss == "binary_cross_entropy":
        s = F.sigmoid(Z)
        r = s * (1 - s) * U / K
    elif loss == "mse":
        r = 2 * U / K
    elif loss == "poisson":  # half Poisson deviance of exp(z): diag(exp(z)) / K
        r = np.exp(Z) * U / K
    elif loss in ("hinge", "multi_hinge"):
        r = np.zeros_like(U)
    else:
        raise ValueError(f"no Hessian of {loss}")
    return r * c[:, None]


def _penalty_product(out, v, net, pen):
    """Adds the weight penalties' Hessian times v: l2 v on the penalized parameters."""
    if pen[0] > 0:
        F.penalty(v, out, net.layout, (pen[0], 0.0, 0, pen[3], 0.0, 0.0),
                  {t.layer for t in net.model.ties})
    return out


def _product(model, X, labels, dense, v, gauss_newton, training, counter, pen, weights):
    net = _Net(model, training, counter)
    X = X.astype(np.float64)
    v = np.asarray(v, dtype=np.float64)
    Z, RZ, cache = _forward(net, X, v, np.zeros_like(X))
    if gauss_newton:
        d = np.zeros_like(Z)
    else:
        _, _, d = F.loss_terms(model._loss.name, Z, labels, dense, weights,
                               model._label_smoothing)
    rd = loss_hessian_product(model._loss.name, Z, RZ, labels, dense, weights,
                              model._label_smoothing)
    out = _backward(net, cache, v, d, rd, pen, gauss_newton)
    return _penalty_product(out, v, net, pen).astype(model.dtype)


def hvp(model, X, labels, dense, v, *, training=False, counter=0, penalty=(0, 0, 0, 0, 0, 0),
        weights=None) -> np.ndarray:
    """``H v``: the Hessian of the objective of ``model.gradients`` (mean loss, weighted by
    `weights` (n,), plus penalties) on (X, targets) times v, ordered as the flat parameters.
    `labels`/`dense` and `penalty` are prepared as for the backends (``prepare_targets``,
    ``penalty_config``)."""
    return _product(model, X, labels, dense, v, False, training, counter, penalty, weights)


def gnvp(model, X, labels, dense, v, *, training=False, counter=0, penalty=(0, 0, 0, 0, 0, 0),
         weights=None) -> np.ndarray:
    """``G v``: the Gauss-Newton(-Bartlett) matrix ``J^T H_L J`` (plus the penalties'
    Hessian) of the same objective times v."""
    return _product(model, X, labels, dense, v, True, training, counter, penalty, weights)


def jvp(model, X, v_params=None, v_inputs=None, *, training=False, counter=0) -> np.ndarray:
    """Forward mode: ``J_theta v_params + J_x v_inputs`` of the logits (n, K) at X, where
    J_theta and J_x are the Jacobians of the logits (``predict_logits``; with `training`,
    as in a training step) with respect to the flat parameters and the inputs."""
    net = _Net(model, training, counter)
    X = X.astype(np.float64)
    v = np.zeros_like(net.flat) if v_params is None else np.asarray(v_params, np.float64)
    vx = np.zeros_like(X) if v_inputs is None else np.asarray(v_inputs, np.float64)
    _, RZ, _ = _forward(net, X, v, vx)
    return RZ.astype(model.dtype)
