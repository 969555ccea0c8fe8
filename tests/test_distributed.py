"""Data-parallel training (fastmlp.distributed): the block tree, the engine's split step,
ghost batch norm against NumPy, and real MPI runs (mpiexec -n 1/2/3 on the loopback
interface, oversubscribed, each with a timeout) that must agree bitwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import distributed
from fastmlp.train import checkpoint
from fastmlp.train.regularization import augment_config
from fastmlp.optim import SGD, Adam

HERE = Path(__file__).parent
RUNNER = HERE / "distributed_run.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
# one host, processes started by fork, traffic on the loopback interface only
LOOPBACK = ["-launcher", "fork", "-hosts", "localhost", "-iface", "lo"]
TIMEOUT = 120  # seconds for one mpiexec run (a hang fails the test instead of the suite)


class SelfComm:
    """A communicator of one rank (no MPI needed): what a 1-rank fit uses of one."""

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 1


def problem(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    return X, rng.integers(0, 3, n)


# -- the block tree ------------------------------------------------------------------------
@pytest.mark.parametrize("m", range(1, 14))
def test_ranks_own_disjoint_tree_pieces_that_cover_the_blocks(m):
    for ranks in range(1, 6):
        covered = []
        for r in range(ranks):
            lo, hi = distributed.owned_blocks(r, ranks, m)
            for a, size in distributed.tree_pieces(lo, hi, m):
                assert lo <= a and min(a + size, m) <= hi
                covered.extend(range(a, min(a + size, m)))
        assert covered == list(range(m))


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8, 11])
def test_tree_sum_from_any_ranks_pieces_is_bitwise_the_one_rank_sum(m):
    rng = np.random.default_rng(m)
    leaves = (rng.standard_normal((m, 257)) * 10.0 ** rng.integers(-4, 5, (m, 1))
              ).astype(np.float32)

    def from_leaves(a, size):
        return leaves[a].copy() if size == 1 else None

    one = distributed.tree_sum(from_leaves, m)
    # the fixed tree: ((0 + 1) + (2 + 3)) + ... ; not a left-to-right sum
    if m == 5:
        expect = ((leaves[0] + leaves[1]) + (leaves[2] + leaves[3])) + leaves[4]
        np.testing.assert_array_equal(one, expect)
    for ranks in range(2, 6):
        pieces = {}
        for r in range(ranks):
            lo, hi = distributed.owned_blocks(r, ranks, m)
            for a, size in distributed.tree_pieces(lo, hi, m):
                pieces[(a, size)] = distributed.tree_sum(from_leaves, m, a, size)
        total = distributed.tree_sum(lambda a, s, pieces=pieces: pieces.get((a, s)), m)
        np.testing.assert_array_equal(total, one)


# -- the engine's split step ---------------------------------------------------------------
def engine_of(model):
    return model._engine


@pytest.mark.parametrize("opt", [SGD(lr=0.1, momentum=0.9), Adam(lr=0.01)],
                         ids=["sgd", "adam"])
def test_one_block_then_apply_is_bitwise_one_engine_training_step(opt):
    X, y = problem(16)
    X = X.astype(np.float32)
    a = fastmlp.MLP([6, 10, 3], seed=3, dropout=0.3, threads=1)
    b = fastmlp.MLP([6, 10, 3], seed=3, dropout=0.3, threads=1)
    a.fit(X, y, epochs=1, batch_size=16, shuffle=False, optimizer=opt)
    e = engine_of(b)
    labels, dense = b._targets(y, 16)
    out = np.empty(b._n_params + b._running_view().size, dtype=np.float32)
    loss, acc, threads = e.block_grad(out, X, labels, dense, np.arange(16), 16, 0, 1.0, 1.0,
                                      fastmlp._engine.NO_AUGMENT, b._seed, 0)
    assert threads == 1
    np.copyto(e.grads, out[: b._n_params])
    opt2 = type(opt)(**opt.hyper())
    state = opt2.state_for(0, (b._n_params,), b.dtype)
    status, pen, step = e.apply_grad(out[b._n_params:], opt2.lr, opt2.kind,
                                     opt2._engine_hyper(), 0, opt2._slot_arrays(state),
                                     (0.0, 0.0, True), fastmlp._engine.NO_PENALTY)
    assert (status, pen, step) == (0, 0.0, 1)
    np.testing.assert_array_equal(b.get_flat_params(), a.get_flat_params())
    assert 0 < loss and 0 <= acc <= 1


def test_one_block_per_batch_is_bitwise_the_plain_fit_with_image_augmentation():
    """Rotations, scaling, shear and shifts of image rows reach the blocks (a distributed
    fit once ignored the affine maps silently)."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((48, 36)), rng.integers(0, 3, 48)
    kw = dict(epochs=3, batch_size=16, rotate=20.0, scale=0.1, shear=5.0, shift=1,
              image_shape=(6, 6))
    a, b, c = (fastmlp.MLP([36, 8, 3], seed=2, dtype=np.float64) for _ in range(3))
    a.fit(X, y, optimizer=Adam(lr=0.05), **kw)
    distributed.fit(b, X, y, block_size=16, comm=SelfComm(), optimizer=Adam(lr=0.05), **kw)
    np.testing.assert_array_equal(b.get_flat_params(), a.get_flat_params())
    kw.update(rotate=0.0, scale=0.0, shear=0.0)
    distributed.fit(c, X, y, block_size=16, comm=SelfComm(), optimizer=Adam(lr=0.05), **kw)
    assert np.abs(c.get_flat_params() - a.get_flat_params()).max() > 1e-6


