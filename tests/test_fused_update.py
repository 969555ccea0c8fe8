"""The optimizer update fused into the backward pass (engine_impl.h's backward_update,
dense_impl.h's update_tile): a training step updates each weight tile while its gradient
is in cache, where the tile's block is contiguous (weights in panel layout, a narrow
layer's rows), and the rest of the parameters in one pass after. Every result must be
bitwise the one of the separate pass (`_engine.set_fused_update(False)`): the parameters,
the gradient, every optimizer state array and the update count, for every elementwise
rule, both dtypes, every kernel path, tails of rows and panels, 1 and 2 threads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastmlp
from fastmlp import _engine, optim
from conftest import assert_trained_alike, kernel_has_tiles, make_problem

RULES = {
    "sgd": lambda: optim.SGD(lr=0.05),
    "sgd_momentum_decay": lambda: optim.SGD(lr=0.02, momentum=0.9, dampening=0.1,
                                            weight_decay=1e-3),
    "sgd_nesterov": lambda: optim.SGD(lr=0.02, momentum=0.9, nesterov=True),
    "adagrad": lambda: optim.Adagrad(lr=0.02, lr_decay=1e-3, weight_decay=1e-4),
    "adadelta": lambda: optim.Adadelta(weight_decay=1e-4),
    "rmsprop": lambda: optim.RMSprop(lr=1e-3),
    "rmsprop_centered_momentum": lambda: optim.RMSprop(lr=1e-3, momentum=0.5, centered=True),
    "adam": lambda: optim.Adam(lr=1e-3),
    "adam_amsgrad_l2": lambda: optim.Adam(lr=1e-3, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda: optim.AdamW(lr=1e-3, weight_decay=1e-2),
    "rprop": lambda: optim.Rprop(lr=1e-3),
    "delta_bar_delta": lambda: optim.DeltaBarDelta(lr=1e-3),
}


@pytest.fixture(autouse=True)
def restore_switch():
    was = _engine.fused_update()
    yield
    _engine.set_fused_update(was)


def fit(fused, sizes, batch, make_opt, X, y, model_options=None, epochs=2, prune=None,
        **fit_options):
    """One fit with the fused update on or off: (model, optimizer, fused layer updates)."""
    _engine.set_fused_update(fused)
    m = fastmlp.MLP(sizes, seed=3, bias_init=0.05, **(model_options or {}))
    if prune:
        m.prune(prune)
    opt = make_opt()
    before = _engine.fused_update_calls()
    m.fit(X, y, epochs=epochs, batch_size=batch, optimizer=opt, **fit_options)
    return m, opt, _engine.fused_update_calls() - before


def fit_both(sizes, batch, make_opt, model_options=None, n=None, sparse=False, **options):
    """The same fit with the fused update and without: two epochs of 41 steps (by default),
    the second run by the engine in calls long enough to take the panel layout."""
    X, y = make_problem("cross_entropy", n or batch * 40 + 3, sizes[0], sizes[-1], seed=batch)
    X = X.astype((model_options or {}).get("dtype", "float32"))
    if sparse:
        X = sp.csr_matrix(np.where(np.abs(X) > 1.0, X, 0.0))
    return [fit(use, sizes, batch, make_opt, X, y, model_options, **options)
            for use in (True, False)]


def assert_same(fused, separate):
    (m1, o1, calls1), (m2, o2, calls2) = fused, separate
    assert calls2 == 0, "the separate pass made fused updates"
    assert_trained_alike((m1, o1), (m2, o2))
    assert [s.get("step") for s in o1.state] == [s.get("step") for s in o2.state]
    return calls1


def panel_layers(sizes, dtype):
    """Dense layers whose width is a multiple of the active kernel's panel width for the
    dtype (they train in panel layout), 0 without register tiles."""
    if not kernel_has_tiles(_engine.kernel()):
        return 0
    nr = fastmlp.kernel_info()[dtype]["nr"]
    return sum(1 for o in sizes[1:] if o % nr == 0)


# Inputs below 64 (the small-batch tile path), rows not a multiple of any tile's rows
# (row tails), widths of 1 and 3 panels of every kernel set, a narrow output layer.
NETS = [[20, 96, 64, 10], [70, 32, 96, 5]]


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_rule_is_bitwise_the_separate_pass(kernel, rule, dtype):
    for sizes in NETS:
        calls = assert_same(*fit_both(sizes, 16, RULES[rule], {"dtype": dtype}))
        # the second epoch's steps update at least the panel-layout layers' weights in
        # their products
        assert calls >= 40 * panel_layers(sizes, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 7, 63, 100])
def test_batch_sizes(kernel, dtype, batch):
    """Batch 1 (the one-row path elsewhere), odd batches, below and above a row group (64)."""
    assert_same(*fit_both([70, 64, 32, 10], batch, RULES["adam"], {"dtype": dtype}))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_do_not_change_the_result(dtype):
    """Two threads split each product's tiles, so each thread updates its own: the same
    bits as one thread and as the separate pass. 784-wide input: products large enough to
    run on a team."""
    X, y = make_problem("cross_entropy", 32 * 40 + 5, 784, 10, seed=9)
    X = X.astype(dtype)
    out = []
    for fused, threads in ((True, 1), (True, 2), (False, 2)):
        out.append(fit(fused, [784, 128, 64, 10], 32, RULES["adam"], X, y,
                       {"dtype": dtype, "threads": threads}))
    assert out[0][2] > 0 and out[1][2] == out[0][2]
    assert_same(out[1], out[2])
    np.testing.assert_array_equal(out[0][0].get_flat_params(), out[1][0].get_flat_params())


@pytest.mark.parametrize("model_options", [
    {"dropout": 0.2, "input_dropout": 0.1},
    {"batch_norm": True},
    {"batch_norm": "after", "activation": "tanh"},
    {"activation": "sigmoid"},
])
def test_dropout_and_batch_norm(model_options):
    """The fused step computes each layer's input gradient before its weight gradient (from
    the weights before their update): with dropout masks and batch norm's two delta
    buffers in between, still the separate pass's bits."""
    assert_same(*fit_both([30, 64, 32, 4], 8, RULES["sgd_nesterov"], model_options))


