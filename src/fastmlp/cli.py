"""The `fastmlp` command line.

    fastmlp train                       # train on Fashion-MNIST (embedded subset by default)
    fastmlp train --hidden 512 256 --epochs 20 --lr 0.05 --data /path/to/fashion-mnist
    fastmlp train --data table.csv      # features + label column; 20% held out for testing
    fastmlp train --save model.fmlp && fastmlp evaluate model.fmlp
    fastmlp predict model.fmlp features.csv --output labels.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastmlp
import fastmlp.reference
from fastmlp import datasets
from fastmlp.activations import ACTIVATIONS
from fastmlp.base import BaseMLP
from fastmlp.errors import TrainingDivergedError
from fastmlp.init import INITIALIZERS
from fastmlp.losses import LOSSES
from fastmlp.optim import OPTIMIZERS

_OPTIMIZERS = {name.lower(): cls for name, cls in OPTIMIZERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, TrainingDivergedError) as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastmlp",
        description="Fast multilayer-perceptron training on the CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fastmlp {fastmlp.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train an MLP and report test accuracy",
        description=(
            "Train an MLP with minibatch SGD and print per-epoch loss/accuracy and the final "
            "test accuracy. Without --data it uses Fashion-MNIST: $FASTMLP_DATA, then "
            "/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), then the "
            "subset embedded in the package."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("--data", type=Path, default=None,
                       help="Fashion-MNIST directory (IDX files) or a .npz/.npy/.csv file")
    train.add_argument("--label-column", type=int, default=-1,
                       help="label column of a .npy/.csv --data file")
    train.add_argument("--test-fraction", type=float, default=0.2,
                       help="share of a --data file held out for testing")
    train.add_argument("--hidden", type=int, nargs="*", default=[256, 128], metavar="N",
                       help="hidden layer widths (none for a linear model)")
    train.add_argument("--activation", default="relu", choices=list(ACTIVATIONS),
                       help="hidden activation")
    train.add_argument("--loss", default="cross_entropy", choices=list(LOSSES),
                       help="loss (class labels are one-hot/±1 encoded for mse, hinge, "
                            "binary_cross_entropy)")
    train.add_argument("--init", default="he_normal", choices=list(INITIALIZERS),
                       help="weight initializer")
    train.add_argument("--epochs", type=int, default=10, help="passes over the training data")
    train.add_argument("--batch-size", type=int, default=32, help="samples per SGD step")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: 0.05 for sgd, the optimizer's own "
                            "PyTorch default otherwise)")
    train.add_argument("--optimizer", default="sgd", choices=sorted(_OPTIMIZERS),
                       help="update rule (torch.optim semantics)")
    train.add_argument("--momentum", type=float, default=0.0, help="momentum of sgd/rmsprop")
    train.add_argument("--dropout", type=float, default=0.0, help="hidden-layer dropout rate")
    train.add_argument("--input-dropout", type=float, default=0.0, help="input dropout rate")
    train.add_argument("--batch-norm", choices=["none", "before", "after"], default="none",
                       help="batch normalization of hidden layers")
    train.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                       help="learning rate per epoch: constant, or cosine annealing to 0")
    train.add_argument("--standardize", action="store_true",
                       help="train on inputs scaled to (x - mean) / (std + 0.1) per feature "
                            "(training-set statistics); the scaling is then folded into the "
                            "first layer, so the saved model takes raw inputs")
    train.add_argument("--l2", type=float, default=0.0, help="L2 penalty l2/2 |W|^2")
    train.add_argument("--early-stopping", action="store_true",
                       help="stop when the held-out validation loss stops improving "
                            "(10%% of the training data; keeps the best weights)")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    train.add_argument("--seed", type=int, default=0, help="seed of init and shuffling")
    train.add_argument("--threads", type=int, default=None,
                       help="engine threads (default: all cores / OMP_NUM_THREADS)")
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    train.add_argument("--save", type=Path, default=None, metavar="PATH",
                       help="write the trained model to PATH (fastmlp model file)")
    train.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                       help="keep a training checkpoint in PATH (written atomically after "
                            "every --checkpoint-every epochs, and on Ctrl-C)")
    train.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                       help="epochs between checkpoints")
    train.add_argument("--resume", type=Path, default=None, metavar="PATH",
                       help="continue the run saved in checkpoint PATH (same data and "
                            "options) up to --epochs in all")
    train.add_argument("--plot", type=Path, default=None, metavar="PNG",
                       help="plot loss and accuracy per epoch to this image "
                            "(needs matplotlib: pip install 'fastmlp[plot]')")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser(
        "evaluate", help="loss and accuracy of a saved model",
        description="Evaluate a model saved with `fastmlp train --save` on the Fashion-MNIST "
                    "test split (default) or on a .npz/.npy/.csv file with labels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    evaluate.add_argument("model", type=Path, help="model file")
    evaluate.add_argument("--data", type=Path, default=None,
                          help="Fashion-MNIST directory or a .npz/.npy/.csv file with labels")
    evaluate.add_argument("--label-column", type=int, default=-1,
                          help="label column of a .npy/.csv --data file")
    evaluate.set_defaults(run=_evaluate)

    predict = sub.add_parser(
        "predict", help="predictions of a saved model",
        description="Predict with a saved model. INPUT is a .npy array or a CSV of features "
                    "(one sample per row, an optional header row).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    predict.add_argument("model", type=Path, help="model file")
    predict.add_argument("input", type=Path, help=".npy or .csv file of features")
    predict.add_argument("--output", type=Path, default=None,
                         help="write to this .npy or .csv file instead of printing")
    predict.add_argument("--proba", action="store_true",
                         help="output the model's outputs (probabilities) instead of labels")
    predict.set_defaults(run=_predict)

    bench = sub.add_parser(
        "bench", help="time fastmlp against its NumPy reference on this machine",
        description="Time one training epoch of 784-512-256-10 (float32, Adam) on synthetic "
                    "data for fastmlp and for the pure-NumPy reference, and print the ratio. "
                    "benchmarks/peers.py in the repository adds PyTorch and scikit-learn.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bench.add_argument("--samples", type=int, default=20000, help="training samples")
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--threads", type=int, default=None, help="engine threads")
    bench.set_defaults(run=_bench)
    return parser


def _load(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    if args.data is not None and args.data.is_file():
        X, y = datasets.load_data(args.data, label_column=args.label_column, dtype=args.dtype)
        if not 0 < args.test_fraction < 1:
            raise ValueError(f"--test-fraction must lie in (0, 1), got {args.test_fraction}")
        order = np.random.default_rng(args.seed).permutation(len(X))
        n_test = max(1, int(round(len(X) * args.test_fraction)))
        test, train = order[:n_test], order[n_test:]
        return X[train], y[train], X[test], y[test], str(args.data)
    ds = datasets.load_fashion_mnist(args.data, dtype=args.dtype)
    return ds.X_train, ds.y_train, ds.X_test, ds.y_test, ds.source


STANDARDIZE_EPS = 0.1  # added to each feature's std: near-constant pixels stay tame


def _encode(loss: str, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Class labels as the targets `loss` expects."""
    if loss in ("cross_entropy", "multi_hinge"):
        return y
    onehot = np.eye(n_classes)[y]
    return 2 * onehot - 1 if loss == "hinge" else onehot


