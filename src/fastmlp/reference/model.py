"""`fastmlp.reference.MLP`: the same model as `fastmlp.MLP`, computed by NumPy one
batch at a time in Python. Same constructor, same seed => same initial weights, the
same shuffles and the same dropout masks, noise and shifts as the engine. Its inputs
(:class:`fastmlp.io.inputs.Features`, or arrays of the model's dtype as the engine takes them)
are converted and transformed by NumPy: all rows at once in predict and evaluate, each
batch's rows in training.

Parameters live in one flat vector laid out like the engine's,
``[W_0, b_0, (gamma_0, beta_0), W_1, b_1, ...]``, with per-layer views into it, so
optimizer state is interchangeable between the two implementations. A training step
runs, in this order: gather, shifts, noise, FGSM, forward (dropout, batch statistics),
loss + penalties, backward, tied layers' weight gradients into their sources'
(:mod:`fastmlp.model.ties`), pruning mask on the gradient, clipping, optimizer update,
proximal L1, pruning mask on the weights, tied layers' copies of their sources, batch-norm
running statistics.

Sparse X (a checked :class:`fastmlp.io.csr.CSRInput`) is made dense at each backend call:
the reference computes on dense arrays only.
"""

from __future__ import annotations

import numpy as np

from fastmlp.clip import clip_grad_norm_, clip_grad_value_
from fastmlp.io.csr import CSRInput
from fastmlp.io.inputs import Features
from fastmlp.model.base import STATUS_NONFINITE_GRAD, STATUS_NONFINITE_LOSS, STATUS_OK, BaseMLP
from fastmlp.model.heads import LABEL_LOSSES, head_blocks
from fastmlp.model.ties import fold, materialize
from fastmlp.reference import curvature, optim
from fastmlp.reference import functional as F
from fastmlp.reference.rng import (
    STREAM_AFFINE,
    STREAM_DROPOUT,
    STREAM_NOISE,
    STREAM_SHIFT,
    Xoshiro256,
    stream_base,
)


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__

    # -- storage ---------------------------------------------------------------------------
    def _backend_setup(self, threads):
        layout, off, roff = [], 0, 0
        for l, (n_in, n_out) in enumerate(zip(self._sizes[:-1], self._sizes[1:])):
            bn = l < len(self._sizes) - 2 and self._batch_norm[l]
            g0 = off + n_in * n_out + n_out if bn else -1
            layout.append((off, off + n_in * n_out, n_in, n_out, g0, roff if bn else -1))
            off += n_in * n_out + n_out + (2 * n_out if bn else 0)
            roff += 2 * n_out if bn else 0
        self._ref_layout = layout
        self._flat = np.zeros(off, self._dtype)
        self._running = np.zeros(roff, self._dtype)
        for (_, _, _, n, g0, r0) in layout:
            if g0 >= 0:
                self._flat[g0 : g0 + n] = 1  # gamma
                self._running[r0 + n : r0 + 2 * n] = 1  # running variance
        self._mask = None
        self._grad = np.zeros_like(self._flat)
        self._rng = Xoshiro256()

    def _views(self, flat):
        """Per layer (W, b, gamma, beta) views into a flat vector."""
        out = []
        for (w0, b0, n_in, n_out, g0, _) in self._ref_layout:
            gamma = flat[g0 : g0 + n_out] if g0 >= 0 else None
            beta = flat[g0 + n_out : g0 + 2 * n_out] if g0 >= 0 else None
            out.append((flat[w0:b0].reshape(n_in, n_out), flat[b0 : b0 + n_out], gamma, beta))
        return out

    def _backend_layout(self):
        return list(self._ref_layout)

    def _params_view(self):
        return self._flat

    def _running_view(self):
        return self._running

    def _backend_set_prune_mask(self, mask):
        self._mask = None if mask is None else mask.astype(self._dtype)

    # -- forward / backward ------------------------------------------------------------------
    def _forward(self, X, training, counter, pen=None):
        """Logits and the cache backward needs."""
        f = self._dtype.type
        classic = self._dropout_mode == "classic"
        key = self._seed
        layers = self._views(self._flat)
        cache = {"training": training, "layers": [], "activity": 0.0}
        p = self._dropout[0]
        x = X
        if p > 0 and training:
            cache["mask0"] = F.dropout_mask(stream_base(key, counter, STREAM_DROPOUT), X.shape,
                                            p, classic, self._dtype)
            x = X * cache["mask0"]
        elif p > 0 and classic:
            x = X * f(1 - p)
        cache["in0"] = x
        for l in range(self.n_layers - 1):
            W, b, gamma, beta = layers[l]
            r0, n = self._ref_layout[l][5], self._ref_layout[l][3]
            rm, rv = (self._running[r0 : r0 + n], self._running[r0 + n : r0 + 2 * n]) if r0 >= 0 \
                else (None, None)
            rec, bn = {}, self._batch_norm[l]
            z = x @ W + b
            if bn == 1:
                z = self._bn(z, gamma, beta, rm, rv, training, rec)
            a = F.activation(self._activations[l], z, self._leaky_slope)
            rec["a"] = a
            o = self._bn(a, gamma, beta, rm, rv, training, rec) if bn == 2 else a
            if pen is not None and (pen[4] > 0 or pen[5] > 0):
                a64 = a.astype(np.float64)
                cache["activity"] += pen[4] * np.abs(a64).sum() + 0.5 * pen[5] * (a64**2).sum()
            p = self._dropout[l + 1]
            if p > 0 and training:
                rec["mask"] = F.dropout_mask(stream_base(key, counter, STREAM_DROPOUT + l + 1),
                                             o.shape, p, classic, self._dtype)
                o = o * rec["mask"]
            elif p > 0 and classic:
                o = o * f(1 - p)
            rec["out"] = x = o
            cache["layers"].append(rec)
        W, b, _, _ = layers[-1]
        return x @ W + b, cache

    def _bn(self, x, gamma, beta, rm, rv, training, rec):
        if training:
            y, rec["xhat"], rec["mean"], rec["var"] = F.batch_norm_train(x, gamma, beta,
                                                                          self._bn_eps)
        else:
            y, rec["xhat"] = F.batch_norm_infer(x, gamma, beta, rm, rv, self._bn_eps)
            rec["var"] = rv
        return y

    def _backward(self, cache, delta, pen=None):
        """Flat gradient and dLoss/dX from delta = dLoss/dlogits."""
        f = self._dtype.type
        training, classic = cache["training"], self._dropout_mode == "classic"
        layers = self._views(self._flat)
        grad = np.zeros_like(self._flat)
        glayers = self._views(grad)
        n = len(delta)
        for l in range(self.n_layers - 1, -1, -1):
            x = cache["layers"][l - 1]["out"] if l > 0 else cache["in0"]
            W = layers[l][0]
            glayers[l][0][...] = x.T @ delta
            glayers[l][1][...] = delta.sum(axis=0)
            d = delta @ W.T
            if l == 0:
                p = self._dropout[0]
                if p > 0 and training:
                    d = d * cache["mask0"]
                elif p > 0 and classic:
                    d = d * f(1 - p)
                return grad, d
            k, rec = l - 1, cache["layers"][l - 1]
            gamma, dgamma, dbeta = layers[k][2], glayers[k][2], glayers[k][3]
            p = self._dropout[k + 1]
            if p > 0 and training:
                d = d * rec["mask"]
            elif p > 0 and classic:
                d = d * f(1 - p)
            if self._batch_norm[k] == 2:
                d, dgamma[...], dbeta[...] = F.batch_norm_backward(
                    d, rec["xhat"], rec["var"], gamma, self._bn_eps, training)
            if pen is not None and (pen[4] > 0 or pen[5] > 0):
                a = rec["a"]
                d = d + f(pen[4] / n) * np.sign(a) + f(pen[5] / n) * a
            d = d * F.activation_derivative(self._activations[k], rec["a"], self._leaky_slope)
            if self._batch_norm[k] == 1:
                d, dgamma[...], dbeta[...] = F.batch_norm_backward(
                    d, rec["xhat"], rec["var"], gamma, self._bn_eps, training)
            delta = d

    def _objective(self, X, labels, dense, training, counter, pen, idx=None, weights=None):
        """(per-sample losses, accuracies, dLoss/dlogits, cache); targets and weights are
        those of the full data set when `idx` selects the batch rows."""
        logits, cache = self._forward(X, training, counter, pen)

        def rows(a):
            return None if a is None else (a if idx is None else a[idx])

        per_sample, correct, delta = self._loss_terms(logits, rows(labels), rows(dense),
                                                      rows(weights))
        return per_sample, correct, delta, cache

    def _loss_terms(self, logits, labels, dense, weights=None):
        """F.loss_terms of the model's loss, or F.head_loss_terms of its heads."""
        if self._heads:
            table = [(a, h.size, h.loss, h.loss in LABEL_LOSSES, h.weight, h.label_smoothing)
                     for h, a, _ in head_blocks(self._heads)]
            return F.head_loss_terms(table, logits, dense, weights)
        return F.loss_terms(self._loss.name, logits, labels, dense, weights,
                            self._label_smoothing)

    # -- backend interface ---------------------------------------------------------------------
    def _backend_predict(self, X, logits=False):
        out, _ = self._forward(_rows(X), False, 0)
        return out if logits else F.output_activation(self._loss.name, out)

    def _backend_loss_grad(self, X, labels, dense, training, penalty, counter, weights=None):
        X = _rows(X)
        per_sample, _, delta, cache = self._objective(X, labels, dense, training, counter, penalty,
                                                      weights=weights)
        grad, dX = self._backward(cache, delta, penalty)
        fold(self._ties, self._ref_layout, grad)
        value = F.penalty(self._flat, grad, self._ref_layout, penalty, self._tied_layers())
        return float(per_sample.mean()) + cache["activity"] / len(X) + value, grad, dX

    def _backend_evaluate(self, X, labels, dense):
        logits, _ = self._forward(_rows(X), False, 0)
        per_sample, correct, _ = self._loss_terms(logits, labels, dense)
        return float(per_sample.sum()), float(correct.sum())

    def _backend_reserve(self, batch_size, sparse=False):
        pass

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, rates,
                       optimizer, state, clip, penalty, augment, weights=None, snapshot=None,
                       grad_norms=None):
        # a diverging run overflows on its way to the non-finite loss the caller reports
        noise, shift, h, w, c, adv_eps, adv_ratio, rotate, scale, shear = augment
        transform = None  # images move as raw pixels, before a per-feature input transform
        if (shift > 0 or rotate > 0 or scale > 0 or shear > 0) and \
                isinstance(X, Features) and X.scale is not None:
            transform = (X.scale, X.shift)
            X = Features(X.data, X.rows, None, None, X.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._train(_rows(X), labels, dense, order, start, n_steps, batch_size, rates,
                               optimizer, state, clip, penalty, (augment, transform), weights,
                               snapshot, grad_norms)

    def _step_forward(self, X, labels, dense, idx, penalty, augment, weights):
        """The first half of a training step on rows idx at the current counter: augment
        (and the adversarial rows), forward, loss. `augment`: (augment_config tuple, input
        transform (scale, shift) applied after the images' moves, or None). Returns (loss
        before weight penalties, accuracy, output delta, cache)."""
        augment, transform = augment
        noise, shift, h, w, c, adv_eps, adv_ratio, rotate, scale, shear = augment
        counter = self._counter
        xb = _rows(X, idx)
        if rotate > 0 or scale > 0 or shear > 0:
            xb = F.affine_images(xb, stream_base(self._seed, counter, STREAM_AFFINE), rotate,
                                 scale, shear, (h, w, c))
        if shift > 0:
            xb = F.shift_images(xb, stream_base(self._seed, counter, STREAM_SHIFT), shift,
                                (h, w, c))
        if transform is not None:
            xb = xb * transform[0] + transform[1]  # rounded as the engine's (inputs.py)
        if noise > 0:
            xb = xb + F.gaussian_noise(xb.shape, stream_base(self._seed, counter,
                                                             STREAM_NOISE), noise).astype(xb.dtype)
        na = int(np.floor(adv_ratio * len(idx) + 0.5))
        if adv_eps > 0 and na > 0:
            _, _, delta, cache = self._objective(xb[:na], labels, dense, True, counter,
                                                 penalty, idx[:na], weights)
            _, dx = self._backward(cache, delta, penalty)
            xb = xb.copy()
            xb[:na] += xb.dtype.type(adv_eps) * np.sign(dx)
        per_sample, correct, delta, cache = self._objective(xb, labels, dense, True, counter,
                                                            penalty, idx, weights)
        return per_sample.mean() + cache["activity"] / len(idx), correct.mean(), delta, cache

    def _train(self, X, labels, dense, order, start, n_steps, batch_size, rates, optimizer,
               state, clip, penalty, augment, weights, snapshot, grad_norms):
        max_norm, max_value, error_if_nonfinite = clip
        step_loss = np.zeros(n_steps)
        step_correct = np.zeros(n_steps)
        n, p0 = X.shape[0], start  # order: epochs of n indices; no batch crosses one's end
        for s in range(n_steps):
            idx = order[p0 : p0 + min(batch_size, n - p0 % n)]
            p0 += len(idx)
            step_loss[s], step_correct[s], delta, cache = self._step_forward(
                X, labels, dense, idx, penalty, augment, weights)
            if not np.isfinite(step_loss[s]):
                return STATUS_NONFINITE_LOSS, s, step_loss, step_correct
            if s == 0 and snapshot is not None:  # weights that gave a finite loss
                self._backend_flat(snapshot[0])
                self._backend_running(snapshot[1])
                for k, v in state.items():
                    if isinstance(v, np.ndarray):
                        np.copyto(snapshot[2][k], v)
            grad, _ = self._backward(cache, delta, penalty)
            fold(self._ties, self._ref_layout, grad)
            step_loss[s] += F.penalty(self._flat, grad, self._ref_layout, penalty,
                                      self._tied_layers())
            self._grad = grad
            if self._mask is not None:
                grad *= self._mask
            if max_norm > 0:
                norm = clip_grad_norm_([grad], max_norm, error_if_nonfinite=False)
                if not np.isfinite(norm) and error_if_nonfinite:
                    return STATUS_NONFINITE_GRAD, s, step_loss, step_correct
            if max_value > 0:
                clip_grad_value_([grad], max_value)
            if grad_norms is not None:
                grad_norms[s] = [np.linalg.norm(W.astype(np.float64))
                                 for W, _, _, _ in self._views(grad)]
            optim.update(type(optimizer).__name__, optimizer._engine_hyper(), state, self._flat,
                         grad, rates[s])
            if penalty[2] and penalty[1] > 0:
                F.prox_l1(self._flat, self._ref_layout, rates[s] * penalty[1], penalty[3])
            if self._mask is not None:
                self._flat *= self._mask
            materialize(self._ties, self._ref_layout, self._flat)
            self._update_running(cache, len(idx))
            self._counter += 1
        return STATUS_OK, n_steps, step_loss, step_correct

    def _tied_layers(self):
        """The layers whose weights are another's (penalized there)."""
        return {t.layer for t in self._ties}

    def _update_running(self, cache, B):
        if B < 2:
            return
        f, m = self._dtype.type, self._bn_momentum
        for l, rec in enumerate(cache["layers"]):
            r0, n = self._ref_layout[l][5], self._ref_layout[l][3]
            if r0 < 0:
                continue
            rm, rv = self._running[r0 : r0 + n], self._running[r0 + n : r0 + 2 * n]
            rm[...] = f(1 - m) * rm + f(m) * rec["mean"]
            rv[...] = f(1 - m) * rv + f(m) * (rec["var"] * f(B / (B - 1)))

    def _backend_last_grad(self):
        return self._grad

    def _backend_rng_state(self):
        return np.array(self._rng.state, dtype=np.uint64)

    def _backend_set_rng_state(self, state):
        self._rng.state = [int(v) for v in state]

    def _backend_seed(self, seed):
        self._rng.seed(seed)

    def _backend_shuffle(self, order):
        self._rng.shuffle(order)

    def _backend_curvature(self, X, labels, dense, v, gauss_newton, training, penalty, counter,
                           weights):
        product = curvature.gnvp if gauss_newton else curvature.hvp
        return product(self, X, labels, dense, v, training=training, counter=counter,
                       penalty=penalty, weights=weights)

    def _backend_jvp(self, X, v, vx, training, counter):
        return curvature.jvp(self, X, v, vx, training=training, counter=counter)


def _rows(X, idx=None) -> np.ndarray:
    """Rows `idx` (None: all) of the input X -- Features, a checked CSRInput (made dense), or
    a checked array of the model's dtype -- as the network sees them."""
    if isinstance(X, CSRInput):
        return (X if idx is None else X[idx]).toarray()
    if isinstance(X, np.ndarray):
        return X if idx is None else X[idx]
    return (X if idx is None else X.take(idx)).dense()