@pytest.mark.parametrize("options", [{"activity_l2": 1e-3},
                                     {"input_noise": 0.1, "adversarial_eps": 0.05}])
def test_activity_penalty_and_adversarial_rows(options):
    """The adversarial rows' backward pass (FGSM) updates nothing; the step's own does."""
    calls = assert_same(*fit_both([30, 64, 32, 4], 8, RULES["adam"], **options))
    assert calls > 0 or not kernel_has_tiles(_engine.kernel())


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_strided_inputs(layout):
    """X in Fortran order and as a strided view: the batch rows the products read are
    gathered either way; fused and separate agree, and agree with C-ordered X."""
    X, y = make_problem("cross_entropy", 16 * 40 + 3, 140, 6, seed=8)
    views = {"fortran": np.asfortranarray(X[:, :70]), "strided": X[:, ::2]}
    out = [fit(use, [70, 64, 32, 6], 16, RULES["adam"], views[layout], y) for use in (True, False)]
    calls = assert_same(*out)
    assert calls >= 40 * panel_layers([70, 64, 32, 6], "float32")
    plain = fit(True, [70, 64, 32, 6], 16, RULES["adam"],
                np.ascontiguousarray(views[layout]), y)
    np.testing.assert_array_equal(plain[0].get_flat_params(), out[0][0].get_flat_params())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_input(dtype):
    """CSR input: the first layer's weights (sparse products) in the pass after, the
    others fused."""
    assert_same(*fit_both([40, 64, 32, 5], 8, RULES["adam"], {"dtype": dtype}, sparse=True))


