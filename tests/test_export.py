"""fastmlp.export: ONNX (checked by onnxruntime), PyTorch modules, safetensors files."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest

import fastmlp
from fastmlp import export

from conftest import ACTIVATIONS, LOSSES, make_targets

BN = [False, "before", "after"]


def trained_model(activation, loss, batch_norm, dtype="float32", dropout_mode="inverted",
                  seed=0):
    """A small model with non-trivial parameters and batch-norm statistics."""
    rng = np.random.default_rng(seed)
    sizes = [6, 9, 7, 4]
    m = fastmlp.MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=seed,
                    batch_norm=batch_norm, input_dropout=0.1, dropout=0.2,
                    dropout_mode=dropout_mode, leaky_slope=0.05)
    X = rng.normal(size=(64, sizes[0]))
    m.fit(X, make_targets(loss, 64, sizes[-1], rng), epochs=2, batch_size=16,
          lr=0.005 if loss == "poisson" else 0.05)  # (exp outputs: a gentler rate)
    return m, rng.normal(size=(33, sizes[0])).astype(dtype)


# -- inference form --------------------------------------------------------------------------------
@pytest.mark.parametrize("bn,mode", list(itertools.product(BN, ["inverted", "classic"])))
def test_inference_layers_compute_the_logits(bn, mode):
    m, X = trained_model("tanh", "mse", bn, "float64", mode)
    x = X.astype(np.float64)
    for W, b, act in export.inference_layers(m):
        x = fastmlp.reference.functional.activation(act, x @ W + b, m.leaky_slope)
    np.testing.assert_allclose(x, m.predict_logits(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bn,mode", list(itertools.product(BN, ["inverted", "classic"])))
def test_exports_carry_the_model_input_transform(tmp_path, bn, mode):
    """A model's input_scale/input_shift (applied by predict to raw inputs) is folded into
    the exported first layer: inference_layers, ONNX and PyTorch give predict's logits on
    raw inputs, with classic input dropout's (1 - p) on the shift too. (The export ignored
    the transform: off by ~5 on this model.)"""
    rng = np.random.default_rng(4)
    m = fastmlp.MLP([6, 9, 4], seed=1, dtype="float64", batch_norm=bn,
                    input_scale=rng.random(6) + 0.5, input_shift=-2.0, input_dropout=0.3,
                    dropout_mode=mode)
    m.fit(rng.normal(size=(64, 6)) * 3 + 5, rng.integers(0, 4, 64), epochs=2,
          batch_size=16)
    X = rng.normal(size=(20, 6)) * 3 + 5
    x = X
    for W, b, act in export.inference_layers(m):
        x = fastmlp.reference.functional.activation(act, x @ W + b, m.leaky_slope)
    np.testing.assert_allclose(x, m.predict_logits(X), rtol=1e-12, atol=1e-12)
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    export.to_onnx(m, tmp_path / "m.onnx", logits=True)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"X": X})[0], m.predict_logits(X), rtol=1e-12,
                               atol=1e-12)
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        out = export.to_torch(m)(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, m.predict_logits(X), rtol=1e-12, atol=1e-12)


# -- ONNX ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation,loss,bn", list(itertools.product(ACTIVATIONS, LOSSES, BN)))
def test_onnx_matches_predict(tmp_path, activation, loss, bn):
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    m, X = trained_model(activation, loss, bn, dropout_mode="classic" if bn == "after"
                         else "inverted")
    path = tmp_path / "m.onnx"
    export.to_onnx(m, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"X": X})
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, m.predict(X), rtol=2e-5, atol=2e-6)


def test_onnx_float64_and_logits(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    m, X = trained_model("relu", "cross_entropy", "before", "float64")
    export.to_onnx(m, tmp_path / "m.onnx", logits=True)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"X": X})
    np.testing.assert_allclose(out, m.predict_logits(X), rtol=1e-12, atol=1e-12)


def test_onnx_rejects_bad_arguments(tmp_path):
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    m, _ = trained_model("relu", "mse", False)
    with pytest.raises(ValueError, match="opset"):
        export.to_onnx(m, tmp_path / "m.onnx", opset=9)
    with pytest.raises(TypeError, match="fastmlp model"):
        export.to_onnx("model", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# -- PyTorch -------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation,bn,mode",
                         list(itertools.product(ACTIVATIONS, BN, ["inverted", "classic"])))
def test_to_torch_is_exact_in_float64(activation, bn, mode):
    torch = pytest.importorskip("torch")
    m, X = trained_model(activation, "cross_entropy", bn, "float64", mode)
    module = export.to_torch(m)
    assert not module.training
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, m.predict_logits(X), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation,bn", list(itertools.product(ACTIVATIONS, BN)))
def test_from_torch_round_trip(activation, bn):
    pytest.importorskip("torch")
    m, X = trained_model(activation, "binary_cross_entropy", bn, "float64")
    back = export.from_torch(export.to_torch(m), loss="binary_cross_entropy")
    assert back.layer_sizes == m.layer_sizes and back.batch_norm == m.batch_norm
    assert back.dropout == pytest.approx(m.dropout)
    np.testing.assert_array_equal(back.get_flat_params(), m.get_flat_params())
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_from_a_hand_built_sequential_trains_like_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Dropout(0.25), torch.nn.Linear(8, 3),
                              torch.nn.Softmax(dim=1)).double().eval()
    m = export.from_torch(seq)
    assert m.batch_norm == ["before"] and m.dropout == [0.0, 0.25] and m.dtype == np.float64
    X = np.random.default_rng(1).normal(size=(10, 5))
    with torch.no_grad():
        expected = seq(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.predict(X), expected, rtol=1e-12)


@pytest.mark.parametrize("modules,match", [
    (lambda nn: [nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2)], "activation"),
    (lambda nn: [nn.Linear(3, 4), nn.ReLU()], "end with a Linear"),
    (lambda nn: [nn.Linear(3, 4), nn.Linear(5, 2)], "chain"),
    (lambda nn: [nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)], "GELU is not supported"),
    (lambda nn: [nn.ReLU()], "activation must follow"),
    (lambda nn: [nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.1), nn.BatchNorm1d(4),
                 nn.Linear(4, 2)], "BatchNorm1d must follow"),
])
def test_from_torch_rejects_what_it_cannot_express(modules, match):
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=match):
        export.from_torch(torch.nn.Sequential(*modules(torch.nn)))
    with pytest.raises(TypeError, match="Sequential"):
        export.from_torch(torch.nn.Linear(2, 2))


# -- safetensors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,bn", list(itertools.product(["float32", "float64"], BN)))
def test_safetensors_round_trip_is_bitwise(tmp_path, dtype, bn):
    m, X = trained_model("relu", "cross_entropy", bn, dtype)
    path = tmp_path / "m.safetensors"
    export.save_safetensors(m, path)
    back = export.load_safetensors(path)
    assert back.config() == m.config()
    np.testing.assert_array_equal(back.get_flat_params(), m.get_flat_params())
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_safetensors_files_are_read_by_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m, _ = trained_model("tanh", "mse", "after")
    export.save_safetensors(m, tmp_path / "m.safetensors")
    tensors = st.load_file(str(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(tensors["dense.0.weight"], m.weights[0])
    np.testing.assert_array_equal(tensors["batch_norm.1.running_var"],
                                  m.batch_norm_state()[1]["running_var"])


def test_safetensors_from_the_safetensors_package_need_a_config(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"w": np.ones((2, 2), np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="no fastmlp configuration"):
        export.load_safetensors(tmp_path / "x.safetensors")


def test_safetensors_truncated_or_corrupted_files_raise_value_errors(tmp_path):
    m, _ = trained_model("relu", "mse", "before")
    path = tmp_path / "m.safetensors"
    export.save_safetensors(m, path)
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in list(range(0, 64)) + list(range(64, len(data), 97)):
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            export.load_safetensors(bad)
    bad.write_bytes(struct.pack("<Q", 1 << 60) + data[8:])  # a header size beyond the file
    with pytest.raises(ValueError, match="exceeds the file"):
        export.load_safetensors(bad)
    (size,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + size].replace(b'"shape":[6,9]', b'"shape":[6,90]')
    bad.write_bytes(data[:8] + header + data[8 + size :])
    with pytest.raises(ValueError, match="do not fit"):
        export.load_safetensors(bad)