def _train(args) -> int:
    X_train, y_train, X_test, y_test, source = _load(args)
    if y_train.dtype.kind not in "iu":
        raise ValueError("fastmlp train needs integer class labels")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    sizes = [X_train.shape[1], *args.hidden, n_classes]
    model = fastmlp.MLP(sizes, activation=args.activation, loss=args.loss, init=args.init,
                        dtype=args.dtype, seed=args.seed, threads=args.threads,
                        dropout=args.dropout, input_dropout=args.input_dropout,
                        batch_norm=False if args.batch_norm == "none" else args.batch_norm)
    options = {}
    if args.lr is not None or args.optimizer == "sgd":
        options["lr"] = 0.05 if args.lr is None else args.lr
    if args.momentum:
        if args.optimizer not in ("sgd", "rmsprop"):
            raise ValueError("--momentum applies to the sgd and rmsprop optimizers")
        options["momentum"] = args.momentum
    optimizer = _OPTIMIZERS[args.optimizer](**options)
    if not args.quiet:
        print(f"data: {source}: {len(X_train)} training, {len(X_test)} test samples")
        print(f"model: {'-'.join(map(str, sizes))} {args.activation}, {args.loss}, "
              f"{args.dtype}, {model.threads} thread(s); {optimizer!r}, "
              f"batch {args.batch_size}, {args.epochs} epochs")
    scaling = None
    if args.standardize:
        mean = X_train.mean(axis=0, dtype=np.float64)
        scale = X_train.std(axis=0, dtype=np.float64) + STANDARDIZE_EPS
        scaling = (mean, scale)
        X_train = ((X_train - mean) / scale).astype(X_train.dtype)
        X_test_raw, X_test = X_test, ((X_test - mean) / scale).astype(X_test.dtype)
    t_test = _encode(args.loss, y_test, n_classes)
    fit_options = {"l2": args.l2}
    if args.schedule == "cosine":
        fit_options["lr_schedule"] = fastmlp.schedules.CosineAnnealing(args.epochs)
    if args.checkpoint is not None:
        fit_options.update(checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every)
    if args.resume is not None:
        fit_options["resume_from"] = args.resume
    if args.early_stopping:
        fit_options.update(early_stopping=True)
    else:
        fit_options.update(validation_data=(X_test, t_test))
    if args.plot is not None:
        _check_matplotlib()
    progress = None if args.quiet or not sys.stderr.isatty() else _ProgressBar()
    try:
        history = model.fit(X_train, _encode(args.loss, y_train, n_classes),
                            epochs=args.epochs, batch_size=args.batch_size,
                            optimizer=None if args.resume else optimizer,
                            verbose=not args.quiet, progress=progress, **fit_options)
    except KeyboardInterrupt:
        if progress is not None:
            progress.clear()
        if args.checkpoint is not None:
            print(f"interrupted: {args.checkpoint} holds the completed epochs; continue with "
                  f"--resume {args.checkpoint}", file=sys.stderr)
        raise
    if scaling is not None:  # the saved model takes raw inputs
        model.fold_input_scaling(*scaling)
        X_test = X_test_raw
    accuracy = np.mean(_class_of(model, X_test) == y_test)
    seconds = sum(history.time)
    print(f"test accuracy: {accuracy:.4f}  (training {seconds:.1f}s)")
    if args.save is not None:
        model.save(args.save)
        print(f"saved to {args.save}")
    if args.plot is not None:
        _plot(history, args.plot)
        print(f"plot written to {args.plot}")
    return 0


