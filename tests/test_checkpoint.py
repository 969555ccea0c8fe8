"""Checkpoints: resuming equals the uninterrupted run bit for bit; a checkpoint survives a
killed process; mismatches are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_problem

import fastmlp
import fastmlp.reference
from fastmlp import optim, schedules
from fastmlp.train import checkpoint


def build(impl):
    return impl([8, 12, 10, 3], seed=4, dropout=0.2, batch_norm=[True, False], threads=1)


@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
@pytest.mark.parametrize("shuffle", [True, "once"])
def test_resume_equals_the_uninterrupted_run(tmp_path, impl, shuffle):
    X, y = make_problem("cross_entropy", 64, 8, 3, seed=1)
    Xv, yv = make_problem("cross_entropy", 20, 8, 3, seed=2)
    options = dict(batch_size=10, shuffle=shuffle, validation_data=(Xv, yv), l2=1e-3,
                   early_stopping=True, patience=10)

    def plateau():
        return schedules.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0)

    straight = build(impl)
    h1 = straight.fit(X, y, epochs=6, optimizer=optim.Adam(lr=0.01), lr_schedule=plateau(),
                      **options)
    first = build(impl)
    first.fit(X, y, epochs=3, optimizer=optim.Adam(lr=0.01), lr_schedule=plateau(),
              checkpoint=tmp_path / "ckpt", **options)
    resumed = build(impl)
    h2 = resumed.fit(X, y, epochs=6, lr_schedule=plateau(), resume_from=tmp_path / "ckpt",
                     **options)
    assert np.array_equal(straight.get_flat_params(), resumed.get_flat_params())
    assert h1.loss == h2.loss and h1.val_loss == h2.val_loss and h1.lr == h2.lr
    assert h1.best_epoch == h2.best_epoch and len(h2) == 6


@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
@pytest.mark.parametrize("stop_epoch", [1, 3])
def test_ctrl_c_rewinds_to_the_epoch_start_and_checkpoints_it(tmp_path, impl, stop_epoch):
    X, y = make_problem("cross_entropy", 64, 8, 3, seed=1)
    options = dict(batch_size=4, l2=1e-3, optimizer=optim.Adam(lr=0.01))
    straight = build(impl)
    h1 = straight.fit(X, y, epochs=4, **options)

    def interrupt(epoch, epochs, done, n, loss):
        if epoch == stop_epoch and done >= n // 2:
            raise KeyboardInterrupt

    interrupted = build(impl)
    before = build(impl)
    if stop_epoch > 1:  # the state after the epochs that complete
        before.fit(X, y, epochs=stop_epoch - 1, batch_size=4, l2=1e-3,
                   optimizer=optim.Adam(lr=0.01))
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(X, y, epochs=4, checkpoint=tmp_path / "ckpt", progress=interrupt,
                        batch_size=4, l2=1e-3, optimizer=optim.Adam(lr=0.01))
    # the model was put back to the start of the interrupted epoch...
    assert np.array_equal(interrupted.get_flat_params(), before.get_flat_params())
    assert interrupted.training_step == before.training_step
    # ...which the checkpoint holds, and resuming from it equals the uninterrupted run
    assert checkpoint.load(tmp_path / "ckpt")[0]["epoch"] == stop_epoch - 1
    resumed = build(impl)
    h2 = resumed.fit(X, y, epochs=4, resume_from=tmp_path / "ckpt", batch_size=4, l2=1e-3)
    assert np.array_equal(straight.get_flat_params(), resumed.get_flat_params())
    assert h1.loss == h2.loss and len(h2) == 4


def test_checkpoint_mismatches_are_refused(tmp_path):
    X, y = make_problem("cross_entropy", 40, 8, 3)
    m = fastmlp.MLP([8, 12, 3], seed=0)
    m.fit(X, y, epochs=1, checkpoint=tmp_path / "c")
    with pytest.raises(ValueError, match="written by a different model"):
        fastmlp.MLP([8, 11, 3], seed=0).fit(X, y, epochs=2, resume_from=tmp_path / "c")
    with pytest.raises(ValueError, match="written for 40 training samples, not 39"):
        fastmlp.MLP([8, 12, 3], seed=0).fit(X[:39], y[:39], epochs=2,
                                            resume_from=tmp_path / "c")
    with pytest.raises(ValueError, match="checkpoint's optimizer is SGD"):
        fastmlp.MLP([8, 12, 3], seed=0).fit(X, y, epochs=2, optimizer=optim.Adam(),
                                            resume_from=tmp_path / "c")
    m.save(tmp_path / "model")
    with pytest.raises(ValueError, match="not a fastmlp training checkpoint"):
        fastmlp.MLP([8, 12, 3], seed=0).fit(X, y, epochs=2, resume_from=tmp_path / "model")


TRAINER = r"""
import sys, numpy as np, fastmlp
rng = np.random.default_rng(0)
X = rng.normal(size=(4000, 64)).astype(np.float32); y = rng.integers(0, 10, 4000)
m = fastmlp.MLP([64, 256, 10], seed=0)
print("ready", flush=True)
m.fit(X, y, epochs=10**6, batch_size=8, checkpoint=sys.argv[1])
"""


def test_a_killed_run_leaves_a_resumable_checkpoint(tmp_path):
    path = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 4000)
    m = fastmlp.MLP([64, 256, 10], seed=0)
    config, _ = checkpoint.load(path)
    done = config["epoch"]
    h = m.fit(X, y, epochs=done + 1, batch_size=8, resume_from=path)
    assert len(h) == done + 1


def test_checkpoints_of_the_version_that_always_wrote_ties_resume(tmp_path):
    """The previous version wrote "ties": [] into every model configuration; a model file
    now leaves the key out without ties, and its checkpoints still resume."""
    from fastmlp import serialization

    X, y = make_problem("cross_entropy", 64, 8, 3, seed=1)
    straight = build(fastmlp.MLP)
    straight.fit(X, y, epochs=4, batch_size=10, optimizer=optim.Adam(lr=0.01))
    first = build(fastmlp.MLP)
    first.fit(X, y, epochs=2, batch_size=10, optimizer=optim.Adam(lr=0.01),
              checkpoint=tmp_path / "ckpt")
    kind, config, arrays = serialization.loads(serialization.read_file(tmp_path / "ckpt"))
    assert "ties" not in config["model_config"]
    config["model_config"]["ties"] = []
    serialization.write_atomic(tmp_path / "old", serialization.dumps(kind, config, arrays))
    resumed = build(fastmlp.MLP)
    resumed.fit(X, y, epochs=4, batch_size=10, resume_from=tmp_path / "old")
    np.testing.assert_array_equal(straight.get_flat_params(), resumed.get_flat_params())