@pytest.mark.parametrize("options", [
    {"clip_grad_norm": 0.05},
    {"clip_grad_value": 0.01},
    {"l2": 1e-3},
    {"l1": 1e-3, "l1_proximal": True},
    {"record": "step", "record_grad_norms": True},
    {"prune": 0.5},
    {"model_options": {"ties": {2: (1, "transpose")}}},
])
def test_steps_that_need_the_whole_gradient_take_the_separate_pass(options):
    """Clipping, weight penalties, the per-layer gradient norms, a pruning mask and tied
    weights act on the whole gradient before the update: no fused updates there, and the
    same bits as with the switch off."""
    options = dict(options)
    model_options = options.pop("model_options", None)
    sizes = [30, 64, 32, 64] if model_options else [30, 64, 32, 4]
    calls = assert_same(*fit_both(sizes, 8, RULES["adam"], model_options, **options))
    assert calls == 0


def test_the_default_is_the_machines_and_the_environment_sets_it():
    """Off by default on AMD and Hygon CPUs (measured slower there), on elsewhere;
    FASTMLP_FUSED_UPDATE=0/1 decides at import, another value is named and changes nothing."""
    code = ("import numpy as np, fastmlp; from fastmlp import _engine\n"
            "X = np.random.default_rng(0).standard_normal((64, 20)); y = np.arange(64) % 3\n"
            "fastmlp.MLP([20, 64, 3]).fit(X, y, epochs=1, batch_size=8)\n"
            "print(_engine.fused_update(), _engine.fused_update_calls() > 0)")

    def run(value):
        env = dict(os.environ)
        env.pop("FASTMLP_FUSED_UPDATE", None)
        if value is not None:
            env["FASTMLP_FUSED_UPDATE"] = value
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)

    info = fastmlp.kernel_info()
    default = info["fused_update_default"]
    assert default == (info["vendor"] not in ("AuthenticAMD", "HygonGenuine"))
    tiles = kernel_has_tiles(_engine.kernel())
    assert run(None).stdout.split() == [str(default), str(default and tiles)]
    assert run("1").stdout.split() == ["True", str(tiles)]
    assert run("0").stdout.split() == ["False", "False"]
    odd = run("off")  # not a value it takes: named, and the default stays
    assert odd.stdout.split() == [str(default), str(default and tiles)]
    assert ("FASTMLP_FUSED_UPDATE='off' is neither '0' (off) nor '1' (on): the fused "
            f"optimizer update stays at this machine's default ({'on' if default else 'off'})"
            in odd.stderr)


def test_none_restores_the_machines_default():
    _engine.set_fused_update(True)
    assert _engine.fused_update()
    _engine.set_fused_update(False)
    assert not _engine.fused_update()
    _engine.set_fused_update(None)
    assert _engine.fused_update() == fastmlp.kernel_info()["fused_update_default"]


@pytest.mark.parametrize("rule", list(RULES))
def test_the_reference_agrees(rule):
    """A fused float64 fit against the NumPy reference's (which updates after the backward
    pass), every rule: the same training within float64 rounding."""
    import fastmlp.reference

    sizes = [20, 96, 64, 10]
    X, y = make_problem("cross_entropy", 16 * 40, sizes[0], sizes[-1], seed=4)
    _engine.set_fused_update(True)
    before = _engine.fused_update_calls()
    out = []
    for impl in (fastmlp.MLP, fastmlp.reference.MLP):
        m = impl(sizes, seed=3, bias_init=0.05, dtype="float64")
        m.fit(X, y, epochs=2, batch_size=16, optimizer=RULES[rule](), shuffle=False)
        out.append(m.get_flat_params())
    assert _engine.fused_update_calls() - before >= 40 * panel_layers(sizes, "float64")
    scale = np.abs(out[1]).max()
    assert np.abs(out[0] - out[1]).max() <= 1e-9 * scale
