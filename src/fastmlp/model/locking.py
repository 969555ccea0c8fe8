"""The lock that makes one model safe to share between threads.

The engine releases the GIL, so calls on one model from several Python threads really
run at once. The contract (README, "Threads"):

* Readers (``predict``, ``evaluate``, ``score``, ``get_params``, ``save``, pickling, ...)
  run concurrently with each other: each engine call takes its own workspace.
* Writers (``set_params``, ``prune``, the ``threads`` setter, one chunk of training
  steps, ...) run alone: they wait until the readers in progress have finished, and
  readers that arrive meanwhile wait for them. Neither side starves: a writer never
  waits behind a stream of new readers, and when a writer finishes, the readers waiting
  for it go before the next writer.
* ``fit`` writes in chunks and lets readers in between them, so a reader during a fit
  sees the parameters of a completed step, in the conventional layout. A second ``fit``
  of the same model while one runs raises :class:`ConcurrentFitError`.

A thread that holds the write lock may read and write again (re-entrant); a thread that
holds a read lock may read again, but may not start writing (that could deadlock with a
waiting writer): it gets a RuntimeError, a bug in fastmlp rather than in user code.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastmlp.errors import ConcurrentFitError

F = TypeVar("F", bound=Callable)


class ModelLock:
    """A readers-writer lock with writer preference, plus the one-fit-at-a-time guard."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # threads inside read sections (outermost)
        self._writer: int | None = None  # ident of the thread that writes
        self._depth = 0  # its nesting depth
        self._waiting_writers = 0
        self._waiting_readers = 0
        self._read_turn = False  # a writer finished: the readers waiting then go first
        self._local = threading.local()  # read depth of this thread
        self._fit_lock = threading.Lock()

    def _read_depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextmanager
    def read(self) -> Iterator[None]:
        """Shared access (nested reads and reads inside a write are free)."""
        outermost = self.enter_read()
        try:
            yield
        finally:
            self.exit_read(outermost)

    def enter_read(self) -> bool:
        """Start a read section (:meth:`read` without a generator: ``reads`` wraps every
        predict in one); True when it is this thread's outermost. End it with
        :meth:`exit_read`."""
        depth = self._read_depth()
        if depth > 0 or self._writer == threading.get_ident():
            self._local.depth = depth + 1
            return False
        with self._cond:
            self._waiting_readers += 1
            try:
                while self._writer is not None or (self._waiting_writers and
                                                   not self._read_turn):
                    self._cond.wait()
            finally:  # (also when the wait is interrupted: no longer waiting either way)
                self._waiting_readers -= 1
                if self._waiting_readers == 0 and self._read_turn:
                    self._read_turn = False
                    self._cond.notify_all()  # writers held back for the waiting readers
            self._readers += 1
        self._local.depth = 1
        return True

    def exit_read(self, outermost: bool) -> None:
        """End the read section :meth:`enter_read` started."""
        if not outermost:
            self._local.depth -= 1
            return
        self._local.depth = 0
        with self._cond:
            self._readers -= 1
            # only writers wait for the readers to leave (they count themselves waiting)
            if self._readers == 0 and self._waiting_writers:
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Exclusive access (re-entrant for the writing thread)."""
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
            else:
                if self._read_depth() > 0:
                    raise RuntimeError("fastmlp internal error: a write inside a read section")
                self._waiting_writers += 1
                try:
                    while (self._writer is not None or self._readers
                           or (self._read_turn and self._waiting_readers)):
                        self._cond.wait()
                except BaseException:  # an interrupted wait: readers held back for this
                    self._cond.notify_all()  # writer may go (it will not write)
                    raise
                finally:
                    self._waiting_writers -= 1
                self._writer, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._writer = None
                    self._read_turn = self._waiting_readers > 0
                    self._cond.notify_all()

    @contextmanager
    def fitting(self) -> Iterator[None]:
        """Marks a fit in progress; raises ConcurrentFitError if one already is."""
        if not self._fit_lock.acquire(blocking=False):
            raise ConcurrentFitError(
                "this model is already being fitted in another thread; fit a copy "
                "(e.g. copy.deepcopy(model)) to train two at once")
        try:
            yield
        finally:
            self._fit_lock.release()


_OWNER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_OWNER_LOCKS_LOCK = threading.Lock()


@contextmanager
def fitting(owner: object) -> Iterator[None]:
    """The one-fit-at-a-time guard for objects that hold no ModelLock of their own (the
    scikit-learn estimators, whose attributes must stay plain for cloning and pickling):
    raises ConcurrentFitError while another thread fits `owner`."""
    with _OWNER_LOCKS_LOCK:
        lock = _OWNER_LOCKS.setdefault(owner, threading.Lock())
    if not lock.acquire(blocking=False):
        raise ConcurrentFitError(
            f"this {type(owner).__name__} is already being fitted in another thread; fit "
            "a clone (sklearn.base.clone) to train two at once")
    try:
        yield
    finally:
        lock.release()


def reads(method: F) -> F:
    """Run the method under the model's read lock."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        lock = self._lock
        outermost = lock.enter_read()
        try:
            return method(self, *args, **kwargs)
        finally:
            lock.exit_read(outermost)
    return wrapper  # type: ignore[return-value]


def writes(method: F) -> F:
    """Run the method under the model's write lock."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock.write():
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]
