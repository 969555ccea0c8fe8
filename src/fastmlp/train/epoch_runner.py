"""The scikit-learn estimators' fast path: epochs of minibatch training on data checked
once, many epochs per engine call."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from fastmlp.io.csr import CSRInput
from fastmlp.model.base import STATUS_NONFINITE_LOSS, STATUS_OK
from fastmlp.optim import Optimizer
from fastmlp.train.first_order import Pacer, chunk_seconds
from fastmlp.train.regularization import augment_config, penalty_config
from fastmlp.train.state import Guard, diverged
from fastmlp.validation import all_finite, check_int, check_sample_weight


class EpochRunner:
    """Epochs of minibatch training on data checked once, many epochs per engine call:
    the fast path of the scikit-learn estimators.

    Every epoch visits the samples of a fresh shuffle of ``arange(n)`` (or in order) in
    batches of `batch_size`, the last one shorter, at one learning rate; each engine call
    runs about ``CHUNK_SECONDS`` of steps, across epoch ends. This is what ``model.fit``
    does one epoch at a time (``epochs=1``, ``lr_schedule`` unset), bit for bit, without
    its per-call checks and set-up. A diverging step rewinds model, optimizer state, step
    counter and shuffling to the start of the engine call (see
    :class:`~fastmlp.train.state.Guard`) and raises TrainingDivergedError.

    Parameters
    ----------
    model : BaseMLP
    X : ndarray (n, n_features) or CSRInput
        C-contiguous, of the model's dtype and finite (or sparse rows checked by
        fastmlp.io.csr): the caller has checked it.
    y, sample_weight
        Targets and optional per-sample weights, as for ``model.fit``.
    optimizer : fastmlp.optim.Optimizer
        Its state goes on from where it is.
    batch_size : int
    shuffle : bool
    l2 : float
        The L2 penalty on the weights (as ``fit(l2=...)``).
    """

    def __init__(self, model, X: np.ndarray | CSRInput, y: object, sample_weight: object,
                 optimizer: Optimizer, batch_size: int, shuffle: bool, l2: float) -> None:
        n = X.shape[0]
        self.model, self.X, self.optimizer, self.shuffle = model, X, optimizer, shuffle
        self.labels, self.dense = model._targets(y, n)
        self.weights = check_sample_weight(sample_weight, n, model.dtype)
        self.batch_size = min(check_int(batch_size, "batch_size", 1), n)
        self.starts = np.arange(0, n, self.batch_size)  # of the batches in an epoch
        self.batch_rows = np.diff(np.append(self.starts, n)).astype(np.float64)
        self.rows = float(n)  # the sum of batch_rows
        self.penalty = penalty_config(l2=l2)
        self.augment = augment_config(X.shape[1])
        model._backend_reserve(self.batch_size, isinstance(X, CSRInput))
        self.state = optimizer.model_state(model)  # bound once the workspace is there
        self.guard = Guard(model, self.state)
        self.pacer = Pacer(model, self.batch_size, chunk_seconds(self.guard.snapshot))
        self.epochs_done = 0

    def close(self) -> None:
        """Training with this runner is over: its guard's buffers go to the model's next
        fit (:meth:`fastmlp.train.state.Guard.close`)."""
        self.guard.close()

    def epochs(self, rates) -> Iterator[float]:
        """Train one epoch at each learning rate of `rates`; yield each epoch's mean loss
        (penalty included; weighted by sample weight) as soon as its last step is done."""
        model, n, S, B = self.model, self.X.shape[0], len(self.starts), self.batch_size
        E = len(rates)
        order = np.tile(np.arange(n, dtype=np.int64), E)
        # the generator's state before each epoch's shuffle, and after (all one without)
        shuffling = model._backend_shuffles(order, n) if self.shuffle else \
            [model._backend_rng_state()] * (E + 1)
        step_rates = np.repeat(np.asarray(rates, dtype=np.float64), S)
        step_loss = np.empty(E * S)
        s = yielded = 0
        while s < E * S:
            e, j = divmod(s, S)
            k = self.pacer.steps(E * S - s)
            t_chunk = time.perf_counter()
            status, done, sl, _ = self.guard.train(
                shuffling[e if j == 0 else e + 1], self.X, self.labels, self.dense, order,
                e * n + j * B, k, B, step_rates[s : s + k], self.optimizer, self.state,
                (0.0, 0.0, True), self.penalty, self.augment, self.weights)
            if status != STATUS_OK:
                self.guard.rewind()
                what = (f"the batch loss is {sl[done]}" if status == STATUS_NONFINITE_LOSS
                        else "the gradient norm is not finite")
                bad = divmod(s + done, S)
                raise diverged(self.epochs_done + bad[0] - yielded + 1, bad[1], what,
                                step_rates[s + done], None)
            if not all_finite(model._params_view(), threads=1):  # as in fit
                self.guard.rewind()
                bad = divmod(s + k - 1, S)
                raise diverged(self.epochs_done + bad[0] - yielded + 1, bad[1],
                                "the parameters are no longer finite", step_rates[s + k - 1],
                                None, within=min(k, bad[1] + 1))
            step_loss[s : s + k] = sl
            s += k
            self.pacer.took(k, time.perf_counter() - t_chunk)
            while yielded < s // S:
                e = yielded
                # as fit's epoch loss, bit for bit (elementwise: no BLAS call, see there)
                if self.weights is None:
                    mass, total = self.batch_rows, self.rows
                else:
                    mass = np.add.reduceat(
                        self.weights[order[e * n : (e + 1) * n]].astype(np.float64),
                        self.starts)
                    total = float(mass.sum())
                loss = float(np.sum(step_loss[e * S : (e + 1) * S] * mass) / total)
                yielded += 1
                self.epochs_done += 1
                yield loss
