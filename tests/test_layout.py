"""Training in the engine's panel layout (csrc/layout.c): fits of either dtype, at every
batch, keep weights, gradients and optimizer state in the register tiles' layout while the
engine runs, and convert back before Python sees them.
Every result must be bitwise the one of the row-major path (Engine.panel_layout = False),
on every kernel path, the sums over the weights (clipping norm, penalty value) included."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastmlp
from fastmlp import _engine, optim
from fastmlp.schedules import MultiStepLR
from conftest import assert_trained_alike, kernel_has_tiles, make_problem

OPTIMIZERS = {
    "adam_amsgrad": lambda: optim.Adam(lr=1e-3, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda: optim.AdamW(lr=1e-3),
    "sgd_nesterov": lambda: optim.SGD(lr=0.02, momentum=0.9, nesterov=True),
    "rmsprop_centered": lambda: optim.RMSprop(lr=1e-3, momentum=0.5, centered=True),
    "adagrad": lambda: optim.Adagrad(lr=0.02),
    "adadelta": lambda: optim.Adadelta(),
    "rprop": lambda: optim.Rprop(lr=1e-3),
    "delta_bar_delta": lambda: optim.DeltaBarDelta(lr=1e-3),
}


def fit_both(sizes, batch, make_opt, model_options=None, steps=40, **fit_options):
    """The same fit with and without the panel layout: (model, optimizer, layout calls)
    for each. Two epochs of `steps` steps: the second runs in calls of >= 32 steps."""
    X, y = make_problem("cross_entropy", batch * steps, sizes[0], sizes[-1], seed=batch)
    X = X.astype((model_options or {}).get("dtype", np.float32))
    out = []
    for use in (True, False):
        m = fastmlp.MLP(sizes, seed=3, bias_init=0.05, **(model_options or {}))
        m._engine.panel_layout = use
        opt = make_opt()
        before = _engine.panel_layout_calls()
        m.fit(X, y, epochs=2, batch_size=batch, optimizer=opt, **fit_options)
        out.append((m, opt, _engine.panel_layout_calls() - before))
    return out


def tiles():
    """Whether the active kernel set has register tiles (the portable C and BLAS paths
    have none, and no panel layout)."""
    return kernel_has_tiles(_engine.kernel())


def assert_same(panels, rows):
    (m1, o1, calls1), (m2, o2, calls2) = panels, rows
    assert calls2 == 0
    assert (calls1 > 0) == tiles(), "panel layout used where it should not, or not used"
    assert_trained_alike((m1, o1), (m2, o2))


@pytest.mark.parametrize("sizes", [[40, 64, 96, 7], [100, 32, 64, 5], [30, 64, 64]])
@pytest.mark.parametrize("batch", [1, 5, 32])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_panel_layout_trains_bitwise_like_row_major(kernel, sizes, batch, dtype):
    """Layers of one and several panels, inputs narrower than a row group (< 64), an
    output layer in panels, batch 1 (which takes the one-row product otherwise)."""
    assert_same(*fit_both(sizes, batch, OPTIMIZERS["adam_amsgrad"], {"dtype": dtype}))


@pytest.mark.parametrize("sizes", [[100, 64, 96, 7], "odd panels"])
@pytest.mark.parametrize("batch", [64, 130])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_batches_train_in_panel_layout(kernel, sizes, batch, dtype):
    """Both dtypes keep the layout at every batch: row groups of the products, k-blocks and
    layers whose width is an odd multiple of the kernel's panel width ("odd panels": 9 and
    5 panels; float64: 72 and 40 for the AVX2 tiles' 8 doubles, 144 and 80 for the AVX-512
    tiles' 16; 8-wide panels on the paths without tiles), on every kernel path."""
    if sizes == "odd panels":
        nr = fastmlp.kernel_info()[dtype]["nr"] if tiles() else 8
        sizes = [70, 9 * nr, 5 * nr, 5]
    assert_same(*fit_both(sizes, batch, OPTIMIZERS["adam_amsgrad"], {"dtype": dtype}))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_large_layers_convert_in_blocks_of_rows_over_threads(threads, dtype):
    """A layer large enough that its conversions are spread over threads (300 x 128:
    38,400 weights, past the engine's parallel threshold), its 300 rows no multiple of the
    conversion's block of 16 rows: the parameters and both Adam moments go into the layout
    and back on every call, and the fit stays bitwise the row-major one."""
    assert_same(*fit_both([300, 128, 5], 16, OPTIMIZERS["adam_amsgrad"],
                          {"dtype": dtype, "threads": threads}))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_optimizer_state_follows_the_layout(name, dtype):
    assert_same(*fit_both([30, 64, 96, 4], 8, OPTIMIZERS[name], {"dtype": dtype}))