def test_blocks_draw_the_dropout_masks_and_noise_of_their_batch_rows():
    """Halves of a batch, each with its rows' draws (row0), sum to the whole batch's
    gradient; drawing both halves from row 0 would not."""
    X, y = problem(8)
    model = fastmlp.MLP([6, 10, 3], seed=3, dropout=0.4, input_dropout=0.2,
                        dtype=np.float64)
    e = engine_of(model)
    labels, dense = model._targets(y, 8)
    noise = augment_config(6, 0.3)
    width = model._n_params

    def grad(rows, row0, scale):
        out = np.empty(width)
        e.block_grad(out, X, labels, dense, np.ascontiguousarray(rows), 8, row0, scale,
                     scale, noise, model._seed, 5)
        return out

    whole = grad(np.arange(8), 0, 1.0)
    halves = grad(np.arange(4), 0, 0.5) + grad(np.arange(4, 8), 4, 0.5)
    np.testing.assert_allclose(halves, whole, rtol=1e-12, atol=1e-14)
    wrong = grad(np.arange(4), 0, 0.5) + grad(np.arange(4, 8), 0, 0.5)
    assert np.abs(wrong - whole).max() > 1e-3
    # and the whole batch is model.gradients' training step (without the noise)
    plain = grad(np.arange(8), 0, 1.0)
    e.block_grad(plain, X, labels, dense, np.arange(8), 8, 0, 1.0, 1.0,
                 fastmlp._engine.NO_AUGMENT, model._seed, 5)
    ref = model.gradients(X, y, training=True, step=5)["flat"]
    np.testing.assert_allclose(plain, ref, rtol=1e-12, atol=1e-14)


def test_block_grad_rejects_bad_rows_and_buffers():
    X, y = problem(8)
    X = X.astype(np.float32)
    model = fastmlp.MLP([6, 4, 3], seed=0)
    e = engine_of(model)
    labels, dense = model._targets(y, 8)
    out = np.empty(model._n_params, dtype=np.float32)
    args = (fastmlp._engine.NO_AUGMENT, 0, 0)
    with pytest.raises(ValueError, match="idx"):
        e.block_grad(out, X, labels, dense, np.array([0, 8]), 4, 0, 1.0, 1.0, *args)
    with pytest.raises(ValueError, match="idx"):
        e.block_grad(out, X, labels, dense, np.array([], dtype=np.int64), 4, 0, 1.0, 1.0,
                     *args)
    with pytest.raises(ValueError, match="out"):
        e.block_grad(out[:-1], X, labels, dense, np.arange(4), 4, 0, 1.0, 1.0, *args)
    with pytest.raises(ValueError, match="row0"):
        e.block_grad(out, X, labels, dense, np.arange(4), 4, -1, 1.0, 1.0, *args)
    with pytest.raises(ValueError, match="block"):
        e.block_grad(out, X, labels, dense, np.arange(4), 3, 0, 1.0, 1.0, *args)


