"""An optimizer's state belongs to the model it trained (fastmlp.optim.Optimizer.model_state)."""

from __future__ import annotations

import copy
import gc
import pickle
import threading

import numpy as np
import pytest

import fastmlp
from fastmlp.optim import SGD, Adam


def _data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def _model(seed=1):
    return fastmlp.MLP([5, 8, 2], seed=seed, threads=1)


def test_another_model_cannot_take_the_state_over():
    X, y = _data()
    opt = Adam(1e-2)
    _model(1).fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    other = _model(2)
    before = other.get_flat_params()
    with pytest.raises(ValueError, match="another model"):
        other.fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    for a, b in zip(before, other.get_flat_params()):
        np.testing.assert_array_equal(a, b)  # nothing trained


def test_reset_frees_the_optimizer_for_another_model():
    X, y = _data()
    opt = SGD(0.1, momentum=0.9)
    _model(1).fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    opt.reset()
    fresh = _model(2)
    fresh.fit(X, y, epochs=1, batch_size=16, optimizer=opt, shuffle=False)
    ref = _model(2)
    ref.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(0.1, momentum=0.9), shuffle=False)
    np.testing.assert_array_equal(ref.get_flat_params(), fresh.get_flat_params())


def test_a_dead_owner_still_holds_its_state():
    X, y = _data()
    opt = Adam(1e-2)
    m = _model(1)
    m.fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    del m
    gc.collect()
    with pytest.raises(ValueError, match="another model"):
        _model(2).fit(X, y, epochs=1, batch_size=16, optimizer=opt)


def test_loaded_state_and_pickles_bind_to_the_next_model():
    X, y = _data()
    opt = Adam(1e-2)
    m = _model(1)
    m.fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    restored = Adam()
    restored.load_state_dict(opt.state_dict())
    m2 = pickle.loads(pickle.dumps(m))
    m2.fit(X, y, epochs=1, batch_size=16, optimizer=restored, shuffle=False)
    m.fit(X, y, epochs=1, batch_size=16, optimizer=opt, shuffle=False)
    # the restored state continued like the original
    np.testing.assert_array_equal(m.get_flat_params(), m2.get_flat_params())
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.state[0]["step"] == opt.state[0]["step"]
    with pytest.raises(ValueError, match="another model"):
        _model(3).fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    _model(3).fit(X, y, epochs=1, batch_size=16, optimizer=clone)  # unbound after unpickling


def test_two_threads_two_models_one_optimizer():
    X, y = _data(n=256)
    opt = Adam(1e-2)
    models = [_model(1), _model(2)]
    errors, done = [], []
    barrier = threading.Barrier(2)

    def run(m):
        barrier.wait()
        try:
            m.fit(X, y, epochs=2, batch_size=16, optimizer=opt)
            done.append(m)
        except ValueError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 1 and len(errors) == 1 and "another model" in errors[0]
    assert opt.state[0]["step"] == 2 * 256 // 16


def test_a_copy_has_state_of_its_own_and_the_same_model():
    X, y = _data()
    opt = Adam(1e-2)
    m = _model(1)
    m.fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    twin = copy.copy(opt)
    assert all(not np.shares_memory(a, b) for a, b in
               zip(twin.state[0].values(), opt.state[0].values()) if isinstance(a, np.ndarray))
    with pytest.raises(ValueError, match="another model"):
        _model(2).fit(X, y, epochs=1, batch_size=16, optimizer=twin)
    m.fit(X, y, epochs=1, batch_size=16, optimizer=twin)
    assert twin.state[0]["step"] == 8 and opt.state[0]["step"] == 4


def test_a_rule_without_state_serves_any_model():
    """Plain SGD keeps no moments: one instance trains several models, each as a fresh
    one would (the step count starts afresh for each)."""
    X, y = _data()
    opt = SGD(0.1)
    _model(1).fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    shared, fresh = _model(2), _model(2)
    shared.fit(X, y, epochs=1, batch_size=16, optimizer=opt, shuffle=False)
    fresh.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(0.1), shuffle=False)
    np.testing.assert_array_equal(shared.get_flat_params(), fresh.get_flat_params())
    assert opt.state[0]["step"] == 4


