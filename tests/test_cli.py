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
    assert "(default: None)" not in helptext and "(default: False)" not in helptext
    assert helptext.count("default: 0.05") == 1  # stated once, not repeated by argparse
    assert "precision of parameters" in helptext  # --dtype has a help text
    for option, value in (("--batch-size", "0"), ("--epochs", "0"), ("--test-fraction", "1"),
                          ("--lr", "-1"), ("--threads", "0")):
        bad = run("train", option, value)  # refused before any data is loaded
        assert bad.returncode == 2 and f"argument {option}: must" in bad.stderr
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
    ev = run("evaluate", str(model), "--plot", str(tmp_path / "cm.png"))
    assert ev.returncode == 0, ev.stderr
    assert float(ev.stdout.split("accuracy:")[1].split()[0]) == pytest.approx(trained_acc)
    # the confusion matrix: one row per class, counts adding up to the test set
    lines = ev.stdout.split("confusion matrix")[1].split("per class")[0].strip().splitlines()
    counts = np.array([line.split()[-10:] for line in lines[2:]], dtype=int)
    n_test = int(ev.stdout.split(" samples")[0].split()[-1])
    assert counts.shape == (10, 10) and counts.sum() == n_test
    assert np.trace(counts) / n_test == pytest.approx(trained_acc, abs=1e-4)
    assert "T-shirt/top" in ev.stdout and "macro avg" in ev.stdout
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    header, *rows = proba.stdout.splitlines()
    assert header == ",".join(str(c) for c in range(10))  # the class labels
    p = np.loadtxt(rows, delimiter=",")
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
    result = run("bench", "--samples", "1500", "--repeats", "2")
    assert result.returncode == 0, result.stderr
    assert "NumPy reference" in result.stdout and "faster than the NumPy reference" in result.stdout
    assert result.stdout.count("min ") == 2 and result.stdout.count("median ") == 2
    assert "(minimum)" in result.stdout and "load average" in result.stdout