# -- distributed.fit on one rank (no MPI) ------------------------------------------------------
def test_ghost_batch_norm_is_the_numpy_definition():
    """One SGD step on a batch of 8 in blocks of 4: each block normalizes with its own
    rows' statistics; the running statistics move towards the mean of the blocks' means
    and of their unbiased variances."""
    X, y = problem(8, seed=4)
    kw = dict(seed=2, dtype=np.float64, batch_norm="before")
    model = fastmlp.MLP([6, 5, 3], **kw)
    twin = fastmlp.MLP([6, 5, 3], **kw)
    p0 = model.get_flat_params()
    distributed.fit(model, X, y, epochs=1, batch_size=8, block_size=4, shuffle=False,
                    optimizer=SGD(lr=0.1), comm=SelfComm())
    g = [twin.gradients(X[r], y[r], training=True, step=0)["flat"]
         for r in (slice(0, 4), slice(4, 8))]
    np.testing.assert_allclose(model.get_flat_params(), p0 - 0.1 * (g[0] + g[1]) / 2,
                               rtol=1e-10, atol=1e-13)
    z = [X[r] @ twin.weights[0] + twin.biases[0] for r in (slice(0, 4), slice(4, 8))]
    mean = (z[0].mean(0) + z[1].mean(0)) / 2
    var = (z[0].var(0, ddof=1) + z[1].var(0, ddof=1)) / 2
    state = model.batch_norm_state()[0]
    np.testing.assert_allclose(state["running_mean"], 0.1 * mean, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(state["running_var"], 0.9 + 0.1 * var, rtol=1e-10)
    # and the whole batch as one block: the plain fit's batch norm
    plain, whole = fastmlp.MLP([6, 5, 3], **kw), fastmlp.MLP([6, 5, 3], **kw)
    plain.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer=SGD(lr=0.1))
    distributed.fit(whole, X, y, epochs=1, batch_size=8, block_size=8, shuffle=False,
                    optimizer=SGD(lr=0.1), comm=SelfComm())
    np.testing.assert_allclose(whole.get_flat_params(), plain.get_flat_params(), rtol=1e-12)


