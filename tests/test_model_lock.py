"""The readers-writer lock every model holds (fastmlp.model.locking): readers together,
writers alone, neither side starved, nesting, and release on exceptions. Each waiting
step has a timeout, so a broken lock fails a test instead of hanging the run."""

from __future__ import annotations

import threading
import time

import pytest

from fastmlp.model.locking import ModelLock, reads, writes

WAIT = 10.0  # seconds: only a broken lock waits this long


class Shared:
    """A stand-in model: a read and a write method under the lock, each able to block."""

    def __init__(self) -> None:
        self._lock = ModelLock()
        self.log: list[str] = []
        self.log_lock = threading.Lock()

    def note(self, what: str) -> None:
        with self.log_lock:
            self.log.append(what)

    def section(self, name: str, hold: threading.Event | None,
                inside: threading.Event | None) -> str:
        """Log entry, signal `inside`, wait for `hold`, log exit."""
        self.note(f"{name} in")
        if inside is not None:
            inside.set()
        if hold is not None:
            assert hold.wait(WAIT)
        self.note(f"{name} out")
        return name

    @reads
    def read(self, name: str, hold: threading.Event | None = None,
             inside: threading.Event | None = None) -> str:
        return self.section(name, hold, inside)

    @writes
    def write(self, name: str, hold: threading.Event | None = None,
              inside: threading.Event | None = None) -> None:
        self.section(name, hold, inside)

    @reads
    def read_then_read(self) -> str:
        return self.read("nested")

    @writes
    def write_then_read(self) -> str:
        return self.read("inside write")

    @reads
    def read_then_write(self) -> None:
        self.write("forbidden")

    @reads
    def failing_read(self) -> None:
        raise KeyError("boom")


