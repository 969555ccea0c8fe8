"""Data-parallel training over MPI: :func:`fit` trains one model in many processes (ranks),
each computing the gradient of its share of every batch; results are bitwise the same
whatever the number of ranks and threads.

Start it with ``mpiexec -n 4 python script.py`` (or ``mpiexec -n 4 fastmlp train
--distributed ...``); needs ``pip install 'fastmlp[mpi]'`` (mpi4py, and MPICH's wheel,
which brings ``mpiexec``).

One step
--------
The step's global batch is the batch ``MLP.fit`` takes (the same shuffle of the global
sample indices, drawn by every rank from the model's seeded generator). It is cut into
blocks of ``block_size`` rows; of its m blocks, rank r of R owns blocks
``[r*m//R, (r+1)*m//R)``. The engine computes each block's gradient on its own
(``Engine.block_grad``), scaled to the block's share of the batch mean, with the dropout
masks and augmentation that the block's rows get in a plain fit: they are keyed by the
step counter and the row's position in the global batch, never by the rank.

Block gradients are summed over a fixed binary tree on block index (the node covering
blocks ``[a*2^k, (a+1)*2^k)`` is its left half plus its right half, or its left half
alone where the right one is past the last block). Each rank sums the largest nodes that
lie within its blocks, the ranks all-gather those node sums, and every rank adds up the
rest of the tree in the same order: every rank holds the same bits, and they are the bits
one rank gets alone. Each rank then applies the same update (``Engine.apply_grad``:
penalties, pruning mask, clipping, the optimizer). The result equals a plain ``fit`` on
the same batches within float rounding (bitwise when a batch is one block).

Batch normalization is "ghost" batch normalization: each block normalizes with its own
rows' mean and variance (so the forward and backward passes need no communication, and
the definition does not depend on the rank count); the running statistics move, once
per step, towards the row-weighted mean of the blocks' means and of their unbiased
variances. With ``block_size >= batch_size`` this is the plain fit's batch norm.

Costs: per step, each rank all-gathers one or a few gradient-sized vectors per rank (a
rank receives about R vectors: an allreduce would move about 2), plus a small vector of
block losses. Every rank evaluates the whole validation set (identical results, no
communication). The data: every rank is given the whole training set (memory-map large
sets with ``np.load(path, mmap_mode="r")``: a rank reads only its blocks' rows), since
batches drawn from a shuffle of the global indices, independent of the rank count, need
any row on any rank.

Failures: the local work of every step (and the callbacks, the checkpoint writes, the
set-up) runs under an agreement: a rank whose part raises tells the others in the step's
collective, and every rank raises (the failing rank its own exception, the others
:class:`RankFailedError`), instead of leaving them waiting in a collective. A rank that
dies outright is ended with the job by ``mpiexec``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable

import numpy as np

from fastmlp import checkpoint as checkpoint_io
from fastmlp.base import STATUS_OK
from fastmlp.history import History
from fastmlp.optim import SGD, Optimizer
from fastmlp.regularization import augment_config, penalty_config
from fastmlp.schedules import Constant, Schedule
from fastmlp.training import (_MONITORS, _diverged, _epoch_line, _layer_norms, _restore,
                              _snapshot)
from fastmlp.validation import (C_INT_MAX, all_finite, check_float, check_int,
                                check_sample_weight)

DEFAULT_BLOCK_SIZE = 32


class RankFailedError(RuntimeError):
    """Another rank of a distributed fit raised; this rank stops with it.

    ``rank`` is the failing rank, ``message`` its exception, as text.
    """

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(f"rank {rank} of the distributed fit failed: {message}")
        self.rank = rank
        self.message = message


def world():
    """MPI's ``COMM_WORLD`` (mpi4py); ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("distributed training needs mpi4py and an MPI: "
                          "pip install 'fastmlp[mpi]'") from e
    return MPI.COMM_WORLD


# -- the block tree ----------------------------------------------------------------------------
def _top(m: int) -> int:
    """The size of the tree's root node: the smallest power of two >= m."""
    return 1 << max(m - 1, 0).bit_length()