def test_one_rank_fit_matches_plain_fit_with_weights_and_schedule():
    X, y = problem(50)
    w = np.linspace(0, 2, 50)
    kw = dict(epochs=3, batch_size=16, sample_weight=w, l2=1e-3, clip_grad_norm=1.0,
              lr_schedule=fastmlp.schedules.CosineAnnealing(40, interval="batch"),
              record="step")
    a = fastmlp.MLP([6, 8, 3], seed=1, dtype=np.float64, dropout=0.2)
    b = fastmlp.MLP([6, 8, 3], seed=1, dtype=np.float64, dropout=0.2)
    ha = a.fit(X, y, optimizer=Adam(lr=0.01), **kw)
    hb = distributed.fit(b, X, y, optimizer=Adam(lr=0.01), block_size=5, comm=SelfComm(),
                         **kw)
    np.testing.assert_allclose(b.get_flat_params(), a.get_flat_params(), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(hb.loss, ha.loss, rtol=1e-9)
    np.testing.assert_allclose(hb.step_loss, ha.step_loss, rtol=1e-9)
    assert hb.step_lr == ha.step_lr and len(hb.step_lr) == 12
    assert b.training_step == a.training_step == 12
    assert hb.steps == ha.steps


def test_one_block_per_batch_is_bitwise_the_plain_fit_with_early_stopping():
    """(on a held-out split, as fit makes it; the best epoch's weights restored)"""
    X, y = problem(120)
    kw = dict(epochs=40, batch_size=16, early_stopping=True, patience=2)
    a = fastmlp.MLP([6, 16, 3], seed=1, dtype=np.float64, dropout=0.1)
    b = fastmlp.MLP([6, 16, 3], seed=1, dtype=np.float64, dropout=0.1)
    ha = a.fit(X, y, optimizer=Adam(lr=0.05), **kw)
    hb = distributed.fit(b, X, y, block_size=16, comm=SelfComm(), optimizer=Adam(lr=0.05),
                         **kw)
    assert hb.stopped_epoch == ha.stopped_epoch < 40
    assert hb.best_epoch == ha.best_epoch < hb.stopped_epoch
    assert hb.val_loss == ha.val_loss
    np.testing.assert_array_equal(b.get_flat_params(), a.get_flat_params())


def test_resuming_a_checkpoint_continues_bitwise(tmp_path):
    X, y = problem(60)
    kw = dict(batch_size=16, block_size=4, comm=SelfComm(), input_noise=0.1)
    straight = fastmlp.MLP([6, 8, 3], seed=5, dropout=0.2)
    distributed.fit(straight, X, y, epochs=4, optimizer=Adam(lr=0.01), **kw)
    first = fastmlp.MLP([6, 8, 3], seed=5, dropout=0.2)
    path = tmp_path / "run.ckpt"
    distributed.fit(first, X, y, epochs=2, optimizer=Adam(lr=0.01), checkpoint=path, **kw)
    resumed = fastmlp.MLP([6, 8, 3], seed=5, dropout=0.2)
    history = distributed.fit(resumed, X, y, epochs=4, resume_from=path, **kw)
    np.testing.assert_array_equal(resumed.get_flat_params(), straight.get_flat_params())
    assert history.epoch == [1, 2, 3, 4]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_block_per_batch_is_bitwise_the_plain_fit_with_clipping_and_penalties(dtype):
    """The clipping norm and the penalty's value are summed in one order whether the plain
    fit's engine calls take the panel layout (which the distributed steps never do)."""
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((40 * 48, 30)), rng.integers(0, 4, 40 * 48)
    kw = dict(epochs=2, batch_size=40, clip_grad_norm=0.05, l2=1e-3, record="step")
    a, b = (fastmlp.MLP([30, 64, 32, 4], seed=3, dtype=dtype) for _ in range(2))
    ha = a.fit(X, y, optimizer=Adam(lr=1e-3), **kw)
    hb = distributed.fit(b, X, y, block_size=40, comm=SelfComm(), optimizer=Adam(lr=1e-3), **kw)
    np.testing.assert_array_equal(b.get_flat_params(), a.get_flat_params())
    np.testing.assert_array_equal(hb.step_loss, ha.step_loss)


def test_one_rank_fit_applies_the_bias_prior_as_the_plain_fit():
    """bias_init='prior' sets the output biases from the labels before the first step, in
    a distributed fit as in fit (every rank holds the whole training set)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)), (rng.random(64) < 0.2).astype(np.int64)
    a, b = (fastmlp.MLP([5, 8, 2], seed=1, dtype=np.float64, bias_init="prior")
            for _ in range(2))
    a.fit(X, y, epochs=1, batch_size=16, optimizer=Adam(lr=1e-2))
    distributed.fit(b, X, y, block_size=16, comm=SelfComm(), epochs=1, batch_size=16,
                    optimizer=Adam(lr=1e-2))
    np.testing.assert_array_equal(b.get_flat_params(), a.get_flat_params())


def test_distributed_fit_binds_the_optimizer_after_reserving(monkeypatch):
    X, y = problem()
    opt = Adam(lr=1e-2)
    m = fastmlp.MLP([6, 8, 3], seed=1)

    def no_memory(*args, **kwargs):
        raise MemoryError("no room for the workspace")

    monkeypatch.setattr(m, "_backend_reserve", no_memory)
    with pytest.raises(MemoryError):
        distributed.fit(m, X, y, block_size=5, batch_size=10, comm=SelfComm(), optimizer=opt)
    assert opt.state == []
    distributed.fit(fastmlp.MLP([6, 8, 3], seed=2), X, y, block_size=5, batch_size=10,
                    comm=SelfComm(), optimizer=opt)


def test_distributed_fit_rejects_what_blocks_cannot_do():
    X, y = problem(10)
    model = fastmlp.MLP([6, 4, 3], seed=0, batch_norm=True)
    with pytest.raises(ValueError, match="2 rows per block"):
        distributed.fit(model, X, y, batch_size=10, block_size=3, comm=SelfComm())
    with pytest.raises(ValueError, match="does not support adversarial training"):
        distributed.fit(model, X, y, adversarial_eps=0.1, comm=SelfComm())
    with pytest.raises(ValueError, match="does not support activity penalties"):
        distributed.fit(model, X, y, activity_l2=0.1, comm=SelfComm())
    with pytest.raises(TypeError, match="unexpected keyword arguments .'epoch'."):
        distributed.fit(model, X, y, epoch=3, comm=SelfComm())
    with pytest.raises(ValueError, match="block_size"):
        distributed.fit(model, X, y, block_size=0, comm=SelfComm())
    assert model.training_step == 0


def test_divergence_raises_and_restores_the_epoch_start():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)) * 100
    y = rng.normal(size=(64, 1)) * 1e3
    model = fastmlp.MLP([4, 16, 1], loss="mse", seed=0)
    before = model.get_flat_params()
    with pytest.raises(fastmlp.TrainingDivergedError, match="diverged at epoch 1") as err:
        distributed.fit(model, X, y, epochs=5, batch_size=4, lr=10.0, comm=SelfComm())
    assert err.value.epoch == 1
    np.testing.assert_array_equal(model.get_flat_params(), before)
    assert model.training_step == 0


# -- real MPI runs ---------------------------------------------------------------------------
def _mpi_ready() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'fastmlp[mpi]')"
    if not MPIEXEC.exists():
        return f"no mpiexec next to {sys.executable} (pip install mpich)"
    return None


needs_mpi = pytest.mark.skipif(_mpi_ready() is not None, reason=str(_mpi_ready()))


def mpirun(ranks: int, case: dict, out: Path, timeout: float = TIMEOUT):
    """Run the helper under mpiexec; the completed process (a hang fails with Timeout)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(MPIEXEC), *LOOPBACK, "-n", str(ranks), sys.executable, str(RUNNER),
           json.dumps(case), str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def run_ok(ranks: int, case: dict, tmp_path: Path) -> dict:
    out = tmp_path / f"r{ranks}.npz"
    proc = mpirun(ranks, case, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return dict(f)


def run_plain(case: dict, tmp_path: Path) -> dict:
    out = tmp_path / "plain.npz"
    proc = subprocess.run([sys.executable, str(RUNNER), json.dumps(dict(case, plain=True)),
                           str(out)], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return dict(f)


CASES = {
    # 300 samples, batches of 24 in blocks of 8 (3 blocks, the last batch 12: 2 blocks),
    # 16 epochs: 208 steps
    "sgd-dropout": dict(optimizer="sgd", dropout=0.3, epochs=16),
    "adam-batchnorm-noise-weights": dict(optimizer="adam", batch_norm=True, epochs=16,
                                         input_noise=0.1, weights=True),
}


@needs_mpi
@pytest.mark.parametrize("name", list(CASES))
def test_mpi_ranks_agree_bitwise_and_with_the_plain_fit(name, tmp_path):
    case = CASES[name]
    # one rank on 2 threads, two and three on 1 thread each
    one, two, three = (run_ok(r, dict(case, threads=3 - min(r, 2)), tmp_path)
                       for r in (1, 2, 3))
    for other in (two, three):
        for key in ("params", "running", "loss", "counter"):
            np.testing.assert_array_equal(other[key], one[key])
    assert one["counter"][0] == 16 * 13
    if not case.get("batch_norm"):  # (ghost batch norm is another model than the plain)
        plain = run_plain(case, tmp_path)
        np.testing.assert_allclose(one["params"], plain["params"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(one["loss"], plain["loss"], rtol=1e-5)


@needs_mpi
def test_mpi_batch_norm_with_one_block_per_batch_is_the_plain_fit(tmp_path):
    case = dict(optimizer="adam", batch_norm=True, epochs=3, batch_size=24, block_size=24)
    two, plain = run_ok(2, case, tmp_path), run_plain(case, tmp_path)
    np.testing.assert_allclose(two["params"], plain["params"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["running"], plain["running"], rtol=1e-4, atol=1e-5)


@needs_mpi
def test_mpi_checkpoint_and_early_stopping_agree_across_ranks(tmp_path):
    case = dict(optimizer="adam", epochs=30, early_stopping=True,
                checkpoint=str(tmp_path / "ck.fmlp"))
    one = run_ok(1, case, tmp_path)
    saved = checkpoint.load(tmp_path / "ck.fmlp")
    three = run_ok(3, case, tmp_path)
    assert 0 < three["stopped"][0] < 30
    for key in ("params", "loss", "stopped"):
        np.testing.assert_array_equal(three[key], one[key])
    config, arrays = checkpoint.load(tmp_path / "ck.fmlp")  # written by rank 0, complete
    assert config["epoch"] == saved[0]["epoch"] == three["stopped"][0]
    np.testing.assert_array_equal(arrays["model.params"], saved[1]["model.params"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.fmlp", "r1.npz", "r3.npz"]


@needs_mpi
@pytest.mark.parametrize("where", [dict(fail_step=30), dict(fail_epoch=2)],
                         ids=["in-a-gradient", "in-a-callback"])
def test_mpi_a_rank_that_raises_stops_every_rank(where, tmp_path):
    proc = mpirun(3, dict(epochs=6, fail_rank=1, **where), tmp_path / "x.npz")
    assert proc.returncode != 0
    assert proc.stderr.count("RuntimeError: injected failure") == 1  # rank 1's own
    assert proc.stderr.count("RankFailedError: rank 1 of the distributed fit failed") == 2
    assert not (tmp_path / "x.npz").exists()


@needs_mpi
def test_mpi_ranks_with_different_models_all_refuse_to_train(tmp_path):
    proc = mpirun(3, dict(seed_rank=2), tmp_path / "x.npz")
    assert proc.returncode != 0
    assert proc.stderr.count("ValueError: the ranks' models differ") == 3
    assert not (tmp_path / "x.npz").exists()


@needs_mpi
@pytest.mark.parametrize("differ", [dict(seed_rank=2), dict(zero_bias_rank=1)],
                         ids=["seed", "bias_init"])
def test_mpi_ranks_that_differ_leave_their_models_and_optimizers_as_they_were(tmp_path,
                                                                             differ):
    """(the ranks compare before the bias prior changes the model and before the optimizer
    is bound; bias_init='prior' and 0.0 give equal weights until the prior is applied,
    and their configurations tell them apart)"""
    out = tmp_path / "x.npz"
    proc = mpirun(3, dict(differ, bias_prior=True, optimizer="adam", report_refusal=True),
                  out)
    assert proc.returncode != 0
    assert proc.stderr.count("ValueError: the ranks' models differ") == 3
    for rank in range(3):
        with np.load(f"{out}.rank{rank}.npz") as f:
            assert bool(f["untouched"][0]), f"rank {rank}'s model or optimizer changed"


@needs_mpi
def test_mpi_a_rank_that_dies_ends_the_job(tmp_path):
    proc = mpirun(2, dict(epochs=6, exit_rank=1, fail_epoch=2), tmp_path / "x.npz",
                  timeout=60)
    assert proc.returncode != 0
    assert not (tmp_path / "x.npz").exists()



def write_table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    data = tmp_path / "table.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",", header="a,b,c,d,e,label",
               comments="")
    return data


@needs_mpi
def test_cli_a_rank_that_fails_before_the_fit_ends_the_job(tmp_path):
    """(a rank that just exited would leave the others waiting in the fit's first
    collective: the command line ends the whole job)"""
    proc = mpirun(3, dict(cli_fail_rank=1), write_table(tmp_path), timeout=60)
    assert proc.returncode != 0
    assert "fastmlp: error: " in proc.stderr and "permission denied (injected)" in proc.stderr


@needs_mpi
def test_cli_distributed_prints_and_saves_once_and_matches_one_rank(tmp_path):
    data = write_table(tmp_path)
    exe = Path(sys.executable).parent / "fastmlp"
    saved = {}
    for ranks in (1, 2):
        out = tmp_path / f"m{ranks}.fmlp"
        cmd = [str(MPIEXEC), *LOOPBACK, "-n", str(ranks), str(exe), "train", "--distributed",
               "--data", str(data), "--hidden", "8", "--epochs", "3", "--batch-size", "32",
               "--block-size", "8", "--save", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.count("test accuracy:") == 1
        assert proc.stdout.count("epoch 3/3") == 1
        assert f"data-parallel over {ranks} MPI rank(s)" in proc.stdout
        saved[ranks] = fastmlp.load(out)
    np.testing.assert_array_equal(saved[2].get_flat_params(), saved[1].get_flat_params())
