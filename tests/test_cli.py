"""The command line, run as a user runs it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastmlp

EXE = shutil.which("fastmlp")


def run(*args, env=None):
    cmd = [EXE] if EXE else [sys.executable, "-m", "fastmlp.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=300, env=env)


def test_train_on_the_embedded_subset_learns():
    result = run("train", "--epochs", "2", "--hidden", "64", "--batch-size", "128", "--lr", "0.1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "epoch 1/2" in out and "epoch 2/2" in out
    accuracy = float(out.rsplit("test accuracy:", 1)[1].split()[0])
    assert accuracy > 0.6  # 10 classes: chance is 0.1


def test_train_on_a_csv_file_with_other_loss(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    path = tmp_path / "table.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,label", comments="")
    result = run("train", "--data", str(path), "--loss", "hinge", "--hidden", "8",
                 "--epochs", "30", "--lr", "0.1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "epoch" not in result.stdout
    assert float(result.stdout.split("test accuracy:")[1].split()[0]) > 0.85


def test_help_and_errors():
    assert run("--help").returncode == 0
    helptext = run("train", "--help").stdout
    for option in ("--hidden", "--activation", "--loss", "--init", "--epochs", "--batch-size",
                   "--lr", "--data", "--seed", "--threads"):
        assert option in helptext
    bad = run("train", "--batch-size", "0", "--epochs", "1")
    assert bad.returncode == 1 and "batch_size must be >= 1" in bad.stderr
    missing = run("train", "--data", "/nonexistent/dir")
    assert missing.returncode == 1 and "error" in missing.stderr
    assert run().returncode == 2


def test_train_with_optimizer_and_regularizers():
    result = run("train", "--epochs", "2", "--hidden", "32", "--optimizer", "adam",
                 "--dropout", "0.2", "--batch-norm", "before", "--l2", "1e-4",
                 "--early-stopping", "--batch-size", "64")
    assert result.returncode == 0, result.stderr
    assert "Adam(lr=0.001" in result.stdout and "epoch 2/2" in result.stdout
    assert float(result.stdout.split("test accuracy:")[1].split()[0]) > 0.6
    bad = run("train", "--optimizer", "adam", "--momentum", "0.9", "--epochs", "1")
    assert bad.returncode == 1 and "--momentum applies to" in bad.stderr


def test_save_evaluate_and_predict(tmp_path):
    model = tmp_path / "model.fmlp"
    result = run("train", "--epochs", "1", "--hidden", "16", "--quiet", "--save", str(model))
    assert result.returncode == 0, result.stderr
    trained_acc = float(result.stdout.split("test accuracy:")[1].split()[0])
    ev = run("evaluate", str(model))
    assert ev.returncode == 0, ev.stderr
    assert float(ev.stdout.split("accuracy:")[1].split()[0]) == pytest.approx(trained_acc)
    X = fastmlp_test_features()
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header=",".join(f"p{i}" for i in
                                                                      range(784)), comments="")
    out = run("predict", str(model), str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"))
    assert out.returncode == 0, out.stderr
    labels = np.load(tmp_path / "y.npy")
    printed = run("predict", str(model), str(tmp_path / "x.csv"))
    assert np.loadtxt(printed.stdout.splitlines(), dtype=int).tolist() == labels.tolist()
    proba = run("predict", str(model), str(tmp_path / "x.npy"), "--proba")
    p = np.loadtxt(proba.stdout.splitlines(), delimiter=",")
    assert p.shape == (5, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-4)
    assert p.argmax(axis=1).tolist() == labels.tolist()
    broken = tmp_path / "broken.fmlp"
    broken.write_bytes(model.read_bytes()[:100])
    bad = run("evaluate", str(broken))
    assert bad.returncode == 1 and "truncated or corrupt" in bad.stderr


def fastmlp_test_features():
    import fastmlp

    return fastmlp.datasets.load_embedded_fashion_mnist().X_test[:5]


def test_plot_writes_a_png(tmp_path):
    png = tmp_path / "curves.png"
    result = run("train", "--epochs", "2", "--hidden", "16", "--quiet", "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_bench_command():
    result = run("bench", "--samples", "1500")
    assert result.returncode == 0, result.stderr
    assert "NumPy reference" in result.stdout and "faster than the NumPy reference" in result.stdout


def test_progress_bar_line():
    import io

    from fastmlp.cli import _ProgressBar

    out = io.StringIO()
    bar = _ProgressBar(out)
    bar(1, 3, 100, 1000, 0.5)
    bar(1, 3, 500, 1000, 0.4)
    bar(2, 3, 100, 1000, 0.3)
    text = out.getvalue()
    bar(2, 3, 1000, 1000, 0.2)  # end of an epoch: the line is cleared
    assert text.count("\r") == 3 and out.getvalue().endswith("\r")
    assert "epoch 1/3 [###############...............] 500/1000" in text
    assert "loss 0.4000" in text and "samples/s" in text and "ETA" in text


def test_standardize_and_cosine_schedule_save_a_model_for_raw_inputs(tmp_path):
    model = tmp_path / "m.fmlp"
    result = run("train", "--epochs", "3", "--hidden", "32", "--optimizer", "adam",
                 "--schedule", "cosine", "--standardize", "--batch-size", "128",
                 "--save", str(model), "--quiet")
    assert result.returncode == 0, result.stderr
    trained = float(result.stdout.split("test accuracy:")[1].split()[0])
    assert trained > 0.7
    evaluated = run("evaluate", str(model))  # raw pixels: the scaling lives in the model
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("accuracy:")[1].split()[0]) == pytest.approx(trained)


def test_checkpoint_survives_ctrl_c_and_resume_finishes_the_run(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    common = ["train", "--epochs", "30", "--hidden", "32", "--optimizer", "adam",
              "--batch-size", "16", "--seed", "3", "--threads", "1", "--quiet"]
    straight = run(*common, "--save", str(tmp_path / "straight.fmlp"))
    assert straight.returncode == 0, straight.stderr
    cmd = [EXE] if EXE else [sys.executable, "-m", "fastmlp.cli"]
    proc = subprocess.Popen(cmd + common[:-1] + ["--checkpoint", str(ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:  # epoch 1 done: interrupt epoch 2
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)  # 29 epochs left: Ctrl-C lands mid-run
    assert f"--resume {ckpt}" in err
    resumed = run(*common, "--resume", str(ckpt), "--checkpoint", str(ckpt),
                  "--save", str(tmp_path / "resumed.fmlp"))
    assert resumed.returncode == 0, resumed.stderr
    a, b = (fastmlp.load(tmp_path / f) for f in ("straight.fmlp", "resumed.fmlp"))
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())


def test_estimator_files_get_a_clear_error_from_evaluate_and_predict(tmp_path):
    import warnings

    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=40, n_features=784, random_state=0)
    path = tmp_path / "est.fmlp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two iterations do not converge
        fastmlp.MLPClassifier(max_iter=2, random_state=0).fit(X, y).save(path)
    np.save(tmp_path / "x.npy", X[:3])
    for args in (["evaluate", str(path)], ["predict", str(path), str(tmp_path / "x.npy")]):
        result = run(*args)
        assert result.returncode == 1
        assert "holds a MLPClassifier" in result.stderr and "Traceback" not in result.stderr
