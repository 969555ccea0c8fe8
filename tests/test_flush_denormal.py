"""Subnormal numbers flushed to zero in the engine's arithmetic (csrc/fpenv.h): on by
default, off on request; the same results on every thread count and kernel path either
way; the calling thread's own floating-point mode, and the OpenMP threads' after a call,
left as they were."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp import _engine, optim

TINY = np.finfo(np.float32).tiny  # the smallest normal float32

needs_flush = pytest.mark.skipif(not _engine.flush_denormal_supported(),
                                 reason="flushing subnormals is implemented for x86-64 only")


@pytest.fixture(autouse=True)
def restore_switch():
    was = _engine.flush_denormal()
    yield
    _engine.set_flush_denormal(was)


def subnormal_problem(seed=0):
    """A batch whose two layers' weight gradients all lie below the normal range (inputs
    of magnitude 2e-38 to 4e-38, themselves normal: the gradients reach about 2e-39) while
    the logits, and so the loss and the bias gradients, are ordinary numbers."""
    rng = np.random.default_rng(seed)
    X = (np.sign(rng.standard_normal((256, 64))) * (1 + rng.random((256, 64))) * 2e-38)
    X = X.astype(np.float32)
    y = rng.integers(0, 10, 256)
    return X, y


def model(threads=1):
    return fastmlp.MLP([64, 96, 10], activation="relu", seed=5, threads=threads)


def test_supported_on_x86_64_and_on_by_default():
    machine = platform.machine().lower()
    assert _engine.flush_denormal_supported() == (machine in ("x86_64", "amd64"))
    code = "from fastmlp import _engine; print(_engine.flush_denormal())"
    env = {k: v for k, v in os.environ.items() if k != "FASTMLP_FLUSH_DENORMAL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == ["True"]
    assert fastmlp.set_flush_denormal is _engine.set_flush_denormal
    assert fastmlp.flush_denormal is _engine.flush_denormal


@pytest.mark.parametrize("value, shown, warned", [("0", "False", False), ("1", "True", False),
                                                   ("off", "True", True)])
def test_the_environment_sets_it(value, shown, warned):
    """FASTMLP_FLUSH_DENORMAL=0/1 decides at import; another value is named in a warning
    and leaves the default (on)."""
    code = "from fastmlp import _engine; print(_engine.flush_denormal())"
    env = dict(os.environ, FASTMLP_FLUSH_DENORMAL=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == [shown]
    message = (f"FASTMLP_FLUSH_DENORMAL={value!r} is neither '0' (off) nor '1' (on): the "
               "engine flushes subnormal numbers to zero (the default)")
    assert (message in out.stderr) == warned


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0])
def test_only_booleans_are_taken(bad):
    _engine.set_flush_denormal(True)
    with pytest.raises(TypeError, match="on must be True or False"):
        _engine.set_flush_denormal(bad)
    assert _engine.flush_denormal()  # unchanged


@needs_flush
def test_the_switch_changes_only_subnormal_results(kernel):
    """Off: the weight gradients are subnormal (nonzero); on: exactly zero. The loss and
    the output bias gradient (ordinary numbers from logits of about 1e-39 either way) are
    bitwise the same. (The hidden bias gradient is not: its pre-activations x.w are
    subnormal too, flushed to 0, where ReLU's derivative is 0 instead of 1.)"""
    X, y = subnormal_problem()
    m = model()
    _engine.set_flush_denormal(False)
    ieee = m.gradients(X, y)
    _engine.set_flush_denormal(True)
    flushed = m.gradients(X, y)
    for g in ieee["weights"]:
        assert np.count_nonzero(g) == g.size
        assert np.abs(g).max() < TINY
    for g in flushed["weights"]:
        assert not np.any(g)
    assert ieee["loss"] == flushed["loss"]
    np.testing.assert_array_equal(ieee["biases"][-1], flushed["biases"][-1])
    assert np.abs(flushed["biases"][-1]).max() > 1e-3


@needs_flush
@pytest.mark.parametrize("flush", [True, False])
def test_threads_do_not_change_the_result(kernel, flush):
    """Each OpenMP thread computes in the calling thread's mode: one and two threads give
    bitwise the same gradients and the same training (Adam, whose moments go subnormal
    with these inputs) in either mode."""
    _engine.set_flush_denormal(flush)
    X, y = subnormal_problem(1)
    one, two = model(1), model(2)
    g1, g2 = one.gradients(X, y), two.gradients(X, y)
    np.testing.assert_array_equal(g1["flat"], g2["flat"])
    for m in (one, two):
        m.fit(X, y, epochs=2, batch_size=64, optimizer=optim.Adam(lr=1e-3), shuffle=False)
    for a, b in zip(one.weights + one.biases, two.weights + two.biases):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.predict(X), two.predict(X))


def numpy_keeps_subnormals():
    """Whether this thread's own arithmetic (NumPy's) still produces subnormals."""
    return np.float32(TINY) * np.float32(0.5) != 0


@needs_flush
def test_the_callers_mode_is_left_alone():
    """Engine calls flush on their own thread only while they run: NumPy arithmetic on the
    calling thread (the main one, and another Python thread) still produces subnormals."""
    assert numpy_keeps_subnormals() and not _engine._fp_flushing()
    X, y = subnormal_problem()
    m = model(2)
    m.fit(X, y, epochs=1, batch_size=64)
    m.predict(X)
    assert numpy_keeps_subnormals() and not _engine._fp_flushing()
    seen = []

    def other():
        m.predict(X)
        seen.append((numpy_keeps_subnormals(), _engine._fp_flushing()))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [(True, False)]


@needs_flush
@pytest.mark.parametrize("mode", [True, False])
def test_openmp_threads_take_the_callers_mode_and_give_it_back(mode):
    """Inside an engine region every thread has the engine call's mode; after the call,
    each has the calling thread's mode outside it again (here: not flushing), also the
    threads the runtime started during a flushing call (they inherit its mode)."""
    if not _engine.have_openmp():
        pytest.skip("built without OpenMP: one thread")
    size, seen, after = _engine._team_fp_modes(3, mode)
    assert size == 3
    assert seen == [int(mode)] * 3
    assert after == [0] * 3
    with pytest.raises(ValueError, match=r"threads must be in \[1, 256\]"):
        _engine._team_fp_modes(0, True)