def test_resuming_a_checkpoint_replaces_a_bound_state(tmp_path):
    """resume_from replaces the optimizer's whole state with the checkpoint's, so an
    optimizer bound to another model serves the resumed one (it was refused before the
    restore could run), and it is then bound to the resumed model."""
    X, y = _data()
    opt = Adam(1e-2)
    first = _model(1)
    first.fit(X, y, epochs=2, batch_size=16, optimizer=opt, checkpoint=tmp_path / "ck")
    straight = _model(1)
    straight.fit(X, y, epochs=4, batch_size=16, optimizer=Adam(1e-2))
    resumed = _model(1)
    resumed.fit(X, y, epochs=4, batch_size=16, optimizer=opt, resume_from=tmp_path / "ck")
    np.testing.assert_array_equal(straight.get_flat_params(), resumed.get_flat_params())
    with pytest.raises(ValueError, match="another model"):
        first.fit(X, y, epochs=1, batch_size=16, optimizer=opt)


def test_a_fit_that_fails_to_reserve_its_workspace_binds_nothing(monkeypatch):
    """The optimizer is bound once the fit has its workspace: a fit that fails before (here
    the reservation raises MemoryError) leaves it free for another model."""
    X, y = _data()
    opt = Adam(1e-2)
    first = _model(1)
    first.fit(X, y, epochs=1, batch_size=16, optimizer=Adam(1e-2))  # a workspace exists

    def no_memory(*args, **kwargs):
        raise MemoryError("no room for the workspace")

    monkeypatch.setattr(first, "_backend_reserve", no_memory)
    with pytest.raises(MemoryError):
        first.fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    assert opt.state == []  # nothing taken
    second = _model(2)
    second.fit(X, y, epochs=1, batch_size=16, optimizer=opt)  # free for another model
    with pytest.raises(ValueError, match="another model"):
        first.fit(X, y, epochs=1, batch_size=16, optimizer=opt)


def test_a_refused_optimizer_leaves_the_model_as_it_was():
    """The refusal comes before the fit changes the model (bias_init='prior' sets the
    output biases from the labels at the start of a fit)."""
    X, y = _data()
    opt = Adam(1e-2)
    _model(1).fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    other = fastmlp.MLP([5, 8, 2], seed=2, threads=1, bias_init="prior")
    before = other.get_flat_params().copy()
    with pytest.raises(ValueError, match="another model"):
        other.fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    np.testing.assert_array_equal(other.get_flat_params(), before)


def test_a_state_shaped_for_another_model_is_refused_before_the_bias_prior():
    """A loaded state (unbound) of another model's shape is refused before the fit changes
    the model."""
    X, y = _data()
    opt = Adam(1e-2)
    _model(1).fit(X, y, epochs=1, batch_size=16, optimizer=opt)
    loaded = Adam(1e-2)
    loaded.load_state_dict(opt.state_dict())
    other = fastmlp.MLP([5, 9, 2], seed=2, threads=1, bias_init="prior")
    before = other.get_flat_params().copy()
    with pytest.raises(ValueError, match="state of parameter 0"):
        other.fit(X, y, epochs=1, batch_size=16, optimizer=loaded)
    np.testing.assert_array_equal(other.get_flat_params(), before)


@pytest.mark.parametrize("bad", [{"validation_every": 0}, {"batch_size": 63}])
def test_a_refused_fit_binds_nothing_and_changes_nothing(bad):
    """Arguments checked late in fit (the loop's, batch norm's batch rule) refuse the fit
    before the bias prior or the binding: the optimizer stays free for another model."""
    X, y = _data()
    opt = Adam(1e-2)
    m = fastmlp.MLP([5, 8, 2], seed=2, threads=1, bias_init="prior", batch_norm=True)
    before = m.get_flat_params().copy()
    with pytest.raises(ValueError):
        m.fit(X, y, epochs=1, optimizer=opt, **{"batch_size": 16, **bad})
    np.testing.assert_array_equal(m.get_flat_params(), before)
    assert opt.state == []
    _model(3).fit(X, y, epochs=1, batch_size=16, optimizer=opt)  # free for another model
