"""The distribution losses and label smoothing outside training: model files, export and
the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import export

EXE = shutil.which("fastmlp")


def run(*args):
    cmd = [EXE] if EXE else [sys.executable, "-m", "fastmlp.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=300)


def class_table(path, n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,label", comments="")
    return X, y


@pytest.mark.parametrize("loss", ["kl_divergence", "symmetric_kl", "bhattacharyya"])
def test_distribution_losses_save_load_and_export_the_softmax(tmp_path, loss):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 4))
    t = rng.dirichlet(np.ones(3), size=20)
    model = fastmlp.MLP([4, 6, 3], loss=loss, dtype="float64", seed=2)
    model.fit(X, t, epochs=2, lr=0.1)
    model.save(tmp_path / "m.fmlp")
    back = fastmlp.load(tmp_path / "m.fmlp")
    assert back.loss == loss
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert back.evaluate(X, t) == model.evaluate(X, t)
    torch = pytest.importorskip("torch")
    module = export.to_torch(model)
    with torch.no_grad():
        logits = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(logits, model.predict_logits(X), rtol=1e-12, atol=1e-14)
    # a final Softmax (the output activation of these losses) is accepted and dropped
    again = export.from_torch(torch.nn.Sequential(*module, torch.nn.Softmax(dim=1)), loss=loss)
    np.testing.assert_allclose(again.predict(X), model.predict(X), rtol=1e-12)


def test_onnx_applies_the_softmax_of_the_distribution_losses(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model = fastmlp.MLP([4, 3], loss="bhattacharyya", seed=0)
    export.to_onnx(model, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"X": X})[0], model.predict(X), rtol=2e-5)


def test_cli_trains_and_evaluates_symmetric_kl_with_smoothed_targets(tmp_path):
    """symmetric_kl takes class labels as one-hot rows mixed with 0.1 uniform (it needs
    targets > 0); the saved model evaluates the same way; --label-smoothing 0 is refused
    for it with a message, and --label-smoothing is refused for losses it does not fit."""
    path = tmp_path / "table.csv"
    class_table(path)
    model_path = tmp_path / "m.fmlp"
    result = run("train", "--data", str(path), "--loss", "symmetric_kl", "--hidden", "8",
                 "--epochs", "20", "--lr", "0.1", "--quiet", "--save", str(model_path))
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split("test accuracy:")[1].split()[0]) > 0.7
    evaluated = run("evaluate", str(model_path), "--data", str(path))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "loss:" in evaluated.stdout
    refused = run("train", "--data", str(path), "--loss", "symmetric_kl",
                  "--label-smoothing", "0")
    assert refused.returncode == 1 and "needs --label-smoothing > 0" in refused.stderr
    refused = run("train", "--data", str(path), "--loss", "mse", "--label-smoothing", "0.1")
    assert refused.returncode == 1 and "not to mse" in refused.stderr


def test_cli_evaluate_takes_the_smoothing_a_distribution_model_was_trained_with(tmp_path):
    """`evaluate --label-smoothing S` scores a symmetric_kl model against the targets it was
    trained on (one-hot mixed with S uniform): the loss equals the model's own evaluate on
    those targets and differs from the default smoothing's; the accuracy does not change;
    a model whose targets do not depend on it refuses the option."""
    path = tmp_path / "table.csv"
    X, y = class_table(path)
    model_path = tmp_path / "m.fmlp"
    trained = run("train", "--data", str(path), "--loss", "symmetric_kl", "--hidden", "8",
                  "--epochs", "5", "--lr", "0.1", "--quiet", "--label-smoothing", "0.3",
                  "--save", str(model_path))
    assert trained.returncode == 0, trained.stderr

    def loss_and_accuracy(*extra):
        out = run("evaluate", str(model_path), "--data", str(path), *extra)
        assert out.returncode == 0, out.stderr
        line = out.stdout.split("loss:")[1].split()
        return float(line[0]), float(line[2])

    loss_03, acc_03 = loss_and_accuracy("--label-smoothing", "0.3")
    loss_default, acc_default = loss_and_accuracy()
    model = fastmlp.load(model_path)
    classes = np.unique(y)
    onehot = np.eye(len(classes))[np.searchsorted(classes, y)]
    expected = model.evaluate(X.astype(model.dtype), 0.7 * onehot + 0.3 / len(classes))["loss"]
    assert loss_03 == pytest.approx(expected, rel=1e-3, abs=1e-4)
    assert loss_03 != pytest.approx(loss_default, rel=1e-3)
    assert acc_03 == acc_default
    plain = tmp_path / "ce.fmlp"
    assert run("train", "--data", str(path), "--hidden", "4", "--epochs", "1", "--quiet",
               "--save", str(plain)).returncode == 0
    refused = run("evaluate", str(plain), "--data", str(path), "--label-smoothing", "0.1")
    assert refused.returncode == 1 and "applies to the distribution losses" in refused.stderr
