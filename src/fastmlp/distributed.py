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
block losses. The gather starts once a rank's last block is done: it is not overlapped
with the backward pass (that would need the engine to hand out each layer's gradient as
its backward pass ends). Every rank evaluates the whole validation set (identical results, no
communication). The data: every rank is given the whole training set (memory-map large
sets with ``np.load(path, mmap_mode="r")``: a rank reads only its blocks' rows), since
batches drawn from a shuffle of the global indices, independent of the rank count, need
any row on any rank.

Failures: the local work of every step (and the callbacks, the checkpoint writes, the
set-up) runs under an agreement: a rank whose part raises tells the others in the step's
collective, and every rank raises (the failing rank its own exception, the others
:class:`RankFailedError`), instead of leaving them waiting in a collective. A rank that
dies outright is ended with the job by ``mpiexec``. A rank that leaves alone outside
:func:`fit` (an exception before it, say) would leave the others waiting: start scripts
with ``mpiexec -n R python -m mpi4py script.py``, which ends the whole job on an uncaught
exception (``fastmlp train --distributed`` does the same itself).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import time
from collections.abc import Callable

import numpy as np

from fastmlp.io.csr import CSRInput
from fastmlp.model.base import STATUS_OK, BaseMLP
from fastmlp.optim import Optimizer
from fastmlp.schedules import Schedule
from fastmlp.train import checkpoint as checkpoint_io
from fastmlp.train.data import check_validation_data, hold_out, prepare
from fastmlp.train.first_order import layer_norms, update_rule
from fastmlp.train.history import History
from fastmlp.train.loop import Loop, check_callables
from fastmlp.train.options import NAMES, FitOptions
from fastmlp.train.regularization import augment_config, penalty_config
from fastmlp.train.state import diverged, restore, snapshot
from fastmlp.validation import C_INT_MAX, all_finite, check_float, check_int

DEFAULT_BLOCK_SIZE = 32


class RankFailedError(RuntimeError):
    """Another rank of a distributed fit raised; this rank stops with it.

    ``rank`` is the failing rank, ``message`` its exception, as text.
    """

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(f"rank {rank} of the distributed fit failed: {message}")
        self.rank = rank
        self.message = message


def _reraise(error: BaseException | None) -> None:
    if error is not None:
        raise error


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

    def agree(self, fn: Callable[[], object], what: str) -> list:
        """fn() on every rank; every rank's result, in rank order (one collective). When
        it raises on any rank, every rank raises."""
        try:
            result, error = fn(), None
        except Exception as e:  # noqa: BLE001 (passed on to every rank below)
            result, error = None, e
        if self.size == 1:
            if error is not None:
                raise error
            return [result]
        every = self.comm.allgather((None if error is None else f"{what}: {error!r}",
                                     None if error is not None else result))
        self._raise_first([e for e, _ in every], error)
        return [r for _, r in every]

    def check(self, error: BaseException | None, what: str) -> None:
        """Raise on every rank when `error` is set on any (one collective)."""
        self.agree(lambda: _reraise(error), what)

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

    def __init__(self, model, ranks: _Ranks, data, block_size: int, augment: tuple) -> None:
        self.model, self.ranks, self.engine, self.data = model, ranks, model._engine, data
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
        weights = self.data.weights
        total_weight = None if weights is None else \
            float(np.sum(weights[rows], dtype=np.float64))
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
        data = self.data
        if total_weight is not None:
            block_weight = float(np.sum(data.weights[idx], dtype=np.float64))
            grad_scale = block_weight / total_weight if total_weight > 0 else 0.0
        self.out = self.pool.pop() if self.pool else \
            np.empty(self.width, dtype=self.model.dtype)
        loss, correct, self.threads = self.engine.block_grad(
            self.out, data.X, data.labels, data.dense, idx, bs, b * bs, grad_scale, share,
            self.augment, self.model._seed, self.model._counter, data.weights)
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
_UNSUPPORTED = {  # MLP.fit options that a distributed fit refuses, and why
    "activity_l1": "activity penalties (normalized by the whole batch inside the engine)",
    "activity_l2": "activity penalties (normalized by the whole batch inside the engine)",
    "adversarial_eps": "adversarial training (its adversarial rows are the batch's first)",
    "step_callbacks": "step callbacks",
    "progress": "a progress callback",
}


def fit(model, X: object, y: object, *, comm=None, block_size: int = DEFAULT_BLOCK_SIZE,
        **options) -> History:
    """Train `model` data-parallel over the ranks of `comm` (every rank calls this).

    Every rank passes the same model (built with the same arguments and seed), the same
    whole training set and the same options; each computes the gradients of its blocks
    of every batch (see the module's docstring). The parameters after the fit are the
    same bits on every rank and for any number of ranks and threads, and equal those of
    ``model.fit(X, y, **options)`` within float rounding (bitwise where every batch is one
    block).

    Parameters
    ----------
    model : fastmlp.MLP
        The same on every rank (checked: parameters, statistics, generator and step
        counter must agree).
    X, y
        The whole training set, on every rank (checked: shapes and a sample of rows).
    comm : mpi4py communicator, optional
        Default: ``MPI.COMM_WORLD``.
    block_size : int
        Rows per block, the unit of a rank's work and of the fixed summation order
        (default 32). The result depends on it (rounding; batch-norm statistics are per
        block), not on the number of ranks. A batch of fewer blocks than ranks leaves some
        ranks idle.
    **options
        The keyword arguments of ``MLP.fit`` (epochs, batch_size, optimizer, lr_schedule,
        clipping, l1/l2 penalties, input noise and shifts, dropout as the model has it,
        validation, early stopping, callbacks, checkpoints, resume_from, sample_weight,
        verbose), with the same defaults. Callbacks run on every rank; training stops when
        any rank's callback returns True. Only rank 0 writes the checkpoint (atomically) and
        prints; ``resume_from`` must be readable by every rank. Not supported (ValueError):
        activity penalties, adversarial training, step callbacks and a progress callback.

    Returns
    -------
    History
        The same on every rank (but for the times).

    Raises
    ------
    ValueError, TypeError
        For bad arguments, and for models, data or options that differ between ranks.
    TrainingDivergedError
        On every rank when the loss (or clipped gradient norm, or the parameters) stops
        being finite; the model goes back to its state at the start of that epoch.
    RankFailedError
        On the other ranks when one rank raises (that rank raises its own exception).
    """
    ranks = _Ranks(world() if comm is None else comm)
    with model._lock.fitting():
        runs = []  # (this rank's; agree passes on only what went wrong)
        ranks.agree(lambda: runs.append(_Run(model, X, y, ranks, block_size, options)),
                    "checking the arguments")
        run = runs[0]
        digests = ranks.agree(lambda: run.digest, "comparing the ranks")
        for key in run.digest:
            if any(d[key] != digests[0][key] for d in digests):
                raise ValueError(f"the ranks' {key} differ; give every rank the same model "
                                 "(same arguments and seed), data and fit options")
        ranks.agree(run.reserve, "reserving the workspace")
        ranks.agree(run.start, "preparing the fit")
        return run.train()


def fit_options(options: dict) -> FitOptions:
    """``MLP.fit``'s keyword arguments `options`, with its defaults for the others."""
    params = inspect.signature(BaseMLP.fit).parameters
    unknown = sorted(set(options) - set(NAMES))
    if unknown:
        raise TypeError(f"fit() got unexpected keyword arguments {unknown}")
    for name, what in _UNSUPPORTED.items():
        if options.get(name):
            raise ValueError(f"distributed training does not support {what} ({name})")
    return FitOptions(**{name: options.get(name, params[name].default) for name in NAMES})


def _hash(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


class _Run:
    """One distributed fit: its arguments checked on this rank, then its epochs."""

    def __init__(self, model, X, y, ranks: _Ranks, block_size: int, options: dict) -> None:
        if not hasattr(model, "_engine"):
            raise TypeError("distributed training needs a fastmlp.MLP, got "
                            f"{type(model).__name__}")
        if model.heads:
            raise ValueError("distributed training does not support multitask heads; train "
                             "the model with model.fit")
        o = fit_options(options)
        data = prepare(model, X, y, o.sample_weight)
        if isinstance(data.X, CSRInput):
            raise TypeError("distributed training takes dense X (an array or memory map); "
                            "pass X.toarray() for a scipy.sparse matrix")
        epochs = check_int(o.epochs, "epochs", 1, C_INT_MAX)
        batch_size = check_int(o.batch_size, "batch_size", 1, C_INT_MAX)
        block_size = check_int(block_size, "block_size", 1, C_INT_MAX)
        resume = None if o.resume_from is None else checkpoint_io.load(o.resume_from)
        self.checkpoint_every = check_int(o.checkpoint_every, "checkpoint_every", 1)
        optimizer, schedule, clip = update_rule(o, resume)
        penalty = penalty_config(o.l2, o.l1, o.l1_proximal, o.penalize_biases)
        augment = augment_config(data.X.shape[1], o.input_noise, o.shift, o.image_shape,
                                 rotate=o.rotate, scale=o.scale, shear=o.shear)
        if o.shuffle not in (True, False, "epoch", "once", "none"):
            raise ValueError(f"shuffle must be True/'epoch', 'once' or False/'none'; got "
                             f"{o.shuffle!r}")
        if o.record not in ("epoch", "step"):
            raise ValueError(f"record must be 'epoch' or 'step', got {o.record!r}")
        if o.validation_data is not None:
            if o.validation_fraction is not None:
                raise ValueError("pass validation_data or validation_fraction, not both")
            data.val = check_validation_data(model, o.validation_data)
        elif o.early_stopping or o.validation_fraction is not None and \
                o.validation_fraction != 0:
            hold_out(data, 0.1 if o.validation_fraction is None else o.validation_fraction,
                     model.seed)
        n = data.n
        batch_size = min(batch_size, n)
        block_size = min(block_size, batch_size)
        last = n % batch_size or batch_size  # the epoch's last batch
        if any(model._batch_norm) and (block_size == 1 or last % block_size == 1):
            raise ValueError(
                f"batch normalization (per block of block_size={block_size} rows) needs at "
                f"least 2 rows per block; with {n} samples and batch_size={batch_size} a "
                "block would hold 1. Choose another block_size or batch_size.")
        loop = Loop(model, epochs=epochs, val=data.val, callbacks=check_callables(o.callbacks),
                    early_stopping=o.early_stopping, monitor=o.monitor,
                    patience=check_int(o.patience, "patience", 0),
                    min_delta=check_float(o.min_delta, "min_delta", low=0.0),
                    verbose=bool(o.verbose) and ranks.rank == 0)
        if resume is None:
            optimizer.check_model(model)
        self.model, self.ranks, self.loop, self.epochs = model, ranks, loop, epochs
        self.optimizer, self.schedule, self.checkpoint = optimizer, schedule, o.checkpoint
        self._setup = (data, block_size, batch_size, augment, clip, penalty, o, resume)
        # What every rank must agree on, taken before anything changes the model, so that
        # ranks that differ refuse to train and leave their models and optimizers as they
        # were: the model as given, its configuration included (each rank then applies the
        # same bias prior to the same targets) or, when resuming, its configuration and
        # the checkpoint that replaces its state; the data; the options and the
        # optimizer's step count.
        if resume is None:
            models = (repr(model.config()),
                      _hash(model._params_view(), model._running_view(),
                            model._backend_rng_state(), np.array([model._counter])))
            step = int(optimizer.state[0].get("step", 0)) if optimizer.state and \
                optimizer.state[0] else 0
            owner = None if optimizer._owner is None else optimizer._owner()
            if optimizer._owner is not None and owner is not model and \
                    not optimizer._used_slots():
                step = 0  # (model_state starts a rule with no state afresh for this model)
        else:
            config, arrays = resume
            models = (repr(model.config()), repr(sorted(config.items())),
                      _hash(*(arrays[k] for k in sorted(arrays))))
            step = config["optimizer_step"]
        self.digest = {
            "models": models,
            "data": (data.X.shape, _hash(data.X.take(np.arange(min(64, data.n))).dense()),
                     None if data.labels is None else _hash(data.labels),
                     None if data.dense is None else _hash(data.dense),
                     None if data.weights is None else _hash(data.weights)),
            "fit options": repr((epochs, batch_size, block_size, o.shuffle, optimizer, clip,
                                 penalty, augment, step)),
        }

    def reserve(self) -> None:
        """The fit's workspace (its own agreement, before anything changes the model: a rank
        that cannot reserve it leaves every rank's model and optimizer as they were)."""
        self.model._backend_reserve(self._setup[1])

    def start(self) -> None:
        """Prepare the model and optimizer for the epochs, once the ranks agree and hold
        their workspace: as fit, the bias prior, then the optimizer bound (a resumed fit:
        restore binds the checkpoint's state, after its checks). Every rank holds the whole
        training set: the same prior on every rank."""
        data, block_size, batch_size, augment, clip, penalty, o, resume = self._setup
        model, optimizer, schedule, n = self.model, self.optimizer, self.schedule, data.n
        if resume is None:
            model._apply_bias_prior(data.labels, data.dense, data.weights)
        state = None if resume is not None else optimizer.model_state(model)
        order = np.arange(n, dtype=np.int64)
        self.first_epoch = 1
        if resume is not None:
            optimizer, state, done, order, self.loop.history, self.loop.best = \
                checkpoint_io.restore(o.resume_from, *resume, model=model,
                                      optimizer=optimizer, n=n, schedule=schedule)
            self.first_epoch = done + 1
        elif o.shuffle == "once":
            model._backend_shuffle(order)
        self.optimizer, self.state, self.order = optimizer, state, order
        self.trainer = DistributedEpochs(
            _Step(model, self.ranks, data, block_size, augment), optimizer, state, schedule,
            order, batch_size, o.shuffle in (True, "epoch"), clip, penalty, o.record == "step")

    def train(self) -> History:
        """Run the epochs; the History."""
        ranks, loop = self.ranks, self.loop
        for epoch in range(self.first_epoch, self.epochs + 1):
            figures = self.trainer.epoch(epoch, loop.history)
            stops = ranks.agree(
                lambda epoch=epoch, figures=figures: loop.end_epoch(
                    epoch, **figures, hooks=(self.schedule.epoch_end,)),
                f"the end of epoch {epoch} (validation, callbacks)")
            stop = any(stops)
            if stop:
                loop.history.stopped_epoch = epoch
            if self.checkpoint is not None and (epoch % self.checkpoint_every == 0
                                                or epoch == self.epochs or stop):
                ranks.agree(lambda epoch=epoch: self._save(epoch), f"writing {self.checkpoint}")
            if stop:
                break
        return loop.finish()

    def _save(self, epoch: int) -> None:
        if self.ranks.rank == 0:
            checkpoint_io.save(self.checkpoint, model=self.model, optimizer=self.optimizer,
                               state=self.state, epoch=epoch, order=self.order,
                               history=self.loop.history, best=self.loop.best,
                               schedule=self.schedule)


class DistributedEpochs:
    """Epochs of data-parallel steps (the trainer of :func:`fit` under
    :class:`~fastmlp.train.loop.Loop`). A diverging step puts the model, optimizer state,
    step counter and shuffling generator back to the start of its epoch, on every rank.
    """

    def __init__(self, step: _Step, optimizer: Optimizer, state: dict, schedule: Schedule,
                 order: np.ndarray, batch_size: int, reshuffle: bool, clip: tuple,
                 penalty: tuple, record_steps: bool) -> None:
        self.step, self.optimizer, self.state, self.schedule = step, optimizer, state, schedule
        self.order, self.batch_size, self.reshuffle = order, batch_size, reshuffle
        self.clip, self.penalty, self.record_steps = clip, penalty, record_steps
        self.start = None  # the snapshot of the epoch's start (its arrays are reused)

    def epoch(self, epoch: int, history: History) -> dict:
        """Run epoch `epoch`; its figures for :meth:`Loop.end_epoch`."""
        model, data, order, bs = self.step.model, self.step.data, self.order, self.batch_size
        n = data.n
        steps = -(-n // bs)
        self.start = (snapshot(model, self.state, self.start[0] if self.start else None),
                      model._counter, model._backend_rng_state())
        if self.reshuffle:
            model._backend_shuffle(order)
        t0 = time.perf_counter()
        t = np.full(steps, epoch - 1) if self.schedule.interval == "epoch" else \
            (epoch - 1) * steps + np.arange(steps)
        rates = np.asarray(self.schedule.rates(self.optimizer.lr, t), dtype=np.float64)
        losses, accs, mass = np.empty(steps), np.empty(steps), np.empty(steps)
        for j in range(steps):
            rows = order[j * bs : min((j + 1) * bs, n)]
            mass[j] = len(rows) if data.weights is None else \
                float(np.sum(data.weights[rows], dtype=np.float64))
            losses[j], accs[j], status = self.step.run(
                rows, float(rates[j]), self.optimizer, self.state, self.clip, self.penalty,
                f"epoch {epoch}, step {j + 1}")
            what = None  # (the same on every rank: they all raise)
            if status == -1:
                what = f"the batch loss is {losses[j]}"
            elif status != STATUS_OK:
                what = "the gradient norm is not finite"
            elif not all_finite(model._params_view(), threads=1):
                what = "the parameters are no longer finite"
            if what is not None:
                restore(model, self.start[0], self.state)
                model._counter = self.start[1]
                model._backend_set_rng_state(self.start[2])
                raise diverged(epoch, j, what, rates[j], history)
            history.steps += 1
            if self.record_steps:
                history.step_loss.append(float(losses[j]))
                history.step_lr.append(float(rates[j]))
        total = float(mass.sum())
        return {
            "loss": float(np.sum(losses * mass) / total),
            "accuracy": (float(np.sum(accs * mass) / total) if model._loss.has_accuracy
                         else None),
            "lr": float(rates[-1]), "seconds": time.perf_counter() - t0, "samples": n,
            "grad_norm": layer_norms(model, model._backend_last_grad()),
        }