class _ProgressBar:
    """One self-rewriting stderr line: epoch, bar, samples/s, running loss, ETA."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.epoch = None

    def __call__(self, epoch, epochs, done, n, loss) -> None:
        now = time.perf_counter()
        if epoch != self.epoch:  # first report of an epoch: rates start from here
            self.epoch, self.t0, self.done0 = epoch, now, done
        rate = (done - self.done0) / (now - self.t0) if now > self.t0 else 0.0
        eta = f"{(n - done) / rate:5.1f}s" if rate > 0 else "  ...  "
        filled = 30 * done // n
        self.stream.write(f"\repoch {epoch}/{epochs} [{'#' * filled}{'.' * (30 - filled)}] "
                          f"{done}/{n}  {rate:>9,.0f} samples/s  loss {loss:.4f}  ETA {eta} ")
        self.stream.flush()
        if done >= n:  # the epoch's summary line (stdout) takes its place
            self.clear()

    def clear(self) -> None:
        self.stream.write("\r" + " " * 110 + "\r")
        self.stream.flush()


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'fastmlp[plot]'") from None


def _plot(history, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(history.epoch, history.loss, label="train")
    if any(v is not None for v in history.val_loss):
        ax1.plot(history.epoch, history.val_loss, label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    if any(v is not None for v in history.accuracy):
        ax2.plot(history.epoch, history.accuracy, label="train")
    if any(v is not None for v in history.val_accuracy):
        ax2.plot(history.epoch, history.val_accuracy, label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bench(args) -> int:
    from fastmlp import optim

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=args.samples)
    sizes = [784, 512, 256, 10]
    gflop = 6 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * args.samples / 1e9
    print(f"one epoch of {'-'.join(map(str, sizes))}, float32, Adam, batch {args.batch_size}, "
          f"{args.samples} samples ({gflop:.1f} GFLOP); kernel {fastmlp._engine.kernel()}")
    times = {}
    for name, cls in (("fastmlp", fastmlp.MLP), ("NumPy reference", fastmlp.reference.MLP)):
        model = cls(sizes, seed=0, threads=args.threads)
        model.fit(X[:1024], y[:1024], epochs=1, batch_size=args.batch_size,
                  optimizer=optim.Adam())
        t = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=args.batch_size, optimizer=optim.Adam())
        times[name] = time.perf_counter() - t
        print(f"  {name:<16} {times[name]:7.3f} s  {gflop / times[name]:7.1f} GFLOP/s")
    print(f"fastmlp is {times['NumPy reference'] / times['fastmlp']:.1f}x faster than the "
          f"NumPy reference here")
    return 0


def _load_network(path: Path):
    model = fastmlp.load(path)
    if not isinstance(model, BaseMLP):
        raise ValueError(f"{path} holds a {type(model).__name__}; evaluate and predict take "
                         "networks saved by `fastmlp train --save` or MLP.save (save an "
                         "estimator's network, its .model_, for them)")
    return model


def _evaluate(args) -> int:
    model = _load_network(args.model)
    if args.data is not None and args.data.is_file():
        X, y = datasets.load_data(args.data, label_column=args.label_column,
                                  dtype=model.dtype.name)
        source = str(args.data)
    else:
        ds = datasets.load_fashion_mnist(args.data, dtype=model.dtype.name)
        X, y, source = ds.X_test, ds.y_test, f"{ds.source} (test split)"
    if y.dtype.kind not in "iu":
        raise ValueError("fastmlp evaluate needs integer class labels")
    metrics = model.evaluate(X, _encode(model.loss, y, model.layer_sizes[-1]))
    accuracy = np.mean(_class_of(model, X) == y)
    print(f"data: {source}: {len(X)} samples")
    print(f"loss: {metrics['loss']:.4f}  accuracy: {accuracy:.4f}")
    return 0


def _read_features(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".csv":
        with open(path) as f:
            first = f.readline()
        try:
            [float(v) for v in first.strip().split(",")]
            skip = 0
        except ValueError:
            skip = 1
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    raise ValueError(f"{path}: expected a .npy or .csv file of features")


def _predict(args) -> int:
    model = _load_network(args.model)
    X = _read_features(args.input)
    out = model.predict(X) if args.proba else _class_of(model, X)
    if args.output is None:
        np.savetxt(sys.stdout, out if out.ndim == 2 else out[:, None], delimiter=",",
                   fmt="%.6g" if args.proba else "%d")
    elif args.output.suffix == ".npy":
        np.save(args.output, out)
    else:
        np.savetxt(args.output, out if out.ndim == 2 else out[:, None], delimiter=",",
                   fmt="%.6g" if args.proba else "%d")
    return 0


def _class_of(model, X) -> np.ndarray:
    labels = model.predict_labels(X) if model.loss != "mse" else model.predict(X)
    return labels if labels.ndim == 1 else np.argmax(labels, axis=1)


if __name__ == "__main__":
    sys.exit(main())