def test_progress_bar_line():
    import io

    from fastmlp.cli import _ProgressBar

    out = io.StringIO()
    bar = _ProgressBar(out, columns=120)
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
    # (the child gets the default SIGINT handler back: a test run started as a background
    # job ignores SIGINT, and its children would inherit that)
    proc = subprocess.Popen(cmd + common[:-1] + ["--checkpoint", str(ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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


@pytest.mark.parametrize("columns", [80, 50])
def test_progress_line_fits_the_terminal(columns):
    """A line that wraps cannot be rewritten with \\r: each update left a stale line."""
    import io

    from fastmlp.cli import _ProgressBar

    out = io.StringIO()
    bar = _ProgressBar(out, columns=columns)
    for done in (100, 5000, 60000):
        bar(12, 30, done, 60000, 0.123456)
    lines = [seg for seg in out.getvalue().split("\r") if seg.strip()]
    assert lines and all(len(seg.rstrip()) < columns for seg in lines)
    assert all("loss 0.1235" in seg and "ETA" in seg for seg in lines)


def write_table(path, X, y, label_first=True, header=True):
    columns = [f"pixel{i}" for i in range(X.shape[1])]
    with open(path, "w") as fh:
        if header:
            fh.write(",".join(["label", *columns] if label_first else [*columns, "label"]))
            fh.write("\n")
        for row, label in zip(X.tolist(), y.tolist()):
            cells = [str(v) for v in row]
            fh.write(",".join([str(label), *cells] if label_first else [*cells, str(label)]))
            fh.write("\n")


def blobs(n=300, labels=(1, 2, 7), seed=0):
    """Raw 0-255 'pixels' of three well separated classes."""
    rng = np.random.default_rng(seed)
    y = rng.choice(np.asarray(labels), size=n)
    centers = {c: rng.integers(0, 256, size=6) for c in labels}
    X = np.array([centers[c] for c in y]) + rng.integers(-20, 21, size=(n, 6))
    return np.clip(X, 0, 255), y


def test_kaggle_layout_csv_label_first_with_gaps_and_unscaled_pixels(tmp_path):
    """Label first under a header (Kaggle's Fashion-MNIST): the label column, not the last
    pixel, is learned; labels 1/2/7 are three classes, and predict gives them back."""
    X, y = blobs()
    data = tmp_path / "train.csv"
    write_table(data, X, y)
    unscaled = run("train", "--data", str(data), "--epochs", "1", "--hidden", "8")
    assert "look unscaled (largest magnitude 255)" in unscaled.stderr
    assert "--scale 255" in unscaled.stderr
    model = tmp_path / "m.fmlp"
    result = run("train", "--data", str(data), "--scale", "255", "--hidden", "16",
                 "--epochs", "20", "--lr", "0.2", "--save", str(model))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert "3 classes" in result.stdout
    assert float(result.stdout.split("test accuracy:")[1].split()[0]) > 0.9
    features = tmp_path / "features.csv"
    np.savetxt(features, X[:20], fmt="%d", delimiter=",")
    predicted = run("predict", str(model), str(features))
    assert predicted.returncode == 0, predicted.stderr
    assert [int(v) for v in predicted.stdout.split()] == y[:20].tolist()
    evaluated = run("evaluate", str(model), "--data", str(data))  # the raw pixels again
    assert evaluated.returncode == 0, evaluated.stderr
    assert float(evaluated.stdout.split("accuracy:")[1].split()[0]) > 0.9


def test_text_labels_round_trip_through_train_evaluate_and_predict(tmp_path):
    X, y = blobs(labels=("cat", "dog", "emu, the bird"), seed=1)
    data = tmp_path / "animals.csv"
    with open(data, "w") as fh:
        fh.write(",".join(f"f{i}" for i in range(6)) + ",class\n")
        for row, label in zip(X.tolist(), y.tolist()):
            fh.write(",".join(map(str, row)) + f',"{label}"\n')
    model = tmp_path / "m.fmlp"
    result = run("train", "--data", str(data), "--standardize", "--hidden", "16", "--epochs",
                 "20", "--lr", "0.2", "--save", str(model), "--quiet")
    assert result.returncode == 0, result.stderr
    assert isinstance(fastmlp.load(model), fastmlp.MLP)  # still a plain model file
    predicted = run("predict", str(model), str(data))  # the label column is left out
    assert predicted.returncode == 0, predicted.stderr
    labels = [line.strip('"') for line in predicted.stdout.splitlines()]
    assert np.mean(np.array(labels) == y) > 0.9
    out = tmp_path / "proba.csv"
    assert run("predict", str(model), str(data), "--proba", "--output", str(out)).returncode == 0
    assert out.read_text().splitlines()[0] == 'cat,dog,"emu, the bird"'
    evaluated = run("evaluate", str(model), "--data", str(data))
    assert float(evaluated.stdout.split("accuracy:")[1].split()[0]) > 0.9
    fashion = run("evaluate", str(model))
    assert fashion.returncode == 1 and "give its test data with --data" in fashion.stderr


def split_of(stdout, fraction):
    """Whether the data line shows 80 test samples and `fraction` of the other 320 (to
    within the per-class rounding of the stratified split) held out for validation."""
    import re

    train, val = map(int, re.search(r"(\d+) training, (\d+) validation, 80 test",
                                    stdout).groups())
    return train + val == 320 and abs(val - 320 * fraction) <= 3


def test_validation_comes_from_the_training_data_and_test_is_reported_once(tmp_path):
    X, y = blobs(n=400)
    data = tmp_path / "t.csv"
    write_table(data, X, y)
    result = run("train", "--data", str(data), "--scale", "255", "--epochs", "2",
                 "--hidden", "8")
    assert result.returncode == 0, result.stderr
    # 400 samples: 80 test (--test-fraction 0.2); 10% of the other 320 for validation
    assert split_of(result.stdout, 0.1)
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and all("val_loss" in e and "test" not in e for e in epochs)
    assert result.stdout.count("test accuracy:") == 1
    quiet = run("train", "--data", str(data), "--scale", "255", "--epochs", "1", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout.startswith("test accuracy:")
    all_of_it = run("train", "--data", str(data), "--scale", "255", "--epochs", "1",
                    "--validation-fraction", "0")
    assert "320 training, 80 test" in all_of_it.stdout and "val_" not in all_of_it.stdout
    explicit = run("train", "--data", str(data), "--scale", "255", "--epochs", "1",
                   "--validation-fraction", "0.25")
    assert split_of(explicit.stdout, 0.25)
    none = run("train", "--data", str(data), "--epochs", "1", "--early-stopping",
               "--validation-fraction", "0")
    assert none.returncode == 1 and "--early-stopping needs a validation split" in none.stderr


def test_epoch_lines_report_class_accuracy_for_one_hot_losses():
    """hinge/binary_cross_entropy train on one-hot/±1 targets, where the engine's accuracy
    counts correct outputs (0.9 for a network that always answers 'no'), not classes."""
    from fastmlp.cli import _class_of, _encode, _EpochReporter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = rng.integers(0, 10, size=60)
    model = fastmlp.MLP([5, 10], loss="hinge", seed=0)
    history = model.fit(X, _encode("hinge", y, 10), epochs=1, validation_data=(
        X, _encode("hinge", y, 10)))
    engine_accuracy = history.val_accuracy[-1]
    _EpochReporter(X, y, "hinge", 1, 60, quiet=True)(model, history)
    assert history.accuracy[-1] is None
    assert history.val_accuracy[-1] == np.mean(_class_of(model, X) == y)
    assert history.val_accuracy[-1] != engine_accuracy


def test_resume_refuses_other_optimizer_options_and_batch_size(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    common = ["train", "--epochs", "1", "--hidden", "8", "--quiet", "--batch-size", "256"]
    first = run(*common, "--optimizer", "adam", "--lr", "0.002", "--checkpoint", str(ckpt))
    assert first.returncode == 0, first.stderr
    resume = [*common[:2], "2", *common[3:], "--resume", str(ckpt)]
    for extra, message in ((["--optimizer", "sgd"], "started with --optimizer adam"),
                           (["--lr", "0.1"], "started with --lr 0.002"),
                           (["--batch-size", "128"], "resume with the original --batch-size"),
                           (["--validation-fraction", "0.5"], "the run trained on")):
        bad = run(*resume, *extra)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
    same = run(*resume, "--optimizer", "adam")
    assert same.returncode == 0, same.stderr


def test_unwritable_outputs_fail_before_training(tmp_path):
    result = run("train", "--save", str(tmp_path / "missing" / "m.fmlp"))
    assert result.returncode == 1 and "epoch" not in result.stdout
    assert f"--save {tmp_path / 'missing' / 'm.fmlp'}: the directory" in result.stderr
    directory = run("train", "--plot", str(tmp_path))
    assert directory.returncode == 1 and "is a directory" in directory.stderr
    parquet = run("predict", "model.fmlp", "x.npy", "--output", str(tmp_path / "y.parquet"))
    assert parquet.returncode == 1 and "unsupported format '.parquet'" in parquet.stderr
    assert not (tmp_path / "y.parquet").exists()


def test_rotate_shift_and_per_step_cosine_train_as_the_python_api_does(tmp_path, capsys):
    """--rotate/--shift/--schedule-interval batch/--label-smoothing give the model that
    MLP.fit with rotate, shift, image_shape and a per-step CosineAnnealing gives, bit for
    bit; each option changes the result."""
    from fastmlp import cli, optim, schedules

    subset = fastmlp.datasets.load_embedded_fashion_mnist(normalize=False, flatten=False)
    for name, array in (("train-images-idx3-ubyte", subset.X_train[:600]),
                        ("train-labels-idx1-ubyte", subset.y_train[:600]),
                        ("t10k-images-idx3-ubyte", subset.X_test[:100]),
                        ("t10k-labels-idx1-ubyte", subset.y_test[:100])):
        fastmlp.datasets.write_idx(tmp_path / name, array.astype(np.uint8))
    data = fastmlp.datasets.load_fashion_mnist(tmp_path)

    def cli_weights(*extra):
        path = tmp_path / "m.fmlp"
        status = cli.main(["train", "--data", str(tmp_path), "--hidden", "16", "--epochs", "2",
                           "--batch-size", "64", "--optimizer", "adam", "--schedule", "cosine",
                           "--validation-fraction", "0", "--threads", "1", "--quiet",
                           "--label-smoothing", "0.1", "--save", str(path), *extra])
        assert status == 0, capsys.readouterr().err
        return fastmlp.load(path).weights

    model = fastmlp.MLP([784, 16, 10], label_smoothing=0.1, seed=0, threads=1)
    model.fit(data.X_train, data.y_train, epochs=2, batch_size=64, optimizer=optim.Adam(),
              lr_schedule=schedules.CosineAnnealing(2 * 10, interval="batch"),
              rotate=10.0, shift=2, image_shape=(28, 28))
    recipe = cli_weights("--rotate", "10", "--shift", "2", "--schedule-interval", "batch")
    for ours, theirs in zip(recipe, model.weights):
        np.testing.assert_array_equal(ours, theirs)
    for changed in (cli_weights("--rotate", "10", "--shift", "2"),  # per epoch
                    cli_weights("--shift", "2", "--schedule-interval", "batch"),
                    cli_weights("--rotate", "10", "--schedule-interval", "batch"),
                    cli_weights("--rotate", "10", "--shift", "2", "--schedule-interval", "batch",
                                "--image-shape", "14", "56")):
        assert not np.array_equal(changed[0], recipe[0])
    # --standardize is the model's input transform: the images move as raw pixels, then
    # are standardized (it standardized X first, so pixels took other pixels' scaling)
    X = data.X_train.astype(np.float64)
    mean, scale = X.mean(axis=0), X.std(axis=0) + cli.STANDARDIZE_EPS
    model = fastmlp.MLP([784, 16, 10], label_smoothing=0.1, seed=0, threads=1,
                        input_scale=1 / scale, input_shift=-mean / scale)
    model.fit(data.X_train, data.y_train, epochs=2, batch_size=64, optimizer=optim.Adam(),
              lr_schedule=schedules.CosineAnnealing(2 * 10, interval="batch"),
              rotate=10.0, shift=2, image_shape=(28, 28))
    standardized = cli_weights("--rotate", "10", "--shift", "2", "--schedule-interval",
                               "batch", "--standardize")
    for ours, theirs in zip(standardized, model.weights):
        np.testing.assert_array_equal(ours, theirs)


def test_augmentation_options_are_checked(tmp_path):
    for extra, message in ((["--rotate", "181"], "argument --rotate: must lie in [0, 180]"),
                           (["--shift", "-1"], "argument --shift: must be >= 0"),
                           (["--image-shape", "28"], "argument --image-shape: expected 2")):
        bad = run("train", *extra)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    alone = run("train", "--image-shape", "28", "28", "--epochs", "1")
    assert alone.returncode == 1 and "--image-shape applies to --rotate" in alone.stderr
    constant = run("train", "--schedule-interval", "batch", "--epochs", "1")
    assert constant.returncode == 1 and "--schedule-interval applies" in constant.stderr
    X, y = blobs(n=100)
    table = tmp_path / "t.csv"
    write_table(table, X, y)
    for extra, message in ((["--shift", "1"], "not a square image"),
                           (["--rotate", "5", "--image-shape", "2", "2"],
                            "has 4 pixels, the data 6")):
        bad = run("train", "--data", str(table), "--epochs", "1", *extra)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
