"""Training state to go back to: snapshots of parameters, batch-norm statistics and
optimizer state, and the divergence guard that keeps the last state known to be finite."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from fastmlp._buffers import faulted
from fastmlp.errors import TrainingDivergedError
from fastmlp.model.base import STATUS_NONFINITE_LOSS

SNAPSHOT_BYTES_PER_S = 5e9  # a conservative copy speed, for chunk_seconds


def snapshot(model, state: dict | None, reuse: tuple | None = None) -> tuple:
    """Parameters, batch-norm statistics and optimizer state, to restore later; copies
    into the arrays of `reuse` (an earlier snapshot no longer needed) when given."""
    flat = model._backend_flat(None if reuse is None else reuse[0])
    running = model._backend_running(None if reuse is None else reuse[1])
    opt = None if state is None else {k: v for k, v in state.items()}
    if reuse is not None and reuse[2] is not None and opt is not None:
        for k, v in opt.items():
            if isinstance(v, np.ndarray):
                np.copyto(reuse[2][k], v)
                opt[k] = reuse[2][k]
    elif opt is not None:
        opt = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.items()}
    return flat, running, opt


def restore(model, snap: tuple, state: dict | None) -> None:
    """Put a :func:`snapshot` back (the optimizer state too when `state` is given)."""
    flat, running, opt = snap
    model._backend_set_flat(flat)
    model._backend_set_running(running)
    if state is not None and opt is not None:
        for k, v in opt.items():
            if isinstance(v, np.ndarray):
                np.copyto(state[k], v)
            else:
                state[k] = v


def snapshot_bytes(snap: tuple) -> int:
    """The memory a snapshot copies."""
    flat, running, opt = snap
    return flat.nbytes + running.nbytes + sum(
        v.nbytes for v in (opt or {}).values() if isinstance(v, np.ndarray))


def diverged(epoch: int, step: int, what: str, lr: float, history,
             within: int = 1) -> TrainingDivergedError:
    """The error for step `step` (0-based) of `epoch`, or for one of the `within` steps
    that end there."""
    where = f"step {step + 1}" if within == 1 else f"steps {step + 2 - within}-{step + 1}"
    return TrainingDivergedError(
        f"training diverged at epoch {epoch}, {where}: {what}. The model keeps the last "
        f"weights that gave a finite loss. Try a smaller learning rate (lr={lr:g}), "
        f"gradient clipping, or rescaled inputs.",
        history=history, epoch=epoch, step=step + 1,
    )


class Guard:
    """The divergence guard of one fit: the last training state known to give a finite
    loss, and the way back to it.

    `snapshot` (parameters, batch-norm statistics, optimizer state) is filled in place by
    the backend at the start of a call once that call's first step has seen a finite loss;
    `position` holds what the backend does not copy: the optimizer's step count, the
    model's step counter and the shuffling generator's state at that moment. Before the
    first fill, nothing has changed since `position` was taken.

    The snapshot's buffers (as large as the parameters and the optimizer state together)
    come from the model's previous fit where it gave them back (:meth:`close`) and they
    have the right shapes: a fresh buffer's pages are zeroed by the kernel on first
    write, which took 4-6 % of a one-epoch fit of 784-2048-2048-2048-10 and a fixed cost
    per ``partial_fit`` call.
    """

    def __init__(self, model, state: dict) -> None:
        self.model, self.state = model, state
        self.snapshot = _snapshot_buffers(model, state)
        self.filled = False
        self.position = (state["step"], model._counter, model._backend_rng_state())

    def close(self) -> None:
        """The fit is over: the snapshot's buffers go to the model's next fit (kept while
        the model lives; none of their contents is read before a fill overwrites it)."""
        if self.snapshot is not None:
            with _SPARE_LOCK:
                _SPARE[self.model] = self.snapshot
            self.snapshot = None

    def train(self, rng_state: np.ndarray, *args, grad_norms: np.ndarray | None = None) -> tuple:
        """``model._backend_train(*args)`` guarded; `rng_state` is the shuffling
        generator's state that belongs to the call's starting point (a call at the start
        of an epoch starts before that epoch's shuffle); `grad_norms` goes to the backend.
        Returns what the backend does."""
        if self.snapshot is None:
            raise RuntimeError("this guard was closed: its fit is over")
        start = (self.state["step"], self.model._counter, rng_state)
        status, done, sl, sc = self.model._backend_train(*args, self.snapshot,
                                                         grad_norms=grad_norms)
        if done > 0 or status != STATUS_NONFINITE_LOSS:  # the snapshot was refreshed
            self.snapshot[2]["step"] = start[0]
            self.filled = True
            self.position = start
        return status, done, sl, sc

    def rewind(self) -> None:
        """Put model and optimizer state back to the guarded state: a later ``fit`` goes
        on exactly as one that started from there."""
        if self.filled:
            restore(self.model, self.snapshot, self.state)
        self.state["step"], self.model._counter = self.position[:2]
        self.model._backend_set_rng_state(self.position[2])


# model -> the snapshot buffers its last finished fit gave back (taken by the next Guard:
# two fits of one model never share them)
_SPARE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SPARE_LOCK = threading.Lock()


def _snapshot_buffers(model, state: dict) -> tuple:
    """Buffers shaped like a snapshot of `model` and `state`: the spare ones of the model
    where every array matches in shape and dtype (the other entries taken from `state`),
    else new ones."""
    with _SPARE_LOCK:
        spare = _SPARE.pop(model, None)
    if spare is not None:
        flat, running, opt = spare

        def same(a, b):
            return isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype

        if (same(model._params_view(), flat) and same(model._running_view(), running)
                and opt.keys() == state.keys()
                and all(same(v, opt[k]) for k, v in state.items() if isinstance(v, np.ndarray))):
            return flat, running, {k: (opt[k] if isinstance(v, np.ndarray) else v)
                                   for k, v in state.items()}
    return _empty_snapshot(model, state)


def _empty_snapshot(model, state: dict) -> tuple:
    """Buffers shaped like a snapshot of `model` and `state`, zeroed (not filled in)."""
    def like(a):
        return faulted(a.shape, a.dtype)

    opt = {k: (like(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    return (like(model._params_view()), like(model._running_view()), opt)
