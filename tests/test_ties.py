"""Tied weights (parameter sharing): a layer that uses another layer's weight matrix, as it
is or transposed. Gradient-checked in float64 by central differences, the engine against
the NumPy reference, both against PyTorch reusing one Parameter; thread-count
independence, the model file, and the errors for ties that cannot work."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import Tie, distributed, serialization
from fastmlp.optim import SGD, Adam

TOL = {"float64": 1e-10, "float32": 1e-4}
AUTOENCODER = {"layer_sizes": [6, 3, 6], "activation": "sigmoid", "loss": "mse",
               "ties": {1: (0, "transpose")}}
# one square matrix W in three layers: layers 1, 2 and 3 of [3, 5, 5, 5, 5, 2]
REPEATED = {"layer_sizes": [3, 5, 5, 5, 5, 2], "activation": "tanh", "loss": "cross_entropy",
            "ties": [Tie(2, 1), Tie(3, 1)]}
# widths past the engine's 32 x 32 transpose tiles, with tails
WIDE = {"layer_sizes": [37, 70, 37], "activation": "relu", "loss": "mse",
        "ties": {1: (0, "transpose")}}
BACKENDS = [fastmlp.MLP, fastmlp.reference.MLP]


def problem(case, n=12, seed=0):
    rng = np.random.default_rng(seed)
    sizes = case["layer_sizes"]
    X = rng.normal(size=(n, sizes[0]))
    if case["loss"] == "mse":
        return X, rng.uniform(size=(n, sizes[-1]))
    return X, rng.integers(0, sizes[-1], size=n)


def make(cls, case, dtype="float64", **kw):
    return cls(**case, dtype=dtype, seed=kw.pop("seed", 3), bias_init=0.1, **kw)


def assert_close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.abs(a - b).max() <= TOL[dtype] * max(np.abs(b).max(), 1e-30)


# -- declaring ties -----------------------------------------------------------------------------
def test_a_tied_layer_reads_its_source_from_the_start():
    for cls in BACKENDS:
        ae = make(cls, AUTOENCODER)
        np.testing.assert_array_equal(ae.weights[1], ae.weights[0].T)
        assert ae.ties == (Tie(1, 0, True),)
        rep = make(cls, REPEATED)
        np.testing.assert_array_equal(rep.weights[2], rep.weights[1])
        np.testing.assert_array_equal(rep.weights[3], rep.weights[1])
        assert not np.array_equal(rep.weights[1], np.zeros((5, 5)))


def test_the_three_ways_to_declare_a_tie_are_the_same_model():
    a = fastmlp.MLP([4, 2, 4], ties={1: (0, "transpose")}, seed=1)
    b = fastmlp.MLP([4, 2, 4], ties={1: (0, True)}, seed=1)
    c = fastmlp.MLP([4, 2, 4], ties=[Tie(layer=1, source=0, transpose=True)], seed=1)
    d = fastmlp.MLP([4, 2, 4], ties=[[1, 0, True]], seed=1)
    for m in (b, c, d):
        assert m.ties == a.ties
        np.testing.assert_array_equal(m.get_flat_params(), a.get_flat_params())
    assert a.config()["ties"] == [[1, 0, True]]
    # an untied model's config (and file) has no "ties" key: versions older than tied
    # weights read it, and a file without the key loads untied
    untied = fastmlp.MLP([4, 2, 4], seed=1)
    assert "ties" not in untied.config()
    assert fastmlp.MLP(**untied.config()).ties == untied.ties


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("ties,error,match", [
    ({1: 0}, ValueError, r"shape \(3, 6\).*\(6, 3\)"),  # needs the transpose
    ({0: (1, "transpose"), 1: (0, "transpose")}, ValueError, "itself tied"),  # a cycle
    ({1: 1}, ValueError, "cannot be tied to itself"),
    ({2: (0, "transpose")}, ValueError, "layer 2 is not a dense layer"),
    ({1: (-1, "transpose")}, ValueError, "source -1 is not a dense layer"),
    ([Tie(1, 0, True), Tie(1, 0, True)], ValueError, "tied more than once"),
    ({1: (0, "transposed")}, TypeError, "'transpose' or a bool"),
    ({1: (0, "transpose", 1)}, TypeError, "source layer or"),
    ({1.0: 0}, TypeError, "layer must be an int"),
    ({1: True}, TypeError, "source must be an int"),
    ([(1, 0)], TypeError, "triple"),
    ("1:0", TypeError, "ties must be"),
])
def test_bad_ties_raise_clear_errors(cls, ties, error, match):
    with pytest.raises(error, match=match):
        cls([6, 3, 6], ties=ties)


def test_chains_and_cycles_are_refused():
    with pytest.raises(ValueError, match="layer 1 is itself tied"):
        fastmlp.MLP([4, 4, 4, 4], ties={1: 0, 2: 1})
    with pytest.raises(ValueError, match="itself tied"):
        fastmlp.MLP([4, 4, 4], ties={0: 1, 1: 0})


def test_the_engine_checks_ties_at_its_own_boundary():
    from fastmlp._engine import Engine
    with pytest.raises(ValueError, match="invalid weight ties"):
        Engine([6, 3, 6], [1], 0.0, 2, "float64", 1, ties=[(1, 0, False)])
    with pytest.raises(ValueError, match="outside"):
        Engine([6, 3, 6], [1], 0.0, 2, "float64", 1, ties=[(2, 0, True)])


# -- gradients ------------------------------------------------------------------------------------
def central_differences(model, X, y, eps=1e-6, **penalties):
    flat = model.get_flat_params()
    out = np.zeros_like(flat)
    for k in range(flat.size):
        values = []
        for sign in (1, -1):
            p = flat.copy()
            p[k] += sign * eps
            model.set_flat_params(p)  # a tied layer's entries are ignored: its source rules
            values.append(model.gradients(X, y, **penalties)["loss"])
        out[k] = (values[0] - values[1]) / (2 * eps)
    model.set_flat_params(flat)
    return out


@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("case", [AUTOENCODER, REPEATED], ids=["autoencoder", "repeated"])
def test_gradient_of_the_shared_parameters_matches_central_differences(cls, case):
    X, y = problem(case)
    model = make(cls, case)
    penalties = {"l2": 0.03, "l1": 0.01, "penalize_biases": True}
    g = model.gradients(X, y, **penalties)
    numeric = central_differences(model, X, y, **penalties)
    err = np.linalg.norm(g["flat"] - numeric) / np.linalg.norm(numeric)
    assert err < 1e-6
    for t in model.ties:  # the uses' gradients are in the source's entry
        assert not g["weights"][t.layer].any()
        assert np.abs(g["weights"][t.source]).max() > 1e-3


@pytest.mark.parametrize("cls", BACKENDS)
def test_l2_penalizes_the_shared_matrix_once(cls):
    X, y = problem(REPEATED)
    model = make(cls, REPEATED)
    plain, pen = model.gradients(X, y), model.gradients(X, y, l2=0.5)
    W = model.weights
    expected = 0.25 * sum(float(np.sum(W[l] ** 2)) for l in (0, 1, 4))
    assert abs(pen["loss"] - plain["loss"] - expected) < 1e-12
    for l in (0, 1, 4):
        np.testing.assert_allclose(pen["weights"][l] - plain["weights"][l], 0.5 * W[l],
                                   atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", [AUTOENCODER, REPEATED, WIDE],
                         ids=["autoencoder", "repeated", "wide"])
def test_engine_matches_the_reference_in_loss_gradients_and_training(dtype, case):
    X, y = problem(case, n=20)
    eng, ref = make(fastmlp.MLP, case, dtype), make(fastmlp.reference.MLP, case, dtype)
    ge, gr = eng.gradients(X, y, l2=0.01), ref.gradients(X, y, l2=0.01)
    assert abs(ge["loss"] - gr["loss"]) <= TOL[dtype] * abs(gr["loss"])
    assert_close(ge["flat"], gr["flat"], dtype)
    for opt in (lambda: SGD(lr=0.1, momentum=0.9, weight_decay=1e-3),
                lambda: Adam(lr=0.01)):
        he = eng.fit(X, y, epochs=2, batch_size=8, optimizer=opt(), l2=1e-3,
                     clip_grad_norm=1.0, record="step", record_grad_norms=True)
        hr = ref.fit(X, y, epochs=2, batch_size=8, optimizer=opt(), l2=1e-3,
                     clip_grad_norm=1.0, record="step", record_grad_norms=True)
        assert_close(he.step_loss, hr.step_loss, dtype)
        assert_close(eng.get_flat_params(), ref.get_flat_params(), dtype)
        assert_close(he.step_grad_norm, hr.step_grad_norm, dtype)
    for model in (eng, ref):
        for t in model.ties:  # the copies followed every update
            W = model.weights[t.source]
            np.testing.assert_array_equal(model.weights[t.layer], W.T if t.transpose else W)


def test_grad_norms_put_the_shared_gradient_at_the_source():
    X, y = problem(REPEATED)
    model = make(fastmlp.MLP, REPEATED)
    h = model.fit(X, y, epochs=1, batch_size=12, record="step", record_grad_norms=True,
                  optimizer=SGD(lr=0.1))
    norms = np.asarray(h.step_grad_norm)[0]
    g = make(fastmlp.MLP, REPEATED).gradients(X, y)["weights"]
    np.testing.assert_allclose(norms, [np.linalg.norm(w) for w in g], rtol=1e-5)
    assert norms[2] == norms[3] == 0 and norms[1] > 0


def test_results_do_not_depend_on_the_thread_count():
    case = {"layer_sizes": [96, 160, 96], "activation": "relu", "loss": "mse",
            "ties": {1: (0, "transpose")}}
    X, y = problem(case, n=128, seed=4)
    out = []
    for threads in (1, 2):
        model = make(fastmlp.MLP, case, "float32", threads=threads)
        model.adaptive_threads = False
        model.fit(X, y, epochs=2, batch_size=64, optimizer=Adam(lr=1e-3), l2=1e-4)
        out.append((model.get_flat_params(), model.gradients(X, y)["flat"]))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


# -- PyTorch: one Parameter used by several layers ------------------------------------------------
def torch_forward(torch, case, ties, Ws, bs, X):
    """The logits of `case` in PyTorch: layer l multiplies by Ws[owner] (transposed where
    tied so), Ws holding torch-layout (out, in) parameters of the owning layers."""
    F = torch.nn.functional
    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}[case["activation"]]
    ties = {t.layer: t for t in ties}
    h = X
    for l in range(len(case["layer_sizes"]) - 1):
        t = ties.get(l)
        W = Ws[l] if t is None else (Ws[t.source].t() if t.transpose else Ws[t.source])
        h = F.linear(h, W, bs[l])
        if l < len(case["layer_sizes"]) - 2:
            h = act(h)
    return h


@pytest.mark.parametrize("case", [
    {"layer_sizes": [20, 8, 20], "activation": "sigmoid", "loss": "mse",
     "ties": {1: (0, "transpose")}},
    REPEATED], ids=["autoencoder", "repeated"])
def test_pytorch_reusing_one_parameter_agrees(case):
    torch = pytest.importorskip("torch")
    X, y = problem(case, n=16, seed=2)
    model = make(fastmlp.MLP, case)
    tied = {t.layer for t in model.ties}
    Ws = {l: torch.tensor(W.T.copy(), requires_grad=True)
          for l, W in enumerate(model.weights) if l not in tied}
    bs = [torch.tensor(b.copy(), requires_grad=True) for b in model.biases]
    Xt = torch.tensor(X)
    if case["loss"] == "mse":
        criterion, target = torch.nn.MSELoss(), torch.tensor(y)
    else:
        criterion, target = torch.nn.CrossEntropyLoss(), torch.tensor(y)
    loss = criterion(torch_forward(torch, case, model.ties, Ws, bs, Xt), target)
    loss.backward()
    g = model.gradients(X, y)
    assert abs(g["loss"] - loss.item()) < 1e-12
    for l, W in Ws.items():
        np.testing.assert_allclose(g["weights"][l], W.grad.numpy().T, rtol=1e-10, atol=1e-14)
    for l, b in enumerate(bs):
        np.testing.assert_allclose(g["biases"][l], b.grad.numpy(), rtol=1e-10, atol=1e-14)
    # four full-batch Adam steps with L2 (weight_decay), one state per parameter
    opt = torch.optim.Adam(list(Ws.values()) + bs, lr=0.01, weight_decay=0.01)
    for _ in range(4):
        opt.zero_grad()
        criterion(torch_forward(torch, case, model.ties, Ws, bs, Xt), target).backward()
        opt.step()
    model.fit(X, y, epochs=4, batch_size=len(X), shuffle=False,
              optimizer=Adam(lr=0.01, weight_decay=0.01))
    for l, W in Ws.items():
        np.testing.assert_allclose(model.weights[l], W.detach().numpy().T, rtol=1e-9,
                                   atol=1e-12)
    for l, b in enumerate(bs):
        np.testing.assert_allclose(model.biases[l], b.detach().numpy(), rtol=1e-9,
                                   atol=1e-12)
    for l in tied:
        assert not np.array_equal(model.weights[l], make(fastmlp.MLP, case).weights[l])


# -- setting weights, files, other features ------------------------------------------------------
@pytest.mark.parametrize("cls", BACKENDS)
def test_setting_the_source_writes_through_and_a_tied_layer_alone_is_refused(cls):
    ae = make(cls, AUTOENCODER)
    W, b = ae.get_params()
    W[0] = W[0] + 1
    ae.set_params(W, b)  # the tied entry left as it was: it follows the new source
    np.testing.assert_array_equal(ae.weights[1], W[0].T)
    W = ae.weights
    W[1] = W[1] * 2
    with pytest.raises(ValueError, match="tied to layer 0's .transposed.: set layer 0"):
        ae.set_params(W, b)
    np.testing.assert_array_equal(ae.weights[1], ae.weights[0].T)
    flat = ae.get_flat_params()
    w0, b0 = ae._layout[1][:2]
    flat[w0:b0] = 7.0  # set_flat_params ignores a tied layer's entries
    ae.set_flat_params(flat)
    np.testing.assert_array_equal(ae.weights[1], ae.weights[0].T)


def test_model_file_and_pickle_round_trip(tmp_path):
    import pickle
    X, y = problem(AUTOENCODER)
    model = make(fastmlp.MLP, AUTOENCODER, "float32")
    model.fit(X, y, epochs=2, batch_size=4, optimizer=Adam(lr=0.01))
    path = tmp_path / "ae.fastmlp"
    model.save(path)
    for back in (fastmlp.load(path), pickle.loads(pickle.dumps(model))):
        assert back.ties == model.ties
        np.testing.assert_array_equal(back.get_flat_params(), model.get_flat_params())
        np.testing.assert_array_equal(back.predict(X), model.predict(X))
        back.fit(X, y, epochs=1, batch_size=4, shuffle=False, optimizer=Adam(lr=0.01))
        np.testing.assert_array_equal(back.weights[1], back.weights[0].T)


@pytest.mark.parametrize("ties,match", [
    ([[1, 0, False]], "invalid model configuration: tie"),
    ([[1, 5, True]], "invalid model configuration: tie"),
    ([[1, "0", True]], "invalid model configuration: a tie's source"),
    ({"1": 0}, "invalid model configuration: a tie's layer"),
])
def test_a_model_file_with_bad_ties_is_refused(tmp_path, ties, match):
    model = make(fastmlp.MLP, AUTOENCODER)
    config = dict(model.config(), ties=ties)
    path = tmp_path / "bad.fastmlp"
    serialization.write_atomic(path, serialization.dumps(model._kind(), config,
                                                         model._state_arrays()))
    with pytest.raises(ValueError, match=match):
        fastmlp.load(path)


def test_a_model_file_with_ties_and_a_pruning_mask_is_refused(tmp_path):
    model = make(fastmlp.MLP, AUTOENCODER)
    arrays = dict(model._state_arrays(), prune_mask=np.ones(model._n_params))
    path = tmp_path / "bad.fastmlp"
    serialization.write_atomic(path, serialization.dumps(model._kind(), model.config(),
                                                         arrays))
    with pytest.raises(ValueError, match="pruning mask for a model with tied weights"):
        fastmlp.load(path)


def test_what_ties_do_not_support_is_refused_clearly():
    ae = make(fastmlp.MLP, AUTOENCODER)
    with pytest.raises(ValueError, match="pruning: not implemented for models with tied"):
        ae.prune(0.5)
    with pytest.raises(ValueError, match="first layer's weights, which are tied"):
        ae.fold_input_scaling(np.zeros(6), np.ones(6))


# -- curvature in the shared parameters ------------------------------------------------------------
@pytest.mark.parametrize("cls", BACKENDS)
@pytest.mark.parametrize("case", [AUTOENCODER, REPEATED], ids=["autoencoder", "repeated"])
def test_hvp_and_jvp_are_derivatives_in_the_shared_parameters(cls, case):
    X, y = problem(case)
    model = make(cls, case)
    flat = model.get_flat_params()
    v = np.random.default_rng(1).normal(size=flat.size)
    eps, l2 = 1e-5, 0.1
    sides = []
    for sign in (1, -1):
        model.set_flat_params(flat + sign * eps * v)  # tied entries of v ignored
        sides.append((model.gradients(X, y, l2=l2)["flat"], model.predict_logits(X)))
    model.set_flat_params(flat)
    hv = model.hvp(X, y, v, l2=l2)
    numeric = (sides[0][0] - sides[1][0]) / (2 * eps)
    assert np.linalg.norm(hv - numeric) <= 1e-6 * np.linalg.norm(numeric)
    jv = model.jvp(X, v)
    numeric = (sides[0][1] - sides[1][1]) / (2 * eps)
    assert np.linalg.norm(jv - numeric) <= 1e-6 * np.linalg.norm(numeric)
    for t in model.ties:
        w0, b0 = model._layout[t.layer][:2]
        assert not hv[w0:b0].any()


def test_engine_curvature_matches_the_reference_with_ties():
    X, y = problem(REPEATED)
    eng, ref = make(fastmlp.MLP, REPEATED), make(fastmlp.reference.MLP, REPEATED)
    v = np.random.default_rng(2).normal(size=eng.get_flat_params().size)
    assert_close(eng.gnvp(X, y, v, l2=0.1), ref.gnvp(X, y, v, l2=0.1), "float64")
    H = eng.hessian(X, y, l2=0.1)
    np.testing.assert_allclose(H @ v, eng.hvp(X, y, v, l2=0.1), rtol=1e-9, atol=1e-12)


def test_torch_export_materializes_the_shared_weights():
    pytest.importorskip("torch")
    from fastmlp.export import to_torch
    X, _ = problem(AUTOENCODER)
    model = make(fastmlp.MLP, AUTOENCODER)
    module = to_torch(model)
    import torch
    with torch.no_grad():
        out = module(torch.tensor(X)).numpy()
    np.testing.assert_allclose(out, model.predict_logits(X), rtol=1e-12, atol=1e-14)


def test_distributed_one_block_per_batch_is_the_plain_fit():
    from test_distributed import SelfComm
    X, y = problem(REPEATED, n=48)
    a, b = make(fastmlp.MLP, REPEATED), make(fastmlp.MLP, REPEATED)
    kw = {"epochs": 2, "batch_size": 16, "l2": 1e-3}
    a.fit(X, y, optimizer=Adam(lr=0.01), **kw)
    distributed.fit(b, X, y, block_size=16, comm=SelfComm(), optimizer=Adam(lr=0.01), **kw)
    np.testing.assert_array_equal(b.get_flat_params(), a.get_flat_params())
    np.testing.assert_array_equal(b.weights[3], b.weights[1])


def test_the_hessian_operator_acts_in_the_shared_parameters():
    pytest.importorskip("scipy")
    from fastmlp.curvature import hessian_operator
    X, y = problem(AUTOENCODER)
    model = make(fastmlp.MLP, AUTOENCODER)
    v = np.random.default_rng(3).normal(size=model.get_flat_params().size)
    np.testing.assert_allclose(hessian_operator(model, X, y, l2=0.1) @ v,
                               model.hvp(X, y, v, l2=0.1), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("solver", ["lbfgs", "hessian_free", "newton"])
def test_the_solvers_train_in_the_shared_parameters(solver):
    pytest.importorskip("scipy")
    from fastmlp import solvers
    X, y = problem(AUTOENCODER, n=30)
    model = make(fastmlp.MLP, AUTOENCODER)
    before = model.gradients(X, y, l2=1e-3)
    getattr(solvers, solver)(model, X, y, iterations=5, l2=1e-3)
    after = model.gradients(X, y, l2=1e-3)
    assert after["loss"] < before["loss"] - 1e-3
    np.testing.assert_array_equal(model.weights[1], model.weights[0].T)
    # the shared matrix moved as one parameter: its gradient (the sum of both uses') shrank
    assert np.linalg.norm(after["weights"][0]) < np.linalg.norm(before["weights"][0])


def test_safetensors_keep_the_ties_and_refuse_a_tied_layer_that_disagrees(tmp_path,
                                                                          monkeypatch):
    from fastmlp.export import load_safetensors, save_safetensors
    X, _ = problem(AUTOENCODER)
    model = make(fastmlp.MLP, AUTOENCODER, "float32")
    path = tmp_path / "ae.safetensors"
    save_safetensors(model, path)
    back = load_safetensors(path)
    assert back.ties == model.ties
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    # a crafted file: tied in its configuration, other weights in the tied layer
    untied = fastmlp.MLP([6, 3, 6], activation="sigmoid", loss="mse", seed=1)
    config = dict(untied.config(), ties=[[1, 0, True]])
    monkeypatch.setattr(untied, "config", lambda: config)
    save_safetensors(untied, path)
    with pytest.raises(ValueError, match="tied to layer 0's"):
        load_safetensors(path)
    # the same crafted content as a model file and as a pickle: refused too (it was loaded
    # with the tied layer silently replaced by its source's weights)
    fmlp = tmp_path / "ae.fmlp"
    serialization.write_atomic(fmlp, serialization.dumps(untied._kind(), config,
                                                         untied._state_arrays()))
    with pytest.raises(ValueError, match="layer 1's weights differ from those of the layer "
                                         "they are tied to layer 0's"):
        fastmlp.load(fmlp)
    with pytest.raises(ValueError, match="differ from those"):
        pickle.loads(pickle.dumps(untied))
    model.save(fmlp)  # a real tied model's file loads
    np.testing.assert_array_equal(fastmlp.load(fmlp).predict(X), model.predict(X))


def test_ties_and_heads_together_match_the_reference():
    """A tied output layer feeding multitask heads: the engine's objective, gradients and an
    Adam step equal the reference's (both features fold into the same step)."""
    from fastmlp import Head

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8))
    y = {"a": rng.integers(0, 4, 50), "b": X[:, :4]}
    models = [impl([8, 8], heads=[Head("a", 4), Head("b", 4, "mse", weight=0.5)],
                   ties={1: (0, "transpose")}, dtype="float64", seed=0)
              for impl in (fastmlp.MLP, fastmlp.reference.MLP)]
    grads = [m.gradients(X, y) for m in models]
    assert grads[0]["loss"] == pytest.approx(grads[1]["loss"], rel=1e-12)
    np.testing.assert_allclose(grads[0]["flat"], grads[1]["flat"], rtol=1e-10, atol=1e-12)
    for m in models:
        m.fit(X, y, epochs=2, batch_size=16, optimizer=fastmlp.optim.Adam(lr=1e-2))
    np.testing.assert_allclose(models[0].get_flat_params(), models[1].get_flat_params(),
                               rtol=1e-9, atol=1e-12)
    W = models[0].weights
    np.testing.assert_array_equal(W[1], W[0].T)