@pytest.mark.parametrize("options", [
    {"l2": 1e-3, "l1": 1e-4},
    {"l1": 1e-3, "l1_proximal": True, "penalize_biases": True},
    {"clip_grad_value": 0.01},
    {"activity_l2": 1e-3},
    {"input_noise": 0.1, "adversarial_eps": 0.05},
])
def test_penalties_clipping_and_augmentation_in_panel_layout(options):
    assert_same(*fit_both([30, 64, 32, 4], 8, OPTIMIZERS["adam_amsgrad"], **options))


@pytest.mark.parametrize("model_options", [
    {"dropout": 0.2, "input_dropout": 0.1},
    {"batch_norm": True},
    {"batch_norm": "after", "activation": "tanh"},
])
def test_dropout_and_batch_norm_in_panel_layout(model_options):
    assert_same(*fit_both([30, 64, 32, 4], 8, OPTIMIZERS["sgd_nesterov"], model_options))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [[30, 64, 32, 4], [20, 16 * 70, 8]])
def test_gradient_norm_clipping_in_panel_layout(sizes, dtype):
    """The global norm sums a layer's weight gradient panel by panel in either layout, so
    a clipped fit is bitwise the same with and without the layout (whether a call takes
    the layout depends on its length, which the Python loop sets from timings). 70 panels:
    more than one group of the norm's per-panel parts."""
    assert_same(*fit_both(sizes, 8, OPTIMIZERS["adam_amsgrad"], {"dtype": dtype},
                          clip_grad_norm=0.05))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("penalty", [{"l2": 1e-2}, {"l1": 1e-3, "l2": 1e-3},
                                     {"l1": 1e-3, "l1_proximal": True, "penalize_biases": True}])
def test_penalty_values_do_not_depend_on_the_layout(penalty, dtype):
    """The penalty's value (in every recorded loss) sums each weight block panel by panel in
    either layout: the step losses are bitwise those of the row-major fit. 70 panels: more
    than one group of the penalty's lanes."""
    sizes = [20, 16 * 70, 8]
    X, y = make_problem("cross_entropy", 8 * 40, sizes[0], sizes[-1], seed=6)
    X = X.astype(dtype)
    losses = []
    for use in (True, False):
        m = fastmlp.MLP(sizes, seed=3, dtype=dtype)
        m._engine.panel_layout = use
        h = m.fit(X, y, epochs=2, batch_size=8, optimizer=optim.SGD(lr=0.05), record="step",
                  **penalty)
        losses.append((np.array(h.step_loss), m.get_flat_params()))
    np.testing.assert_array_equal(losses[0][0], losses[1][0])
    np.testing.assert_array_equal(losses[0][1], losses[1][1])


def test_a_pruned_model_trains_row_major():
    """A pruning mask is row-major: pruned models keep the weights row-major."""
    X, y = make_problem("cross_entropy", 320, 30, 4, seed=1)
    results = []
    for use in (True, False):
        m = fastmlp.MLP([30, 64, 32, 4], seed=3)
        m.prune(0.5)
        m._engine.panel_layout = use
        before = _engine.panel_layout_calls()
        m.fit(X, y, epochs=2, batch_size=8, lr=0.05)
        assert _engine.panel_layout_calls() == before
        results.append(m.get_flat_params())
    np.testing.assert_array_equal(*results)


