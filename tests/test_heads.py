"""Multitask heads (fastmlp.model.heads, csrc/heads.c): the weighted per-head objective
against central differences, the engine against the NumPy reference and PyTorch, weight-0
heads, thread-count independence, model files and bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import DISTRIBUTION_LOSSES, LOSSES, make_targets, relative_error

import fastmlp
import fastmlp.reference
from fastmlp import Head, optim, serialization, solvers

TOL = {"float64": 1e-10, "float32": 1e-4}
HEAD_LOSSES = LOSSES + DISTRIBUTION_LOSSES


def two_heads(loss: str, weight: float = 0.7, smoothing: float = 0.0) -> list[Head]:
    """A 4-output head of `loss` and a 2-output mse head."""
    return [Head("main", 4, loss=loss, weight=weight, label_smoothing=smoothing),
            Head("aux", 2, loss="mse", weight=1.3)]


def problem(heads, n=23, n_in=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    y = {h.name: make_targets(h.loss, n, h.size, rng) for h in heads}
    return X, y


def model(impl, heads, dtype="float64", trunk=(5, 7), **kw):
    kw.setdefault("seed", 3)
    kw.setdefault("bias_init", 0.1)
    return impl(list(trunk), heads=heads, activation="tanh", dtype=dtype, init="xavier_normal",
                **kw)


# -- the objective and its gradient -------------------------------------------------------------
@pytest.mark.parametrize("loss", HEAD_LOSSES + ["smoothed_cross_entropy"])
def test_gradient_matches_central_differences(loss):
    smoothing = 0.1 if loss == "smoothed_cross_entropy" else 0.0
    heads = two_heads("cross_entropy" if smoothing else loss, smoothing=smoothing)
    X, y = problem(heads)
    m = model(fastmlp.MLP, heads)
    w = np.random.default_rng(1).random(len(X)) + 0.2  # sample weights too
    flat = m.get_flat_params()
    grad = m.gradients(X, y, sample_weight=w)["flat"]
    eps, numeric = 1e-6, np.empty_like(flat)
    for i in range(len(flat)):
        losses = []
        for sign in (1, -1):
            p = flat.copy()
            p[i] += sign * eps
            m.set_flat_params(p)
            losses.append(m.gradients(X, y, sample_weight=w)["loss"])
        numeric[i] = (losses[0] - losses[1]) / (2 * eps)
    assert relative_error([grad], [numeric]) <= 1e-6


def test_objective_is_the_weighted_sum_of_the_heads_losses():
    heads = [Head("label", 5, "cross_entropy", 0.8), Head("size", 1, "mse", 0.25),
             Head("flags", 3, "binary_cross_entropy", 2.0)]
    X, y = problem(heads, n=31)
    m = model(fastmlp.MLP, heads)
    result = m.evaluate(X, y)
    z = m.predict_logits(X)
    lse = np.log(np.exp(z["label"]).sum(axis=1))
    expected = {  # each head's loss from its logits, written out
        "label": np.mean(lse - z["label"][np.arange(len(X)), y["label"]]),
        "size": np.mean((z["size"] - y["size"]) ** 2),
        "flags": np.mean(np.log1p(np.exp(z["flags"])) - z["flags"] * y["flags"]),
    }
    assert list(result["heads"]) == ["label", "size", "flags"]
    for name, value in expected.items():
        assert result["heads"][name]["loss"] == pytest.approx(value, rel=1e-10)
    total = sum(h.weight * expected[h.name] for h in heads)
    assert result["loss"] == pytest.approx(total, rel=1e-10)
    assert m.gradients(X, y)["loss"] == pytest.approx(total, rel=1e-10)
    assert result["accuracy"] is None
    assert result["heads"]["size"]["accuracy"] is None  # mse on real values
    accuracy = np.mean(z["label"].argmax(axis=1) == y["label"])
    assert result["heads"]["label"]["accuracy"] == pytest.approx(accuracy)


# -- engine against reference -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", HEAD_LOSSES)
def test_engine_matches_reference(dtype, loss):
    heads = two_heads(loss)
    X, y = problem(heads, n=37)
    eng, ref = model(fastmlp.MLP, heads, dtype), model(fastmlp.reference.MLP, heads, dtype)
    w = np.random.default_rng(2).random(len(X))
    ge, gr = eng.gradients(X, y, sample_weight=w), ref.gradients(X, y, sample_weight=w)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=TOL[dtype])
    assert ge["flat"].dtype == np.dtype(dtype)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) <= TOL[dtype]
    pe, pr = eng.predict(X), ref.predict(X)
    assert list(pe) == ["main", "aux"]
    for name in pe:
        assert relative_error([pe[name]], [pr[name]]) <= TOL[dtype]
    me, mr = eng.evaluate(X, y), ref.evaluate(X, y)
    assert me["loss"] == pytest.approx(mr["loss"], rel=TOL[dtype])
    assert me["heads"]["main"]["loss"] == pytest.approx(mr["heads"]["main"]["loss"],
                                                        rel=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_optimizer", [lambda: optim.SGD(0.05, momentum=0.9),
                                            lambda: optim.Adam(0.01)], ids=["sgd", "adam"])
def test_training_matches_reference(dtype, make_optimizer):
    heads = [Head("label", 4, "cross_entropy", 1.0), Head("value", 2, "mse", 0.5),
             Head("count", 1, "poisson", 0.3)]
    X, y = problem(heads, n=40)
    w = np.random.default_rng(4).random(len(X)) + 0.5
    hist = []
    for impl in (fastmlp.MLP, fastmlp.reference.MLP):
        m = model(impl, heads, dtype)
        hist.append((m, m.fit(X, y, epochs=3, batch_size=8, optimizer=make_optimizer(),
                              sample_weight=w)))
    (eng, he), (ref, hr) = hist
    tol = {"float64": 1e-9, "float32": 1e-4}[dtype]
    assert relative_error(eng.weights + eng.biases, ref.weights + ref.biases) <= tol
    assert np.allclose(he.loss, hr.loss, rtol=tol)
    assert he.loss[-1] < he.loss[0]


# -- PyTorch ------------------------------------------------------------------------------------
def _torch_pair(torch, m):
    """The torch twin of `m` (trunk [8, 16] relu, heads label (10, CE), size (1, MSE))."""
    layers = []
    for W, b in zip(m.weights, m.biases):
        lin = torch.nn.Linear(*W.shape, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
    return torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1])


def _torch_loss(torch, net, X, y):
    out = net(torch.from_numpy(X))
    ce = torch.nn.functional.cross_entropy(out[:, :10], torch.from_numpy(y["label"]))
    mse = torch.nn.functional.mse_loss(out[:, 10:], torch.from_numpy(y["size"]))
    return 1.0 * ce + 0.5 * mse


def _torch_setup():
    heads = [Head("label", 10, "cross_entropy", 1.0), Head("size", 1, "mse", 0.5)]
    rng = np.random.default_rng(7)
    X = rng.normal(size=(32, 8))
    y = {"label": rng.integers(0, 10, 32), "size": rng.normal(size=(32, 1))}
    m = fastmlp.MLP([8, 16], heads=heads, dtype="float64", seed=5)
    return m, X, y


def test_pytorch_loss_and_gradients_agree():
    torch = pytest.importorskip("torch")
    m, X, y = _torch_setup()
    net = _torch_pair(torch, m)
    loss = _torch_loss(torch, net, X, y)
    loss.backward()
    g = m.gradients(X, y)
    assert g["loss"] == pytest.approx(loss.item(), rel=1e-12)
    theirs = [net[0].weight.grad.T, net[2].weight.grad.T, net[0].bias.grad, net[2].bias.grad]
    assert relative_error(g["weights"] + g["biases"], [t.numpy() for t in theirs]) <= 1e-12


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_pytorch_training_steps_agree(name):
    torch = pytest.importorskip("torch")
    m, X, y = _torch_setup()
    net = _torch_pair(torch, m)
    if name == "sgd":
        ours, theirs = optim.SGD(0.1, momentum=0.9), torch.optim.SGD(net.parameters(), 0.1,
                                                                     momentum=0.9)
    else:
        ours, theirs = optim.Adam(0.01), torch.optim.Adam(net.parameters(), 0.01)
    for _ in range(5):  # full-batch steps in the data's order
        theirs.zero_grad()
        _torch_loss(torch, net, X, y).backward()
        theirs.step()
    m.fit(X, y, epochs=5, batch_size=len(X), shuffle=False, optimizer=ours)
    mine = m.weights + m.biases
    ref = [net[0].weight.detach().numpy().T, net[2].weight.detach().numpy().T,
           net[0].bias.detach().numpy(), net[2].bias.detach().numpy()]
    assert relative_error(mine, ref) <= 1e-10


# -- weights, threads ---------------------------------------------------------------------------
@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
def test_a_head_of_weight_zero_has_no_influence(impl):
    heads = [Head("label", 3, "cross_entropy", 1.0), Head("value", 2, "poisson", 0.0)]
    X, y = problem(heads, n=30)
    other = dict(y, value=y["value"] * 50 + 3)  # very different targets for the silent head
    runs = []
    for targets in (y, other):
        m = model(impl, heads)
        m.fit(X, targets, epochs=2, batch_size=7, optimizer=optim.Adam(0.01))
        runs.append(m.get_flat_params())
        g = m.gradients(X, targets)
        assert not np.any(g["weights"][-1][:, 3:]) and not np.any(g["biases"][-1][3:])
    assert np.array_equal(runs[0], runs[1])
    # the same model with that head's weight > 0 does depend on it
    loud = [heads[0], Head("value", 2, "poisson", 0.1)]
    a, b = model(impl, loud), model(impl, loud)
    a.fit(X, y, epochs=1, batch_size=7)
    b.fit(X, other, epochs=1, batch_size=7)
    assert not np.array_equal(a.get_flat_params(), b.get_flat_params())


def test_one_and_two_threads_give_bitwise_equal_training():
    heads = [Head("label", 10, "cross_entropy", 1.0), Head("size", 3, "mse", 0.5)]
    X, y = problem(heads, n=200, n_in=20)
    params = []
    for threads in (1, 2):
        m = fastmlp.MLP([20, 64, 48], heads=heads, seed=2, threads=threads)
        m.adaptive_threads = False
        m.fit(X, y, epochs=2, batch_size=32, optimizer=optim.Adam(0.01))
        params.append(m.get_flat_params())
    assert np.array_equal(params[0], params[1])


# -- API ----------------------------------------------------------------------------------------
def test_predict_outputs_per_head_and_targets_as_tuple():
    heads = {"label": Head("label", 4, "cross_entropy"),
             "on": Head("on", 2, "binary_cross_entropy"), "count": Head("count", 1, "poisson")}
    X, y = problem(list(heads.values()), n=25)
    m = model(fastmlp.MLP, heads, dtype="float32")
    assert m.heads == tuple(heads.values()) and m.layer_sizes == (5, 7, 7) and m.loss == "heads"
    out, logits = m.predict(X), m.predict_logits(X)
    assert list(out) == ["label", "on", "count"]
    assert np.allclose(out["label"].sum(axis=1), 1, atol=1e-6)
    assert np.allclose(out["on"], 1 / (1 + np.exp(-logits["on"].astype(np.float64))), atol=1e-6)
    assert np.allclose(out["count"], np.exp(logits["count"].astype(np.float64)), rtol=1e-6)
    labels = m.predict_labels(X)
    assert set(labels) == {"label", "on"}  # poisson has no classes
    assert np.array_equal(labels["label"], out["label"].argmax(axis=1))
    as_tuple = (y["label"], y["on"], y["count"])
    assert m.evaluate(X, as_tuple) == m.evaluate(X, y)
    score = m.score(X, y)
    assert set(score) == {"label", "on"}
    assert score["label"] == m.evaluate(X, y)["heads"]["label"]["accuracy"]


def test_fit_with_validation_early_stopping_and_callbacks():
    heads = [Head("label", 3, "cross_entropy"), Head("size", 1, "mse", 0.5)]
    X, y = problem(heads, n=80)
    seen = []
    m = model(fastmlp.MLP, heads)
    h = m.fit(X, y, epochs=4, batch_size=16, lr=0.05, validation_fraction=0.25,
              early_stopping=True, callbacks=[lambda model, history: seen.append(1)])
    assert len(seen) == len(h.loss) and all(v is not None for v in h.val_loss)
    assert all(a is None for a in h.accuracy)
    Xv, yv = problem(heads, n=20, seed=9)
    h = m.fit(X, y, epochs=1, validation_data=(Xv, yv))
    assert h.val_loss[-1] == pytest.approx(m.evaluate(Xv, yv)["loss"], rel=1e-12)
    with pytest.raises(ValueError, match="one per head: monitor 'val_loss'"):
        m.fit(X, y, epochs=1, validation_data=(Xv, yv), early_stopping=True,
              monitor="val_accuracy")


def test_what_heads_do_not_support_raises_clearly():
    heads = [Head("label", 3, "cross_entropy"), Head("size", 1, "mse")]
    X, y = problem(heads)
    m = model(fastmlp.MLP, heads)
    with pytest.raises(ValueError, match="heads"):
        m.hvp(X, y, np.zeros(m.get_flat_params().size))
    from fastmlp import export

    with pytest.raises(ValueError, match="multitask heads"):
        export.to_torch(m)
    with pytest.raises(ValueError, match="prior"):
        model(fastmlp.MLP, heads, bias_init="prior")
    with pytest.raises(ValueError, match="ensembles of models with multitask heads"):
        fastmlp.Ensemble([m, model(fastmlp.MLP, heads)])
    from test_distributed import SelfComm

    from fastmlp import distributed

    with pytest.raises(ValueError, match="distributed training does not support multitask"):
        distributed.fit(m, X, y, epochs=1, comm=SelfComm())  # (a one-rank comm: no MPI needed)


def test_gradient_solvers_train_and_curvature_solvers_refuse():
    heads = [Head("label", 3, "cross_entropy"), Head("size", 1, "mse", 0.5)]
    X, y = problem(heads, n=40)
    m = model(fastmlp.MLP, heads)
    h = solvers.lbfgs(m, X, y, iterations=10)
    assert h.loss[-1] < h.loss[0]
    assert h.loss[-1] == pytest.approx(m.evaluate(X, y)["loss"], rel=1e-10)
    with pytest.raises(ValueError, match="not implemented for heads"):
        solvers.hessian_free(m, X, y, iterations=2)


def test_sparse_input_and_layer_activations():
    sparse = pytest.importorskip("scipy.sparse")
    heads = [Head("label", 3, "cross_entropy"), Head("size", 2, "mse", 0.5)]
    X, y = problem(heads, n=30)
    X[np.abs(X) < 0.8] = 0
    m = model(fastmlp.MLP, heads)
    g_dense, g_sparse = m.gradients(X, y), m.gradients(sparse.csr_matrix(X), y)
    assert relative_error([g_dense["flat"]], [g_sparse["flat"]]) <= 1e-12
    m.fit(sparse.csr_matrix(X), y, epochs=1, batch_size=8)
    layers = m.activations(X)
    logits = m.predict_logits(X)
    assert np.allclose(layers[-1].post, np.hstack([logits["label"], logits["size"]]))


# -- model files --------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
def test_save_load_and_pickle_round_trip(tmp_path, impl):
    heads = [Head("label", 3, "cross_entropy", 0.9, 0.05), Head("size", 2, "mse", 0.5)]
    X, y = problem(heads)
    m = model(impl, heads, dtype="float32")
    m.fit(X, y, epochs=1, batch_size=8)
    path = tmp_path / "m.fmlp"
    m.save(path)
    for back in (fastmlp.load(path), pickle.loads(pickle.dumps(m))):
        assert type(back) is impl and back.heads == m.heads
        assert back.config() == m.config()
        for name, out in m.predict(X).items():
            assert np.array_equal(back.predict(X)[name], out)


def test_checkpoint_resume_equals_the_uninterrupted_run(tmp_path):
    heads = [Head("label", 3, "cross_entropy"), Head("size", 1, "mse", 0.5)]
    X, y = problem(heads, n=60)
    full, part, resumed = (model(fastmlp.MLP, heads) for _ in range(3))
    full.fit(X, y, epochs=4, batch_size=8, lr=0.05)
    part.fit(X, y, epochs=2, batch_size=8, lr=0.05, checkpoint=tmp_path / "run.ckpt")
    resumed.fit(X, y, epochs=4, batch_size=8, lr=0.05, resume_from=tmp_path / "run.ckpt")
    assert np.array_equal(resumed.get_flat_params(), full.get_flat_params())


@pytest.mark.parametrize("bad", [
    [{"name": "a", "size": 2**40, "loss": "mse"}],
    [{"name": "a", "size": -3, "loss": "mse"}],
    [{"name": "a", "size": "3", "loss": "mse"}],
    [{"name": "a", "size": 3, "loss": "mse", "weight": -1.0}],
    [{"name": "a", "size": 3, "loss": "nope"}],
    [{"name": "a", "size": 3, "unknown": 1}],
    [{"name": "a", "size": 3}, {"name": "a", "size": 3}],
    "a",
    [],
])
def test_model_file_with_bad_heads_is_refused(tmp_path, bad):
    heads = [Head("a", 3, "mse")]
    m = model(fastmlp.MLP, heads)
    config = dict(m.config(), heads=bad)
    path = tmp_path / "bad.fmlp"
    path.write_bytes(serialization.dumps("fastmlp.model.MLP", config, m._state_arrays()))
    with pytest.raises(ValueError, match="bad.fmlp"):
        fastmlp.load(path)


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("change,match", [
    (lambda t: t[:1], "have 4 outputs in all; the network has 6"),
    (lambda t: t[::-1], "cover the outputs in order"),
    (lambda t: _set(t, "loss", 9), "unknown head loss code"),
    (lambda t: _set(t, "weight", np.nan), "finite and >= 0"),
    (lambda t: _set(t, "label_smoothing", 2.0), r"label_smoothing must lie in \[0, 1\]"),
    (lambda t: _set(t, "labels", 0) if t["loss"][0] == 4 else _set(_set(t, "loss", 4), "labels",
                                                                    0), "must have them"),
    (lambda t: _set(_set(t, "loss", 5), "labels", 1), "class labels go with"),
])
def test_engine_checks_its_heads_table(change, match):
    from fastmlp import _engine
    from fastmlp.model.heads import head_table

    table = head_table(two_heads("cross_entropy"))
    with pytest.raises(ValueError, match=match):
        _engine.Engine([5, 7, 6], [2], 0.01, 2, "float64", 1, heads=change(table.copy()))


def _set(table, field, value):
    table[field][0] = value
    return table


def test_engine_curvature_products_refuse_heads():
    """The loss Hessian has one loss per output layer: the engine refuses heads itself
    (not only the model), rather than treat packed class indices as probabilities."""
    heads = two_heads("cross_entropy")
    m = model(fastmlp.MLP, heads)
    X, y = problem(heads)
    packed = m._targets(y, len(X))[1]
    with pytest.raises(ValueError, match="do not support multitask heads"):
        m._engine.curvature_product(X, None, packed, m.get_flat_params(), False)


@pytest.mark.parametrize("heads,error,match", [
    ([Head("a", 2), "b"], TypeError, "Head"),
    (5, TypeError, "sequence"),
    ([], ValueError, "at least one"),
    ({"a": Head("b", 2)}, ValueError, "names must agree"),
    ([Head("a", 2), Head("a", 3, "mse")], ValueError, "duplicate head names: 'a'"),
])
def test_bad_heads_raise(heads, error, match):
    with pytest.raises(error, match=match):
        fastmlp.MLP([4, 5], heads=heads)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"weight": -0.5}, ValueError, "weight must be finite and >= 0"),
    ({"weight": float("nan")}, ValueError, "weight must be finite"),
    ({"weight": float("inf")}, ValueError, "weight must be finite"),
    ({"weight": "1"}, TypeError, "weight must be a number"),
    ({"size": 0}, ValueError, "size must lie in"),
    ({"size": 2.0}, TypeError, "size must be an integer"),
    ({"loss": "nope"}, ValueError, "unknown loss"),
    ({"label_smoothing": 0.1, "loss": "mse"}, ValueError, "cross_entropy heads only"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing must lie in"),
    ({"name": ""}, TypeError, "non-empty string"),
])
def test_bad_head_fields_raise(kwargs, error, match):
    fields = {"name": "a", "size": 3, **kwargs}
    with pytest.raises(error, match=match):
        Head(**fields)


def test_loss_with_heads_is_refused():
    with pytest.raises(ValueError, match="takes no loss"):
        fastmlp.MLP([4, 5], loss="mse", heads=[Head("a", 2)])


@pytest.mark.parametrize("change,error,match", [
    (lambda y: {"label": y["label"]}, ValueError, r"no targets for the heads \['size'\]"),
    (lambda y: dict(y, other=y["size"]), ValueError, r"unknown heads \['other'\]"),
    (lambda y: (y["label"],), ValueError, "1 entries; the model has 2 heads"),
    (lambda y: y["label"], TypeError, "dict head name"),
    (lambda y: dict(y, label=y["label"] + 3), ValueError, "head 'label': labels must lie in"),
    (lambda y: dict(y, label=y["label"][:-1]), ValueError, "head 'label'.*different lengths"),
    (lambda y: dict(y, size=np.ones((len(y["size"]), 2))), ValueError, "head 'size'.*columns"),
    (lambda y: dict(y, size=y["size"] * np.nan), ValueError, "head 'size'.*NaN"),
    (lambda y: dict(y, label=np.eye(3)[y["label"]]), ValueError, "kl_divergence"),
])
@pytest.mark.parametrize("impl", [fastmlp.MLP, fastmlp.reference.MLP])
def test_bad_targets_raise(impl, change, error, match):
    heads = [Head("label", 3, "cross_entropy"), Head("size", 1, "mse")]
    X, y = problem(heads)
    m = model(impl, heads)
    before = m.get_flat_params()
    for call in (lambda: m.fit(X, change(y), epochs=1), lambda: m.evaluate(X, change(y))):
        with pytest.raises(error, match=match):
            call()
    assert np.array_equal(m.get_flat_params(), before)


def test_engine_keeps_its_own_copy_of_the_checked_heads_table():
    """The Engine checks a heads table once, so it keeps a copy of its own: the caller's
    array, made writeable again and changed after the check, made fm_loss_heads read and
    write past the logits (a segfault in evaluate)."""
    from fastmlp._engine import HEAD_DTYPE, Engine

    t = np.array([(0, 3, 0, 1, 1.0, 0.0), (3, 2, 2, 0, 1.0, 0.0)], dtype=HEAD_DTYPE)
    e = Engine([4, 5], [], 0.01, 2, np.float64, 1, heads=t)
    assert not np.shares_memory(e.heads, t) and not e.heads.flags.writeable
    t["width"] = 1000
    assert e.heads["width"].tolist() == [3, 2]
