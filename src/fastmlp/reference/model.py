"""`fastmlp.reference.MLP`: the same model as `fastmlp.MLP`, computed by NumPy
one batch at a time in Python. Same constructor, same seed => same initial
weights and the same shuffles as the engine."""

from __future__ import annotations

import numpy as np

from fastmlp.base import STATUS_NONFINITE_LOSS, STATUS_OK, BaseMLP
from fastmlp.reference import functional as F
from fastmlp.reference.rng import Xoshiro256


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__

    def _backend_setup(self, threads):
        self._Ws: list[np.ndarray] = []
        self._bs: list[np.ndarray] = []
        self._rng = Xoshiro256()

    def _backend_get_params(self):
        return [W.copy() for W in self._Ws], [b.copy() for b in self._bs]

    def _backend_set_params(self, Ws, bs):
        self._Ws = [np.array(W, dtype=self._dtype) for W in Ws]
        self._bs = [np.array(b, dtype=self._dtype) for b in bs]

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

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, lr):
        # a diverging run overflows on its way to the non-finite loss the caller reports
        with np.errstate(over="ignore", invalid="ignore"):
            return self._train(X, labels, dense, order, start, n_steps, batch_size, lr)

    def _train(self, X, labels, dense, order, start, n_steps, batch_size, lr):
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
            F.sgd_step(self._Ws + self._bs, dW + db, lr)
        return STATUS_OK, n_steps, step_loss, step_correct

    def _backend_seed(self, seed):
        self._rng.seed(seed)

    def _backend_shuffle(self, order):
        self._rng.shuffle(order)

    def _backend_snapshot(self):
        return self._backend_get_params()

    def _backend_restore(self, snapshot):
        self._backend_set_params(*snapshot)