def tree_pieces(lo: int, hi: int, m: int) -> list[tuple[int, int]]:
    """The largest nodes of the block tree over m blocks that lie within blocks [lo, hi),
    in block order (a node is (first block, size); it covers [first, min(first+size, m)))."""
    out = []

    def visit(a: int, size: int) -> None:
        b = min(a + size, m)
        if a >= b or b <= lo or a >= hi:
            return
        if lo <= a and b <= hi:
            out.append((a, size))
            return
        visit(a, size // 2)
        visit(a + size // 2, size // 2)

    visit(0, _top(m))
    return out


def tree_sum(node: Callable[[int, int], np.ndarray | None], m: int, a: int = 0,
             size: int | None = None,
             release: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """The sum of blocks [a, a+size) over the block tree of m blocks: `node(a, size)` gives
    a node's sum where it is known (a leaf's always, size 1), else None. Sums in place
    into the left child's array (returned), then hands the right one to `release`."""
    size = _top(m) if size is None else size
    known = node(a, size)
    if known is not None:
        return known
    half = size // 2
    left = tree_sum(node, m, a, half, release)
    if a + half >= m:
        return left
    right = tree_sum(node, m, a + half, half, release)
    left += right
    if release is not None:
        release(right)
    return left


def owned_blocks(rank: int, ranks: int, m: int) -> tuple[int, int]:
    """The blocks [lo, hi) of m that `rank` of `ranks` computes."""
    return rank * m // ranks, (rank + 1) * m // ranks


# -- agreement between ranks -----------------------------------------------------------
class _Ranks:
    """The communicator of one fit, and the agreement on failures."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def agree(self, fn: Callable[[], object], what: str) -> object:
        """fn() on every rank; when it raises on any rank, every rank raises."""
        try:
            result, error = fn(), None
        except Exception as e:  # noqa: BLE001 (passed on to every rank below)
            result, error = None, e
        self.check(error, what)
        return result

    def check(self, error: BaseException | None, what: str) -> None:
        """Raise on every rank when `error` is set on any (one collective)."""
        if self.size == 1:
            if error is not None:
                raise error
            return
        errors = self.comm.allgather(None if error is None else f"{what}: {error!r}")
        self._raise_first(errors, error)

    def _raise_first(self, errors: list, error: BaseException | None) -> None:
        if error is not None:
            raise error
        for rank, message in enumerate(errors):
            if message is not None:
                raise RankFailedError(rank, message)

    def gather_doubles(self, mine: np.ndarray, counts: list[int],
                       error: BaseException | None, what: str) -> np.ndarray:
        """All ranks' float64 vectors, concatenated in rank order; with a status in front
        of each, so that a rank whose part failed (error) makes every rank raise."""
        if self.size == 1:
            self.check(error, what)
            return mine
        send = np.concatenate(([0.0 if error is None else 1.0], mine))
        recv = np.empty(sum(counts) + self.size)
        self.comm.Allgatherv(send, [recv, [c + 1 for c in counts]])
        starts = np.cumsum([0] + [c + 1 for c in counts])
        if (recv[starts[:-1]] != 0).any():
            self.check(error, what)  # every rank is here: exchange the messages
        return np.concatenate([recv[s + 1 : e] for s, e in zip(starts[:-1], starts[1:])])

    def gather(self, mine: np.ndarray, rows: list[int]) -> np.ndarray:
        """All ranks' (rows[r], width) arrays, stacked in rank order."""
        if self.size == 1:
            return mine
        width = mine.shape[1]
        recv = np.empty((sum(rows), width), dtype=mine.dtype)
        self.comm.Allgatherv(mine, [recv, [r * width for r in rows]])
        return recv


# -- the step ------------------------------------------------------------------------------
class _Step:
    """One data-parallel step on `ranks`: this rank's blocks, the tree, the update."""

    def __init__(self, model, ranks: _Ranks, X, labels, dense, weights, block_size: int,
                 augment: tuple) -> None:
        self.model, self.ranks, self.engine = model, ranks, model._engine
        self.X, self.labels, self.dense, self.weights = X, labels, dense, weights
        self.block_size, self.augment = block_size, augment
        self.width = model._n_params + model._running_view().shape[0]
        self.pool: list[np.ndarray] = []  # free buffers of (gradient, statistics) sums
        self.out = None  # the buffer of the last block
        self.threads = 1  # the threads of the last block (the update runs on as many)
    def run(self, rows: np.ndarray, lr: float, optimizer: Optimizer, state: dict, clip,
            penalty, what: str) -> tuple[float, float, int]:
        """Train on the global batch `rows` (sample indices); returns (loss, accuracy,
        status), status -1 for a non-finite loss (then nothing changed)."""
        ranks, engine = self.ranks, self.engine
        m = -(-len(rows) // self.block_size)
        lo, hi = owned_blocks(ranks.rank, ranks.size, m)
        total_weight = None if self.weights is None else \
            float(np.sum(self.weights[rows], dtype=np.float64))
        local = np.zeros(2 * (hi - lo))  # (loss, accuracy) of each of my blocks
        sums: dict[tuple[int, int], np.ndarray] = {}
        error = None
        try:
            def leaf(b: int, size: int) -> np.ndarray | None:
                if size > 1:
                    return None
                local[2 * (b - lo) : 2 * (b - lo) + 2] = self._block(rows, b, total_weight)
                return self.out

            for a, size in tree_pieces(lo, hi, m):
                sums[(a, size)] = tree_sum(leaf, m, a, size, self.pool.append)
        except Exception as e:  # noqa: BLE001 (every rank raises, see gather_doubles)
            error = e
        counts = [2 * (h - l) for l, h in (owned_blocks(r, ranks.size, m)
                                           for r in range(ranks.size))]
        per_block = ranks.gather_doubles(local, counts, error, what).reshape(m, 2)
        loss = correct = 0.0
        for block_loss, block_correct in per_block:  # in block order, on every rank
            loss += block_loss
            correct += block_correct
        if math.isfinite(loss):
            total = self._reduce(sums, m)
            P = engine.params.shape[0]
            np.copyto(engine.grads, total[:P])
            status, pen, state["step"] = engine.apply_grad(
                total[P:], lr, optimizer.kind, optimizer._engine_hyper(), state["step"],
                optimizer._slot_arrays(state), clip, penalty, self.threads)
            loss += pen
            self.model._counter += 1
        else:
            status = -1
        self.pool.extend(sums.values())
        return loss, correct, status

    def _block(self, rows: np.ndarray, b: int, total_weight: float | None) -> tuple:
        """Block b's gradient into a buffer (self.out); returns its (loss, accuracy)."""
        bs = self.block_size
        idx = np.ascontiguousarray(rows[b * bs : (b + 1) * bs])
        share = len(idx) / len(rows)
        grad_scale = share
        if total_weight is not None:
            block_weight = float(np.sum(self.weights[idx], dtype=np.float64))
            grad_scale = block_weight / total_weight if total_weight > 0 else 0.0
        self.out = self.pool.pop() if self.pool else \
            np.empty(self.width, dtype=self.model.dtype)
        loss, correct, self.threads = self.engine.block_grad(
            self.out, self.X, self.labels, self.dense, idx, bs, b * bs, grad_scale, share,
            self.augment, self.model._seed, self.model._counter, self.weights)
        return loss, correct

    def _reduce(self, sums: dict, m: int) -> np.ndarray:
        """The whole tree's sum, from this rank's node sums and the other ranks'."""
        ranks = self.ranks
        if ranks.size == 1:
            return tree_sum(lambda a, s: sums.get((a, s)), m)
        pieces = [tree_pieces(*owned_blocks(r, ranks.size, m), m) for r in range(ranks.size)]
        mine = np.stack([sums[p] for p in pieces[ranks.rank]]) if sums else \
            np.empty((0, self.width), dtype=self.model.dtype)
        every = ranks.gather(mine, [len(p) for p in pieces])
        where = {p: i for i, p in enumerate(q for ps in pieces for q in ps)}
        return tree_sum(lambda a, s: every[where[(a, s)]] if (a, s) in where else None, m)


# -- the loop --------------------------------------------------------------------------------
def fit(
    model,
    X: object,
    y: object,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float | None = None,
    shuffle: bool = True,
    validation_data: tuple | None = None,
    verbose: bool = False,
    *,
    comm=None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    optimizer: Optimizer | None = None,
    lr_schedule: Schedule | None = None,
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    clip_error_if_nonfinite: bool = True,
    l2: float = 0.0,
    l1: float = 0.0,
    l1_proximal: bool = False,
    penalize_biases: bool = False,
    input_noise: float = 0.0,
    shift: int = 0,
    image_shape: tuple | None = None,
    early_stopping: bool = False,
    monitor: str = "val_loss",
    patience: int = 5,
    min_delta: float = 0.0,
    callbacks: list | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume_from: str | os.PathLike | None = None,
    sample_weight: object = None,
) -> History:
    """Train `model` data-parallel over the ranks of `comm` (every rank calls this).

    Every rank passes the same model (built with the same arguments and seed), the same
    whole training set and the same arguments; each computes the gradients of its blocks
    of every batch (see the module's docstring). The parameters after the fit are the
    same bits on every rank and for any number of ranks and threads, and equal those of
    ``model.fit`` with the same arguments within float rounding.

    Parameters
    ----------
    model : fastmlp.MLP
        The same on every rank (checked: parameters, statistics, generator and step
        counter must agree).
    X, y, epochs, batch_size, lr, shuffle, validation_data, verbose
        As for ``MLP.fit``; ``shuffle`` is True (a new shuffle each epoch) or False.
        Only rank 0 prints.
    comm : mpi4py communicator, optional
        Default: ``MPI.COMM_WORLD``.
    block_size : int
        Rows per block, the unit of work of a rank and of the fixed summation order
        (default 32). The result depends on it (rounding; batch-norm statistics are per
        block), not on the number of ranks. A batch of fewer blocks than ranks leaves some
        ranks idle.
    optimizer, lr_schedule, clip_grad_norm, clip_grad_value, clip_error_if_nonfinite,
    l2, l1, l1_proximal, penalize_biases, input_noise, shift, image_shape,
    early_stopping, monitor, patience, min_delta, callbacks, checkpoint,
    checkpoint_every, resume_from, sample_weight
        As for ``MLP.fit``. Callbacks run on every rank; training stops when any rank's
        callback returns True. Only rank 0 writes the checkpoint (atomically); every rank
        may read ``resume_from``. Early stopping needs ``validation_data``.

    Returns
    -------
    History
        The same on every rank.

    Raises
    ------
    ValueError
        For bad arguments, models or data that differ between ranks, and options that
        data-parallel training does not support (adversarial training and activity
        penalties, whose per-batch coupling the blocks cannot reproduce).
    TrainingDivergedError
        On every rank when the loss (or clipped gradient norm, or the parameters) stops
        being finite; the model goes back to its state at the start of that epoch.
    RankFailedError
        On the other ranks when one rank raises (that rank raises its own exception).
    """
    ranks = _Ranks(world() if comm is None else comm)
    setup = ranks.agree(lambda: _prepare(
        model, X, y, epochs, batch_size, lr, shuffle, validation_data, block_size, optimizer,
        lr_schedule, clip_grad_norm, clip_grad_value, clip_error_if_nonfinite, l2, l1,
        l1_proximal, penalize_biases, input_noise, shift, image_shape, early_stopping,
        monitor, patience, min_delta, callbacks, checkpoint_every, resume_from,
        sample_weight), "checking the arguments")
    mismatch = _differs(ranks, setup["digest"])
    if mismatch:
        raise ValueError(f"the ranks' {mismatch} differ; give every rank the same model "
                         "(same arguments and seed), data and fit arguments")
    return _Loop(model, ranks, setup, verbose, checkpoint, checkpoint_every).run()


def _differs(ranks: _Ranks, digest: dict) -> str | None:
    """The first field of `digest` whose value is not the same on every rank."""
    if ranks.size == 1:
        return None
    every = ranks.comm.allgather(digest)
    for key in digest:
        if any(d[key] != every[0][key] for d in every):
            return key
    return None


def _hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def _prepare(model, X, y, epochs, batch_size, lr, shuffle, validation_data, block_size,
             optimizer, lr_schedule, clip_grad_norm, clip_grad_value, clip_error_if_nonfinite,
             l2, l1, l1_proximal, penalize_biases, input_noise, shift, image_shape,
             early_stopping, monitor, patience, min_delta, callbacks, checkpoint_every,
             resume_from, sample_weight) -> dict:
    """Every argument checked, as a dict of what the loop needs (this rank alone)."""
    if not hasattr(model, "_engine"):
        raise TypeError(f"distributed training needs a fastmlp.MLP, got {type(model).__name__}")
    X = model._check_X(X)
    labels, dense = model._targets(y, X.shape[0])
    n = X.shape[0]
    weights = check_sample_weight(sample_weight, n, model.dtype)
    epochs = check_int(epochs, "epochs", 1, C_INT_MAX)
    batch_size = min(check_int(batch_size, "batch_size", 1, C_INT_MAX), n)
    block_size = min(check_int(block_size, "block_size", 1, C_INT_MAX), batch_size)
    if shuffle not in (True, False):
        raise ValueError(f"shuffle must be True or False, got {shuffle!r}")
    if optimizer is None:
        optimizer = SGD(lr=0.01 if lr is None else check_float(lr, "lr", positive=True))
    elif not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastmlp.optim optimizer, got {optimizer!r}")
    elif lr is not None:
        raise ValueError("pass the learning rate to the optimizer, not to fit()")
    if lr_schedule is not None and not isinstance(lr_schedule, Schedule):
        raise TypeError(f"lr_schedule must be a fastmlp.schedules schedule, got {lr_schedule!r}")
    clip = (
        0.0 if clip_grad_norm is None else check_float(clip_grad_norm, "clip_grad_norm",
                                                       positive=True),
        0.0 if clip_grad_value is None else check_float(clip_grad_value, "clip_grad_value",
                                                        positive=True),
        bool(clip_error_if_nonfinite),
    )
    penalty = penalty_config(l2, l1, l1_proximal, penalize_biases)
    augment = augment_config(X.shape[1], input_noise, shift, image_shape)
    if monitor not in _MONITORS:
        raise ValueError(f"monitor must be one of {_MONITORS}, got {monitor!r}")
    if monitor == "val_accuracy" and not model._loss.has_accuracy:
        raise ValueError("monitor='val_accuracy' needs a loss with an accuracy")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        Xv = model._check_X(validation_data[0], "validation_data X")
        val = (Xv, *model._targets(validation_data[1], Xv.shape[0]))
    elif early_stopping:
        raise ValueError("early_stopping needs validation_data in a distributed fit")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
    if any(model._batch_norm):
        last = n % batch_size or batch_size
        if block_size == 1 or last % block_size == 1:
            raise ValueError(
                f"batch normalization (per block of block_size={block_size} rows) needs at "
                f"least 2 rows per block; with {n} samples and batch_size={batch_size} a "
                "block would hold 1. Choose another block_size or batch_size.")
    resume = checkpoint_io.load(resume_from) if resume_from is not None else None
    schedule = lr_schedule or Constant()
    order = np.arange(n, dtype=np.int64)
    history, best, first_epoch = History(), None, 1
    if resume is not None:
        optimizer, state, done, order, history, best = checkpoint_io.restore(
            resume_from, *resume, model=model, optimizer=optimizer, n=n, schedule=schedule)
        first_epoch = done + 1
    else:
        state = optimizer.state_for(0, (model._n_params,), model.dtype)
    model._backend_reserve(block_size)
    digest = {
        "model": _hash(model._params_view(), model._running_view(),
                       model._backend_rng_state(), np.array([model._counter])),
        "data": (X.shape, None if labels is None else _hash(labels[:1000]),
                 _hash(X[:64]), None if weights is None else _hash(weights)),
        "arguments": repr((epochs, batch_size, block_size, shuffle, optimizer, clip, penalty,
                           augment, first_epoch, int(state["step"]))),
    }
    return {"X": X, "labels": labels, "dense": dense, "weights": weights, "epochs": epochs,
            "batch_size": batch_size, "block_size": block_size, "shuffle": shuffle,
            "optimizer": optimizer, "state": state, "schedule": schedule, "clip": clip,
            "penalty": penalty, "augment": augment, "val": val,
            "early_stopping": early_stopping, "monitor": monitor,
            "patience": check_int(patience, "patience", 0),
            "min_delta": check_float(min_delta, "min_delta", low=0.0),
            "callbacks": callbacks, "order": order, "history": history, "best": best,
            "first_epoch": first_epoch, "digest": digest}


class _Loop:
    """The epochs of one distributed fit (its state lives here between the methods)."""

    def __init__(self, model, ranks: _Ranks, setup: dict, verbose: bool, checkpoint,
                 checkpoint_every: int) -> None:
        self.model, self.ranks, self.s = model, ranks, setup
        self.verbose = verbose and ranks.rank == 0
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.step = _Step(model, ranks, setup["X"], setup["labels"], setup["dense"],
                          setup["weights"], setup["block_size"], setup["augment"])

    def run(self) -> History:
        s, model = self.s, self.model
        n, bs = s["X"].shape[0], s["batch_size"]
        steps = -(-n // bs)
        history, order = s["history"], s["order"]
        for epoch in range(s["first_epoch"], s["epochs"] + 1):
            start = (_snapshot(model, s["state"]), model._counter, model._backend_rng_state())
            if s["shuffle"]:
                model._backend_shuffle(order)
            t0 = time.perf_counter()
            losses, accs, mass = self._epoch(epoch, steps, order, start, history)
            total = float(mass.sum())
            loss = float(np.sum(losses * mass) / total)
            acc = float(np.sum(accs * mass) / total) if model._loss.has_accuracy else None
            vl = va = None
            if s["val"] is not None:
                metrics = model._evaluate_prepared(*s["val"])
                vl, va = metrics["loss"], metrics["accuracy"]
            seconds = time.perf_counter() - t0
            history.append(epoch=epoch, loss=loss, accuracy=acc, val_loss=vl, val_accuracy=va,
                           lr=self.last_lr, time=seconds, samples_per_s=n / max(seconds, 1e-9),
                           grad_norm=_layer_norms(model, model._backend_last_grad()))
            s["schedule"].epoch_end({"loss": loss, "accuracy": acc, "val_loss": vl,
                                     "val_accuracy": va})
            if self.verbose:
                print(_epoch_line(epoch, s["epochs"], loss, acc, vl, va, seconds, n), flush=True)
            if self._stop(epoch, vl, va, history):
                break
        if s["best"] is not None:
            _restore(model, s["best"][2], None)
            history.best_epoch = s["best"][1]
        return history

    def _epoch(self, epoch: int, steps: int, order: np.ndarray, start: tuple,
               history: History) -> tuple:
        s, model = self.s, self.model
        n, bs = s["X"].shape[0], s["batch_size"]
        sched = s["schedule"]
        t = np.full(steps, epoch - 1) if sched.interval == "epoch" else \
            (epoch - 1) * steps + np.arange(steps)
        rates = np.asarray(sched.rates(s["optimizer"].lr, t), dtype=np.float64)
        losses, accs, mass = np.empty(steps), np.empty(steps), np.empty(steps)
        for j in range(steps):
            rows = order[j * bs : min((j + 1) * bs, n)]
            mass[j] = len(rows) if s["weights"] is None else \
                float(np.sum(s["weights"][rows], dtype=np.float64))
            loss, accs[j], status = self.step.run(
                rows, float(rates[j]), s["optimizer"], s["state"], s["clip"], s["penalty"],
                f"epoch {epoch}, step {j + 1}")
            losses[j] = loss
            what = None
            if status == -1:
                what = f"the batch loss is {loss}"
            elif status != STATUS_OK:
                what = "the gradient norm is not finite"
            elif not all_finite(model._params_view(), threads=1):
                what = "the parameters are no longer finite"
            if what is not None:  # the same on every rank: they all raise
                _restore(model, start[0], s["state"])
                model._counter = start[1]
                model._backend_set_rng_state(start[2])
                raise _diverged(epoch, j, what, rates[j], history)
            history.steps += 1
        self.last_lr = float(rates[-1])
        return losses, accs, mass

    def _stop(self, epoch: int, vl, va, history: History) -> bool:
        s, model, ranks = self.s, self.model, self.ranks
        if s["early_stopping"]:
            score = vl if s["monitor"] == "val_loss" else -va
            best = s["best"]
            if best is None or score < best[0] - s["min_delta"]:
                s["best"] = (score, epoch, _snapshot(model, None, best[2] if best else None))
            elif epoch - best[1] >= s["patience"]:
                history.stopped_epoch = epoch
        votes = ranks.agree(lambda: any([bool(cb(model, history)) for cb in s["callbacks"]]),
                            f"a callback after epoch {epoch}")
        if ranks.size > 1:
            votes = any(ranks.comm.allgather(votes))
        stop = history.stopped_epoch == epoch or votes
        if self.checkpoint is not None and (epoch % self.checkpoint_every == 0
                                            or epoch == s["epochs"] or stop):
            ranks.agree(lambda: self._save(epoch, history), f"writing {self.checkpoint}")
        if stop:
            history.stopped_epoch = epoch
        return stop

    def _save(self, epoch: int, history: History) -> None:
        if self.ranks.rank == 0:
            s = self.s
            checkpoint_io.save(self.checkpoint, model=self.model, optimizer=s["optimizer"],
                               state=s["state"], epoch=epoch, order=s["order"],
                               history=history, best=s["best"], schedule=s["schedule"])
