"""Saving: the temporary files of killed writers are removed by the next save to the same
path (and only theirs), and a saved file gets the permissions any file the user creates
gets (0666 less the umask), or keeps those of the file it replaces."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading

import pytest

import fastmlp
from fastmlp import serialization


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def umask():
    """Set the process umask for one test."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def test_the_next_save_removes_a_stale_temporary(tmp_path):
    m = fastmlp.MLP([3, 4, 2], seed=0)
    stale = tmp_path / ".model.fmlp.k3x_9abq.tmp"  # as a writer killed mid-save leaves it
    stale.write_bytes(b"half a model")
    others = [tmp_path / ".other.fmlp.k3x_9abq.tmp", tmp_path / "model.fmlp.tmp",
              tmp_path / ".model.fmlp.mine.tmp"]  # not temporaries of saves to model.fmlp
    for p in others:
        p.write_bytes(b"keep me")
    m.save(tmp_path / "model.fmlp")
    assert not stale.exists()
    assert all(p.read_bytes() == b"keep me" for p in others)
    assert fastmlp.load(tmp_path / "model.fmlp").layer_sizes == (3, 4, 2)


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    busy = tmp_path / ".model.fmlp.abcdefgh.tmp"
    fd = os.open(busy, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a writer in the middle of its save holds
        fastmlp.MLP([3, 4, 2], seed=0).save(tmp_path / "model.fmlp")
        assert busy.exists()
    finally:
        os.close(fd)
    fastmlp.MLP([3, 4, 2], seed=0).save(tmp_path / "model.fmlp")  # its writer is gone now
    assert not busy.exists()


STUCK_WRITER = r"""
import os, sys, time, fastmlp
def stall(fd):
    print("writing", flush=True)
    time.sleep(600)
os.fsync = stall  # stop inside save, after the data is written, before the rename
fastmlp.MLP([784, 64, 10], seed=1).save(sys.argv[1])
"""


def test_a_save_killed_midway_leaves_a_temporary_that_the_next_save_removes(tmp_path):
    path = tmp_path / "model.fmlp"
    proc = subprocess.Popen([sys.executable, "-c", STUCK_WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(leftovers(tmp_path)) == 1  # while it writes, its temporary is in use:
        fastmlp.MLP([3, 4, 2], seed=0).save(tmp_path / "model.fmlp")  # another save
        assert len(leftovers(tmp_path)) == 1  # leaves it alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert len(leftovers(tmp_path)) == 1  # the killed writer's leftover
    fastmlp.MLP([3, 4, 2], seed=2).save(path)
    assert leftovers(tmp_path) == []
    assert fastmlp.load(path).seed == 2


def test_concurrent_saves_to_one_path_all_succeed(tmp_path):
    path = tmp_path / "model.fmlp"
    models = [fastmlp.MLP([3, 4, 2], seed=s) for s in range(4)]
    errors = []

    def writer(m):
        try:
            for _ in range(10):
                m.save(path)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert leftovers(tmp_path) == []
    assert fastmlp.load(path).seed in range(4)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_files_get_the_umask_permissions(tmp_path, umask, mask):
    umask(mask)
    fastmlp.MLP([3, 4, 2], seed=0).save(tmp_path / "m")
    with open(tmp_path / "plain", "w"):
        pass
    expected = 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == expected


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "m"
    serialization.write_atomic(path, b"old")
    os.chmod(path, 0o640)
    serialization.write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