def test_divergence_restores_the_same_weights_from_panel_layout():
    """A run that diverges inside a call in panel layout (the rate jumps at step 60, in
    epoch 2's 40-step call) goes back to the snapshot the engine copied out of that
    layout: the same weights as the row-major run."""
    X, y = make_problem("cross_entropy", 8 * 40, 30, 4, seed=2)
    finals = []
    for use in (True, False):
        m = fastmlp.MLP([30, 64, 32, 4], seed=3)
        m._engine.panel_layout = use
        before = _engine.panel_layout_calls()
        with pytest.raises(fastmlp.TrainingDivergedError):
            m.fit(X, y, epochs=3, batch_size=8, optimizer=optim.SGD(lr=0.05),
                  lr_schedule=MultiStepLR([60], gamma=1e30, interval="batch"))
        assert (_engine.panel_layout_calls() > before) == (use and tiles())
        assert np.all(np.isfinite(m.get_flat_params()))
        finals.append(m.get_flat_params())
    np.testing.assert_array_equal(*finals)


def test_a_short_call_of_large_batches_takes_the_layout():
    """A call of fewer than 32 steps takes the layout when its steps hold 1,024 rows or more
    (the conversions' cost against the steps'): 10 steps of 128 rows run as calls of 1 and
    9 steps (1,152 rows); 10 steps of 8 rows do not."""
    X, y = make_problem("cross_entropy", 1280, 30, 4, seed=4)
    for batch, used in ((128, True), (8, False)):
        m = fastmlp.MLP([30, 64, 32, 4], seed=3, dtype="float64")
        before = _engine.panel_layout_calls()
        m.fit(X[:10 * batch], y[:10 * batch], epochs=1, batch_size=batch, lr=0.01)
        assert (_engine.panel_layout_calls() > before) == (used and tiles())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_call_that_writes_no_gradient_leaves_it_as_it_was(dtype):
    """The gradient is not converted into the layout (a step's backward pass writes all of
    it first): a call in panel layout whose first step diverges, before any backward pass,
    leaves the last gradient as it was, in the row-major layout."""
    X, y = make_problem("cross_entropy", 1280, 30, 4, seed=6)
    X = X.astype(dtype)
    grads = []
    for use in (True, False):
        m = fastmlp.MLP([30, 64, 32, 4], seed=3, dtype=dtype)
        m._engine.panel_layout = use
        m.fit(X, y, epochs=1, batch_size=128, lr=0.01)  # calls of 1 and 9 steps
        last = m._engine.grads.copy()
        weights = m.weights
        weights[-1][...] = np.finfo(dtype).max
        m.set_params(weights, m.biases)
        before = _engine.panel_layout_calls()
        with pytest.raises(fastmlp.TrainingDivergedError, match="epoch 1, step 1:"):
            m.fit(X, y, epochs=1, batch_size=1280, lr=0.01)  # one step of 1,280 rows
        assert (_engine.panel_layout_calls() > before) == (use and tiles())
        np.testing.assert_array_equal(m._engine.grads, last)
        grads.append(last)
    np.testing.assert_array_equal(*grads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_input_trains_bitwise_in_panel_layout(dtype):
    """CSR input: the first layer's sparse products address its weights in panels."""
    X, y = make_problem("cross_entropy", 8 * 40, 40, 5, seed=5)
    X = np.where(np.abs(X) > 1.0, X, 0.0).astype(dtype)  # about a third non-zero
    out = []
    for use in (True, False):
        m = fastmlp.MLP([40, 64, 32, 5], seed=3, dtype=dtype)
        m._engine.panel_layout = use
        opt = OPTIMIZERS["adam_amsgrad"]()
        before = _engine.panel_layout_calls()
        m.fit(sp.csr_matrix(X), y, epochs=2, batch_size=8, optimizer=opt)
        out.append((m, opt, _engine.panel_layout_calls() - before))
    assert_same(*out)
