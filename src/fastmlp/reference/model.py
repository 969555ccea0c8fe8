"""`fastmlp.reference.MLP`: the same model as `fastmlp.MLP`, computed by NumPy
one batch at a time in Python. Same constructor, same seed => same initial
weights and the same shuffles as the engine.

Parameters live in one flat vector laid out like the engine's,
``[W_0, b_0, W_1, b_1, ...]``, with per-layer views into it, so optimizer state is
interchangeable between the two implementations.
"""

from __future__ import annotations

import numpy as np

from fastmlp.base import STATUS_NONFINITE_GRAD, STATUS_NONFINITE_LOSS, STATUS_OK, BaseMLP
from fastmlp.clip import clip_grad_norm_, clip_grad_value_
from fastmlp.reference import functional as F
from fastmlp.reference import optim
from fastmlp.reference.rng import Xoshiro256


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__

    def _backend_setup(self, threads):
        sizes = self._sizes
        self._flat = np.zeros(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])), self._dtype)
        self._Ws, self._bs, offset = [], [], 0
        for a, b in zip(sizes[:-1], sizes[1:]):
            self._Ws.append(self._flat[offset : offset + a * b].reshape(a, b))
            self._bs.append(self._flat[offset + a * b : offset + a * b + b])
            offset += a * b + b
        self._rng = Xoshiro256()

    def _backend_get_params(self):
        return [W.copy() for W in self._Ws], [b.copy() for b in self._bs]

    def _backend_set_params(self, Ws, bs):
        for view, new in zip(self._Ws + self._bs, list(Ws) + list(bs)):
            view[...] = new

    def _forward(self, X):
        return F.forward(self._Ws, self._bs, self._activations, self._leaky_slope, X)

    def _backend_predict(self, X):
        return F.output_activation(self._loss.name, self._forward(X)[-1])

    def _backend_loss_grad(self, X, labels, dense, input_grad):
        outs = self._forward(X)
        per_sample, _, delta = F.loss_terms(self._loss.name, outs[-1], labels, dense)
        dW, db, dX = F.backward(self._Ws, self._activations, self._leaky_slope, outs, delta)
        return float(per_sample.mean()), dW, db, (dX if input_grad else None)

    def _backend_evaluate(self, X, labels, dense):
        per_sample, correct, _ = F.loss_terms(self._loss.name, self._forward(X)[-1], labels, dense)
        return float(per_sample.sum()), float(correct.sum())

    def _backend_reserve(self, batch_size):
        pass

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, rates,
                       optimizer, state, clip):
        # a diverging run overflows on its way to the non-finite loss the caller reports
        with np.errstate(over="ignore", invalid="ignore"):
            return self._train(X, labels, dense, order, start, n_steps, batch_size, rates,
                               optimizer, state, clip)

    def _train(self, X, labels, dense, order, start, n_steps, batch_size, rates, optimizer,
               state, clip):
        max_norm, max_value, error_if_nonfinite = clip
        step_loss = np.zeros(n_steps)
        step_correct = np.zeros(n_steps)
        for s in range(n_steps):
            idx = order[start + s * batch_size : start + (s + 1) * batch_size]
            outs = self._forward(X[idx])
            per_sample, correct, delta = F.loss_terms(
                self._loss.name,
                outs[-1],
                None if labels is None else labels[idx],
                None if dense is None else dense[idx],
            )
            step_loss[s], step_correct[s] = per_sample.mean(), correct.mean()
            if not np.isfinite(step_loss[s]):
                return STATUS_NONFINITE_LOSS, s, step_loss, step_correct
            dW, db, _ = F.backward(self._Ws, self._activations, self._leaky_slope, outs, delta)
            grad = np.concatenate([g.ravel() for pair in zip(dW, db) for g in pair])
            if max_norm > 0:
                norm = clip_grad_norm_([grad], max_norm, error_if_nonfinite=False)
                if not np.isfinite(norm) and error_if_nonfinite:
                    return STATUS_NONFINITE_GRAD, s, step_loss, step_correct
            if max_value > 0:
                clip_grad_value_([grad], max_value)
            optim.update(type(optimizer).__name__, optimizer._engine_hyper(), state, self._flat,
                         grad, rates[s])
        return STATUS_OK, n_steps, step_loss, step_correct

    def _backend_seed(self, seed):
        self._rng.seed(seed)

    def _backend_shuffle(self, order):
        self._rng.shuffle(order)

    def _backend_snapshot(self):
        return self._flat.copy()

    def _backend_restore(self, snapshot):
        np.copyto(self._flat, snapshot)
