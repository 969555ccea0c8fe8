"""`fastmlp.MLP`: the model trained by the C engine."""

from __future__ import annotations

import numpy as np

from fastmlp._engine import Engine, NonFiniteInput, default_threads
from fastmlp.io.csr import CSRInput, is_sparse
from fastmlp.io.inputs import engine_checks_finite
from fastmlp.model.activations import activation_code
from fastmlp.model.base import BaseMLP
from fastmlp.model.heads import head_table
from fastmlp.model.locking import writes
from fastmlp.validation import check_float, check_threads

_PREDICT_BLOCK = 512  # rows per engine forward block in predict/evaluate


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__
    # its public home: model files and pickles name the class "fastmlp.model.MLP"
    __module__ = "fastmlp.model"

    @property
    def threads(self) -> int:
        """Engine threads (settable). Results do not depend on it."""
        return self._engine.threads

    @threads.setter
    @writes
    def threads(self, value: int) -> None:
        self._engine.threads = check_threads(value)

    @property
    def sparse_density(self) -> float:
        """``predict`` reads a dense layer's weights as a sparse (CSR) matrix when fewer
        than this share of them are non-zero, as after pruning (settable; default 0.15,
        0 turns it off). A 95%-pruned 784-512-256-10 network then predicts about 2.5
        times as fast (measured on a shared 2-core Zen 4 machine). Results equal the
        dense path's up to rounding: each output sums its non-zero terms in input
        order, as the dense kernels do in the measured cases (bit for bit there), but
        that is not promised."""
        return self._engine.sparse_density

    @sparse_density.setter
    @writes
    def sparse_density(self, value: float) -> None:
        self._engine.sparse_density = check_float(value, "sparse_density", low=0.0,
                                                  high=1.0 + 1e-12)

    @property
    def adaptive_threads(self) -> bool:
        """True (the default): each training step runs with ``threads`` threads or with
        one, whichever the engine measured to be faster now. On a busy machine (other
        processes holding the cores) a thread team can be many times slower than one
        thread; the engine notices within a few steps and probes again from time to
        time. Results do not depend on it. False: always ``threads``."""
        return self._engine.adaptive_threads

    @adaptive_threads.setter
    @writes
    def adaptive_threads(self, value: bool) -> None:
        self._engine.adaptive_threads = bool(value)

    def thread_stats(self) -> dict[str, int]:
        """Training steps run so far with one thread (``"one"``) and with ``threads``
        threads (``"many"``), as the adaptive thread count chose them."""
        return self._engine.thread_stats()

    def _backend_setup(self, threads):
        self._engine = Engine(
            list(self._sizes),
            [activation_code(a) for a in self._activations],
            self._leaky_slope,
            self._loss.code,
            self._dtype,
            threads if threads is not None else default_threads(),
            dropout=self._dropout,
            dropout_classic=self._dropout_mode == "classic",
            bn=self._batch_norm,
            bn_eps=self._bn_eps,
            bn_momentum=self._bn_momentum,
            label_smoothing=self._label_smoothing,
            heads=None if self._heads is None else head_table(self._heads),
            ties=[(t.layer, t.source, t.transpose) for t in self._ties],
        )

    def _backend_layout(self):
        return self._engine.layout()

    def _params_view(self):
        return self._engine.params

    def _running_view(self):
        return self._engine.running

    def _backend_set_flat(self, flat):
        self._engine.set_params(flat)

    def _backend_set_prune_mask(self, mask):
        self._engine.prune_mask = None if mask is None else np.ascontiguousarray(mask, self._dtype)

    def _backend_threads(self):
        return self._engine.threads

    def _backend_predict(self, X, logits=False):
        return self._engine.predict(X, _PREDICT_BLOCK, logits)

    def _predict_rows(self, X, logits=False):
        """Dense float rows are checked for NaN and infinity by the engine, each block
        right after its forward pass (which brought its rows into cache), instead of in a
        pass of their own over all of X from memory first: the check took 2.0-2.2 % of a
        one-thread predict of 784-512-256-10 on 10,000 rows, 1.8 % now, and the predict
        ran 2-4 % faster (min of three process pairs). Any such value re-runs the
        model's own check, which raises the usual error; the outputs are discarded."""
        if is_sparse(X) or isinstance(X, CSRInput):
            return super()._predict_rows(X, logits)
        rows = self._check_input(X, finite=False)
        try:
            return self._engine.predict(rows, _PREDICT_BLOCK, logits,
                                        engine_checks_finite(X, rows))
        except NonFiniteInput:
            self._check_input(X)  # raises, naming NaN or infinity and the conversion
            raise ValueError("X contains NaN or infinity") from None

    def _backend_loss_grad(self, X, labels, dense, training, penalty, counter, weights=None):
        loss, dX = self._engine.loss_grad(X, labels, dense, training, penalty, self._seed,
                                          counter, True, weights)
        return loss, self._engine.grads.copy(), dX

    def _backend_evaluate(self, X, labels, dense):
        return self._engine.evaluate(X, labels, dense, _PREDICT_BLOCK)

    def _backend_reserve(self, batch_size, sparse=False):
        self._engine.reserve(batch_size, sparse)

    def _backend_train(self, X, labels, dense, order, start, n_steps, batch_size, rates,
                       optimizer, state, clip, penalty, augment, weights=None, snapshot=None,
                       grad_norms=None):
        snap = None if snapshot is None else \
            (snapshot[0], snapshot[1], optimizer._slot_arrays(snapshot[2]))
        status, done, losses, accs, state["step"], self._counter = self._engine.train(
            X, labels, dense, order, start, n_steps, batch_size, rates, optimizer.kind,
            optimizer._engine_hyper(), state["step"], optimizer._slot_arrays(state), clip,
            penalty, augment, self._seed, self._counter, weights, snap, grad_norms,
        )
        return status, done, losses, accs

    def _backend_last_grad(self):
        return self._engine.grads

    def _backend_rng_state(self):
        return self._engine.rng_state.copy()

    def _backend_set_rng_state(self, state):
        np.copyto(self._engine.rng_state, np.asarray(state, dtype=np.uint64))

    def _backend_seed(self, seed):
        self._engine.seed(seed)

    def _backend_shuffle(self, order):
        self._engine.shuffle(order)

    def _backend_shuffles(self, order, n):
        engine, states = self._engine, []
        for e in range(len(order) // n):
            states.append(engine.rng_state.copy())
            engine.shuffle(order[e * n : (e + 1) * n])
        states.append(engine.rng_state.copy())
        return states

    def _curvature_mode(self, training, counter):
        """(training, key, counter) of the engine's curvature products: training mode only
        where it differs from inference (batch norm or dropout)."""
        training = training and (any(self._batch_norm) or any(self._dropout))
        return training, self._seed, counter

    def _backend_curvature(self, X, labels, dense, v, gauss_newton, training, penalty, counter,
                           weights):
        return self._engine.curvature_product(X, labels, dense, v, gauss_newton, penalty,
                                              weights, _PREDICT_BLOCK,
                                              *self._curvature_mode(training, counter))

    def _backend_jvp(self, X, v, vx, training, counter):
        return self._engine.jvp(X, v, vx, _PREDICT_BLOCK, *self._curvature_mode(training, counter))
