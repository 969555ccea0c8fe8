"""`fastmlp.MLP`: the model trained by the C engine."""

from __future__ import annotations

import numpy as np

from fastmlp._engine import Engine, default_threads
from fastmlp.activations import activation_code
from fastmlp.base import BaseMLP

_PREDICT_BLOCK = 512  # rows per engine forward block in predict/evaluate


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__

    @property
    def threads(self) -> int:
        """Engine threads (settable). Results do not depend on it."""
        return self._engine.threads

    @threads.setter
    def threads(self, value: int) -> None:
        self._engine.threads = value

    def _backend_setup(self, threads):
        self._engine = Engine(
            list(self._sizes),
            [activation_code(a) for a in self._activations],
            self._leaky_slope,
            self._loss.code,
            self._dtype,
            threads if threads is not None else default_threads(),
        )

    def _backend_get_params(self):
        return self._engine.get_params()

    def _backend_set_params(self, Ws, bs):
        self._engine.set_params(Ws, bs)

    def _backend_predict(self, X):
        return self._engine.predict(X, _PREDICT_BLOCK)

    def _backend_loss_grad(self, X, labels, dense, input_grad):
        loss, dX = self._engine.loss_grad(X, labels, dense, input_grad)
        dW, db = self._engine.get_grads()
        return loss, dW, db, dX

    def _backend_evaluate(self, X, labels, dense):
        return self._engine.evaluate(X, labels, dense, _PREDICT_BLOCK)

    def _backend_reserve(self, batch_size):
        self._engine.reserve(batch_size)

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, rates,
                       optimizer, state, clip):
        status, done, losses, accs, state["step"] = self._engine.train(
            X, labels, dense, order, start, n_steps, batch_size, rates, optimizer.kind,
            optimizer._engine_hyper(), state["step"], optimizer._slot_arrays(state), clip,
        )
        return status, done, losses, accs

    def _backend_seed(self, seed):
        self._engine.seed(seed)

    def _backend_shuffle(self, order):
        self._engine.shuffle(order)

    def _backend_snapshot(self):
        return self._engine.params.copy()

    def _backend_restore(self, snapshot):
        np.copyto(self._engine.params, snapshot)