def start(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def wait_until(condition) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_readers_run_together():
    m = Shared()
    release = threading.Event()
    inside = [threading.Event(), threading.Event()]
    threads = [start(m.read, f"r{i}", release, inside[i]) for i in range(2)]
    for e in inside:  # both inside at once: neither waits for the other
        assert e.wait(WAIT)
    release.set()
    for t in threads:
        t.join(WAIT)
    assert m.log[:2] == ["r0 in", "r1 in"] or m.log[:2] == ["r1 in", "r0 in"]


def test_a_writer_waits_for_the_readers_and_new_readers_wait_for_it():
    m = Shared()
    release = threading.Event()
    r_in = threading.Event()
    reader = start(m.read, "r1", release, r_in)
    assert r_in.wait(WAIT)
    writer = start(m.write, "w")
    wait_until(lambda: m._lock._waiting_writers == 1)
    late = start(m.read, "r2")  # arrives while the writer waits: goes after it
    wait_until(lambda: m._lock._waiting_readers == 1)
    assert m.log == ["r1 in"]
    release.set()
    for t in (reader, writer, late):
        t.join(WAIT)
    assert m.log == ["r1 in", "r1 out", "w in", "w out", "r2 in", "r2 out"]


def test_readers_waiting_for_a_writer_go_before_the_next_writer():
    m = Shared()
    release = threading.Event()
    w_in = threading.Event()
    first = start(m.write, "w1", release, w_in)
    assert w_in.wait(WAIT)
    reader = start(m.read, "r")
    wait_until(lambda: m._lock._waiting_readers == 1)
    second = start(m.write, "w2")
    wait_until(lambda: m._lock._waiting_writers == 1)
    release.set()
    for t in (first, reader, second):
        t.join(WAIT)
    assert m.log == ["w1 in", "w1 out", "r in", "r out", "w2 in", "w2 out"]


def test_nested_reads_and_a_read_inside_a_write_are_free():
    m = Shared()
    assert m.read_then_read() == "nested"
    assert m.write_then_read() == "inside write"
    assert m._lock._readers == 0 and m._lock._writer is None
    assert m._lock._read_depth() == 0


def test_a_write_inside_a_read_is_refused():
    m = Shared()
    with pytest.raises(RuntimeError, match="write inside a read"):
        m.read_then_write()
    assert m._lock._readers == 0 and m._lock._read_depth() == 0
    m.write("after")  # the lock is free again
    assert m.log[-1] == "after out"


def test_an_exception_in_a_read_section_releases_the_lock():
    m = Shared()
    with pytest.raises(KeyError):
        m.failing_read()
    assert m._lock._readers == 0 and m._lock._read_depth() == 0
    done = threading.Event()
    writer = start(lambda: (m.write("w"), done.set()))
    assert done.wait(WAIT)  # a writer gets in: nothing was left holding the lock
    writer.join(WAIT)


def test_the_read_context_manager_is_the_same_lock():
    m = Shared()
    with m._lock.read():
        with m._lock.read():
            assert m._lock._read_depth() == 2
        writer_in = threading.Event()
        writer = start(m.write, "w", None, writer_in)
        wait_until(lambda: m._lock._waiting_writers == 1)
        assert not writer_in.is_set()  # the writer waits for this read section
    assert writer_in.wait(WAIT)
    writer.join(WAIT)
    assert m._lock._readers == 0


class Interrupted(Exception):
    """Stands for a KeyboardInterrupt raised in a thread waiting for the lock."""


def interruptible(lock: ModelLock, thread_name: str, interrupt: threading.Event) -> None:
    """Make the waits of thread `thread_name` on `lock` end with Interrupted once
    `interrupt` is set (waiting in short slices, which release the lock as a wait does)."""
    real_wait = lock._cond.wait

    def wait(timeout=None):
        if threading.current_thread().name != thread_name:
            return real_wait(timeout)
        while not interrupt.is_set():
            real_wait(0.002)
        raise Interrupted

    lock._cond.wait = wait


def run_named(name: str, target, *args) -> tuple[threading.Thread, list]:
    errors: list = []

    def body():
        try:
            target(*args)
        except Interrupted as exc:
            errors.append(exc)

    t = threading.Thread(target=body, name=name, daemon=True)
    t.start()
    return t, errors


def test_a_writer_interrupted_while_waiting_lets_the_readers_behind_it_go():
    m = Shared()
    interrupt, release, r1_in = threading.Event(), threading.Event(), threading.Event()
    interruptible(m._lock, "W", interrupt)
    r1 = start(m.read, "r1", release, r1_in)
    assert r1_in.wait(WAIT)
    writer, errors = run_named("W", m.write, "w")
    wait_until(lambda: m._lock._waiting_writers == 1)
    r2 = start(m.read, "r2")  # held back for the writer
    wait_until(lambda: m._lock._waiting_readers == 1)
    interrupt.set()
    writer.join(WAIT)
    assert len(errors) == 1 and m._lock._waiting_writers == 0
    r2.join(WAIT)  # goes now, beside r1: the writer it waited for is gone
    assert not r2.is_alive(), "the reader held back for the interrupted writer never woke"
    release.set()
    r1.join(WAIT)
    assert m.log == ["r1 in", "r2 in", "r2 out", "r1 out"]


def test_a_reader_interrupted_while_waiting_does_not_hold_back_later_writers():
    m = Shared()
    interrupt, release, w1_in = threading.Event(), threading.Event(), threading.Event()
    interruptible(m._lock, "R", interrupt)
    w1 = start(m.write, "w1", release, w1_in)
    assert w1_in.wait(WAIT)
    reader, errors = run_named("R", m.read, "r")
    wait_until(lambda: m._lock._waiting_readers == 1)
    interrupt.set()
    reader.join(WAIT)
    assert len(errors) == 1 and m._lock._waiting_readers == 0
    release.set()
    w1.join(WAIT)
    w2 = start(m.write, "w2")
    w2.join(WAIT)
    assert not w2.is_alive(), "a writer waits for a reader that is no longer there"
    assert m.log == ["w1 in", "w1 out", "w2 in", "w2 out"]
