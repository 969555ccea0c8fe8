"""The `fastmlp` command line.

    fastmlp train                       # train on Fashion-MNIST (see --data for where from)
    fastmlp train --hidden 512 256 --epochs 20 --lr 0.05 --data /path/to/fashion-mnist
    fastmlp train --data table.csv      # features + label column; 20% held out for testing
    fastmlp train --save model.fmlp && fastmlp evaluate model.fmlp
    fastmlp predict model.fmlp features.csv --output labels.csv
    mpiexec -n 4 fastmlp train --distributed   # data-parallel over 4 MPI ranks

`train` holds out a validation split of the training data for its per-epoch ``val_*``
lines and early stopping, and scores the test split once, at the end.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

import fastmlp
import fastmlp.reference
from fastmlp import datasets, distributed, metrics, serialization, tabular
from fastmlp.errors import TrainingDivergedError
from fastmlp.io.untrusted import read_npy
from fastmlp.model.activations import ACTIVATIONS
from fastmlp.model.base import BaseMLP
from fastmlp.model.init import INITIALIZERS
from fastmlp.model.losses import LOSSES
from fastmlp.optim import OPTIMIZERS
from fastmlp.train import checkpoint as checkpoint_io
from fastmlp.train.loop import epoch_line
from fastmlp.train.regularization import stratified_split

_OPTIMIZERS = {name.lower(): cls for name, cls in OPTIMIZERS.items()}
DEFAULT_SGD_LR = 0.05
DEFAULT_VALIDATION_FRACTION = 0.1
STANDARDIZE_EPS = 0.1  # added to each feature's std: near-constant pixels stay tame
UNSCALED_MAX = 50.0  # inputs beyond this look unscaled (raw pixels, say)
MANY_CLASSES = 100  # more distinct labels than this: probably not the label column
_CLASSES_ARRAY = "cli.class_labels_json"  # the original labels, in a model file
_DENSE_TARGET_LOSSES = ("mse", "hinge", "binary_cross_entropy")  # one-hot/±1 targets
# class labels become one-hot rows mixed with the uniform distribution (label smoothing)
_DISTRIBUTION_LOSSES = ("kl_divergence", "symmetric_kl", "bhattacharyya")
SYMMETRIC_KL_SMOOTHING = 0.1  # its default: symmetric_kl needs every target > 0
_OUTPUT_SUFFIXES = (".csv", ".npy")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default: ``sys.argv[1:]``); return the exit
    status."""
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
    except (ValueError, TypeError, OSError, TrainingDivergedError,
            distributed.RankFailedError) as exc:
        print(f"fastmlp: error: {exc}", file=sys.stderr)
        _end_the_job(args)
        return 1
    except Exception:
        if getattr(args, "distributed", False):
            traceback.print_exc()
            _end_the_job(args)
        raise


def _end_the_job(args) -> None:
    """Under ``--distributed`` with more than one rank: end every rank of the job (a rank
    that leaves alone, before or after the fit's agreements, would leave the others
    waiting in a collective)."""
    if getattr(args, "distributed", False):
        comm = distributed.world()
        if comm.Get_size() > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            # Abort ends every process at once; mpiexec can drop what this rank has just
            # written and not yet forwarded (once in ~60 runs of the tests): a moment first
            time.sleep(0.5)
            comm.Abort(1)


# -- argument parsing ---------------------------------------------------------------------

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where there is a default to show and the help text does
    not already state it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or \
                action.default == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)


def _integer(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _number(low: float, high: float = math.inf, *, low_open: bool = False,
            high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < value if low_open else low <= value) or \
                not (value < high if high_open else value <= high):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must lie in {interval}, got {text}")
        return value

    return parse


def _column(text: str) -> int | str:
    """A --label-column value: an index when it is an integer, else a header name."""
    try:
        return int(text)
    except ValueError:
        return text


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
            "Train an MLP with minibatch SGD. Per epoch it prints the training loss and the "
            "loss and accuracy on a validation split held out from the training data; at "
            "the end, the accuracy on the test split. Without --data it uses Fashion-MNIST: "
            "$FASTMLP_DATA, then /usr/share/datasets/fashion-mnist (Debian's "
            "dataset-fashion-mnist), then the subset embedded in the package."
        ),
        formatter_class=_HelpFormatter,
    )
    train.add_argument("--data", type=Path, default=None,
                       help="Fashion-MNIST directory (IDX files) or a .npz/.npy/.csv file")
    train.add_argument("--label-column", type=_column, default=None, metavar="NAME|INDEX",
                       help="label column of a .csv/.npy --data file (default: a CSV header's "
                            "label/labels/target/class/y column, else the last column)")
    train.add_argument("--test-fraction", type=_number(0, 1, low_open=True), default=0.2,
                       help="share of a --data file held out for testing")
    train.add_argument("--validation-fraction", type=_number(0, 1),
                       default=DEFAULT_VALIDATION_FRACTION,
                       help="share of the training data held out (stratified) for the "
                            "per-epoch validation lines and early stopping; 0 trains on "
                            "all of it")
    train.add_argument("--hidden", type=_integer(1), nargs="*", default=[256, 128],
                       metavar="N", help="hidden layer widths (none for a linear model)")
    train.add_argument("--activation", default="relu", choices=list(ACTIVATIONS),
                       help="hidden activation")
    train.add_argument("--loss", default="cross_entropy", choices=list(LOSSES),
                       help="loss (class labels are one-hot/±1 encoded for mse, hinge, "
                            "binary_cross_entropy, and smoothed one-hot distributions for "
                            "kl_divergence, symmetric_kl, bhattacharyya)")
    train.add_argument("--label-smoothing", type=_number(0, 1), default=None, metavar="S",
                       help="cross_entropy's label smoothing (torch semantics), or the share "
                            "of the uniform distribution in the targets of the distribution "
                            f"losses (default 0; {SYMMETRIC_KL_SMOOTHING} for symmetric_kl, "
                            "which needs targets > 0; give `evaluate` the same value)")
    train.add_argument("--init", default="he_normal", choices=list(INITIALIZERS),
                       help="weight initializer")
    train.add_argument("--epochs", type=_integer(1), default=10,
                       help="passes over the training data")
    train.add_argument("--batch-size", type=_integer(1), default=32,
                       help="samples per SGD step")
    train.add_argument("--lr", type=_number(0, low_open=True), default=None,
                       help=f"learning rate (default: {DEFAULT_SGD_LR} for sgd, the "
                            "optimizer's own PyTorch default otherwise)")
    train.add_argument("--optimizer", default=None, choices=sorted(_OPTIMIZERS),
                       help="update rule, torch.optim semantics (default: sgd)")
    train.add_argument("--momentum", type=_number(0, 1), default=None,
                       help="momentum of sgd/rmsprop (default: 0)")
    train.add_argument("--dropout", type=_number(0, 1), default=0.0,
                       help="hidden-layer dropout rate")
    train.add_argument("--input-dropout", type=_number(0, 1), default=0.0,
                       help="input dropout rate")
    train.add_argument("--batch-norm", choices=["none", "before", "after"], default="none",
                       help="batch normalization of hidden layers")
    train.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                       help="learning rate: constant, or cosine annealing to 0")
    train.add_argument("--schedule-interval", choices=["epoch", "batch"], default="epoch",
                       help="when the schedule moves: after every epoch, or after every "
                            "step (batch)")
    train.add_argument("--rotate", type=_number(0, 180, high_open=False), default=0.0,
                       metavar="DEG", help="augmentation: rotate each training image by a "
                                           "random angle of up to DEG degrees either way")
    train.add_argument("--shift", type=_integer(0), default=0, metavar="PX",
                       help="augmentation: shift each training image by up to PX pixels "
                            "either way (after the rotation)")
    train.add_argument("--image-shape", type=_integer(1), nargs=2, default=None,
                       metavar=("H", "W"), help="image height and width for --rotate and "
                       "--shift (default: square images, e.g. 28 28 for 784 features)")
    scaling = train.add_mutually_exclusive_group()
    scaling.add_argument("--standardize", action="store_true",
                         help="train on inputs scaled to (x - mean) / (std + 0.1) per "
                              "feature (training-set statistics)")
    scaling.add_argument("--scale", type=_number(0, low_open=True), default=None,
                         metavar="S", help="train on inputs divided by S (e.g. 255 for "
                                           "pixels)")
    train.add_argument("--l2", type=_number(0), default=0.0, help="L2 penalty l2/2 |W|^2")
    train.add_argument("--early-stopping", action="store_true",
                       help="stop when the validation loss stops improving (keeps the "
                            "best weights)")
    train.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                       help="precision of parameters and computation (float32 is the "
                            "fast path)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of init, shuffling and the data splits")
    train.add_argument("--threads", type=_integer(1), default=None,
                       help="engine threads (default: all cores / OMP_NUM_THREADS)")
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training over the MPI ranks this runs in (start "
                       "with mpiexec -n RANKS; needs pip install 'fastmlp[mpi]'): every rank "
                       "loads the data and computes its blocks of each batch; the result is "
                       "the same for any number of ranks; rank 0 prints and writes files")
    train.add_argument("--block-size", type=_integer(1),
                       default=distributed.DEFAULT_BLOCK_SIZE, metavar="ROWS",
                       help="with --distributed: rows per block, the unit of a rank's work "
                       "and of the fixed summation order")
    train.add_argument("--save", type=Path, default=None, metavar="PATH",
                       help="write the trained model to PATH (fastmlp model file; the "
                            "scaling options are its input transform, so it takes raw inputs)")
    train.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                       help="keep a training checkpoint in PATH (written atomically after "
                            "every --checkpoint-every epochs, and on Ctrl-C)")
    train.add_argument("--checkpoint-every", type=_integer(1), default=1, metavar="N",
                       help="epochs between checkpoints")
    train.add_argument("--resume", type=Path, default=None, metavar="PATH",
                       help="continue the run saved in checkpoint PATH (same data and "
                            "options; the optimizer comes from the checkpoint) up to "
                            "--epochs in all")
    train.add_argument("--plot", type=Path, default=None, metavar="PNG",
                       help="plot loss and accuracy per epoch to this image "
                            "(needs matplotlib: pip install 'fastmlp[plot]')")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser(
        "evaluate", help="loss, accuracy, confusion matrix and per-class metrics",
        description="Evaluate a model saved with `fastmlp train --save` on a .npz/.npy/.csv "
                    "file with labels, or, without --data, on the Fashion-MNIST test split.",
        formatter_class=_HelpFormatter,
    )
    evaluate.add_argument("model", type=Path, help="model file")
    evaluate.add_argument("--data", type=Path, default=None,
                          help="a .npz/.npy/.csv file with labels, or a Fashion-MNIST "
                               "directory")
    evaluate.add_argument("--label-column", type=_column, default=None, metavar="NAME|INDEX",
                          help="label column of a .csv/.npy --data file (default: as for "
                               "train)")
    evaluate.add_argument("--plot", type=Path, default=None, metavar="PNG",
                          help="draw the confusion matrix to this image (needs matplotlib)")
    evaluate.add_argument("--label-smoothing", type=_number(0, 1), default=None, metavar="S",
                          help="the share of the uniform distribution in the targets of a "
                               "distribution loss's model, as given to `train` (default: "
                               f"train's, 0; {SYMMETRIC_KL_SMOOTHING} for symmetric_kl); "
                               "the loss printed depends on it, the accuracy does not")
    evaluate.set_defaults(run=_evaluate)

    predict = sub.add_parser(
        "predict", help="predictions of a saved model",
        description="Predict with a saved model. INPUT is a .npy array or a CSV of features "
                    "(one sample per row, an optional header row; a header's label column is "
                    "dropped). Labels come out as the training data had them.",
        formatter_class=_HelpFormatter,
    )
    predict.add_argument("model", type=Path, help="model file")
    predict.add_argument("input", type=Path, help=".npy or .csv file of features")
    predict.add_argument("--output", type=Path, default=None,
                         help="write to this .csv or .npy file instead of printing")
    predict.add_argument("--proba", action="store_true",
                         help="output the model's outputs (probabilities) instead of labels; "
                              "a CSV gets a header of the class labels")
    predict.set_defaults(run=_predict)

    bench = sub.add_parser(
        "bench", help="time fastmlp against its NumPy reference on this machine",
        description="Time one training epoch of 784-512-256-10 (float32, Adam) on synthetic "
                    "data for fastmlp and for the pure-NumPy reference, several times, and "
                    "print the minimum and median of each and their ratios, with the "
                    "machine's load. benchmarks/peers.py in the repository adds PyTorch and "
                    "scikit-learn.",
        formatter_class=_HelpFormatter,
    )
    bench.add_argument("--samples", type=_integer(1), default=20000, help="training samples")
    bench.add_argument("--batch-size", type=_integer(1), default=128, help="samples per step")
    bench.add_argument("--repeats", type=_integer(1), default=3,
                       help="timed epochs per implementation")
    bench.add_argument("--threads", type=_integer(1), default=None, help="engine threads")
    bench.set_defaults(run=_bench)
    return parser


# -- train --------------------------------------------------------------------------------

def _train(args) -> int:
    # everything that can be checked without the data is checked before loading it
    for option, path in (("--save", args.save), ("--checkpoint", args.checkpoint),
                         ("--plot", args.plot)):
        _check_writable(path, option)
    if args.plot is not None:
        _check_matplotlib()
    if args.early_stopping and args.validation_fraction == 0:
        raise ValueError("--early-stopping needs a validation split: --validation-fraction "
                         "must be > 0")
    if args.image_shape is not None and not (args.rotate or args.shift):
        raise ValueError("--image-shape applies to --rotate and --shift only")
    if args.schedule_interval == "batch" and args.schedule == "constant":
        raise ValueError("--schedule-interval applies to a schedule that changes the rate "
                         "(--schedule cosine); the constant rate has none")
    if args.label_column is not None and (args.data is None or not args.data.is_file()):
        raise ValueError("--label-column applies to a .csv/.npy --data file")
    smoothing = _target_smoothing(args.loss, args.label_smoothing)
    comm = distributed.world() if args.distributed else None
    if comm is not None and comm.Get_rank() > 0:  # rank 0 speaks and writes
        args.quiet, args.save, args.plot = True, None, None
    resumed = checkpoint_io.load(args.resume) if args.resume is not None else None
    optimizer = _optimizer(args, resumed)

    data = _load_training_data(args)
    n_classes = len(data.classes)
    if n_classes < 2:
        raise ValueError(f"{data.source}: the labels hold a single class "
                         f"({data.classes[0]!r}); classification needs two or more")
    _warn_about_inputs(args, data)
    fraction = args.validation_fraction
    X_train, y_train, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
    X_val = y_val = None
    if fraction > 0:
        train_idx, val_idx = stratified_split(y_train, len(y_train), fraction, args.seed)
        X_val, y_val = X_train[val_idx], y_train[val_idx]
        X_train, y_train = X_train[train_idx], y_train[train_idx]
    if resumed is not None:
        _check_resume_data(args, resumed, len(X_train))

    sizes = [X_train.shape[1], *args.hidden, n_classes]
    # --standardize/--scale: the model's own input transform, so that it takes raw inputs
    # and that --rotate/--shift move raw pixels before the transform (engine: step_forward)
    scaling = _input_scaling(args, X_train)
    model = fastmlp.MLP(sizes, activation=args.activation, loss=args.loss, init=args.init,
                        **_input_transform(scaling),
                        label_smoothing=smoothing if args.loss == "cross_entropy" else 0.0,
                        dtype=args.dtype, seed=args.seed, threads=args.threads,
                        dropout=args.dropout, input_dropout=args.input_dropout,
                        batch_norm=False if args.batch_norm == "none" else args.batch_norm)
    if not args.quiet:
        split = f", {len(X_val)} validation" if X_val is not None else ""
        print(f"data: {data.source}: {len(X_train)} training{split}, {len(X_test)} test "
              f"samples, {n_classes} classes")
        print(f"model: {'-'.join(map(str, sizes))} {args.activation}, {args.loss}, "
              f"{args.dtype}, {model.threads} thread(s); {optimizer!r}, "
              f"batch {args.batch_size}, {args.epochs} epochs"
              + (f", resuming {args.resume}" if resumed is not None else "")
              + (f"; data-parallel over {comm.Get_size()} MPI rank(s), blocks of "
                 f"{args.block_size} rows" if comm is not None else ""))
    fit_options = {"l2": args.l2}
    if args.schedule == "cosine":
        steps = args.epochs * (-(-len(X_train) // args.batch_size)
                               if args.schedule_interval == "batch" else 1)
        fit_options["lr_schedule"] = fastmlp.schedules.CosineAnnealing(
            steps, interval=args.schedule_interval)
    fit_options.update(_augmentation(args, X_train.shape[1]))
    if args.checkpoint is not None:
        fit_options.update(checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every)
    if args.resume is not None:
        fit_options["resume_from"] = args.resume
    if X_val is not None:
        fit_options["validation_data"] = (X_val, _encode(args.loss, y_val, n_classes,
                                                         smoothing))
    progress = None if args.quiet or not sys.stderr.isatty() else _ProgressBar()
    reporter = _EpochReporter(X_val, y_val, args.loss, args.epochs, len(X_train),
                              quiet=args.quiet)
    if comm is not None:  # (no progress bar: the steps run in Python)
        fit = functools.partial(distributed.fit, model, comm=comm, block_size=args.block_size)
        progress = None
    else:
        fit = functools.partial(model.fit, progress=progress)
    try:
        history = fit(X_train, _encode(args.loss, y_train, n_classes, smoothing),
                      epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                      early_stopping=args.early_stopping, callbacks=[reporter],
                      **fit_options)
    except KeyboardInterrupt:
        if progress is not None:
            progress.clear()
        if args.checkpoint is not None:
            print(f"interrupted: {args.checkpoint} holds the completed epochs; continue with "
                  f"--resume {args.checkpoint}", file=sys.stderr)
        raise
    accuracy = float(np.mean(_class_of(model, X_test) == y_test))
    best = f"; weights of epoch {history.best_epoch}" if history.best_epoch else ""
    if comm is not None and comm.Get_rank() > 0:
        return 0
    print(f"test accuracy: {accuracy:.4f}  ({len(X_test)} test samples; training "
          f"{sum(history.time):.1f}s{best})")
    if args.save is not None:
        _save_model(model, data.classes, args.save)
        print(f"saved to {args.save}")
    if args.plot is not None:
        _plot(history, args.plot, accuracy)
        print(f"plot written to {args.plot}")
    return 0


class _Data:
    """Training and test splits with labels as class indices into `classes`."""

    def __init__(self, X_train, y_train, X_test, y_test, classes, source, label_note=""):
        self.X_train, self.y_train, self.X_test, self.y_test = X_train, y_train, X_test, y_test
        self.classes, self.source, self.label_note = classes, source, label_note


def _load_training_data(args) -> _Data:
    if args.data is None or not args.data.is_file():
        ds = datasets.load_fashion_mnist(args.data, dtype=args.dtype)
        return _Data(ds.X_train, ds.y_train, ds.X_test, ds.y_test,
                     np.arange(ds.n_classes), ds.source)
    X, y, note = _load_file(args.data, args.label_column, args.dtype)
    classes = _class_labels(y, args.data)
    order = np.random.default_rng(args.seed).permutation(len(X))
    n_test = max(1, int(round(len(X) * args.test_fraction)))
    if n_test >= len(X):
        raise ValueError(f"{args.data}: {len(X)} samples leave none for training after "
                         f"--test-fraction {args.test_fraction}")
    test, train = order[:n_test], order[n_test:]
    y = np.searchsorted(classes, y)
    return _Data(X[train], y[train], X[test], y[test], classes, str(args.data), note)


def _load_file(path: Path, label_column, dtype: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Features, labels and a note naming the label column (for a CSV file)."""
    if path.suffix.lower() != ".csv":
        X, y = datasets.load_data(path, label_column=label_column, dtype=dtype)
        return X, y, ""
    table = tabular.read_csv(path, label_column=label_column, dtype=dtype)
    name = f" ({table.label_name!r})" if table.label_name is not None else ""
    return table.X, table.y, f"column {table.label_index + 1}{name}"


def _class_labels(y: np.ndarray, source) -> np.ndarray:
    """The sorted distinct labels; ValueError when they are not class labels."""
    if y.dtype.kind == "f":
        odd = y[y != np.round(y)]
        raise ValueError(f"{source}: the labels are not class labels (e.g. {odd[0]:g}); "
                         "fastmlp train does classification: integer or text labels")
    return np.unique(y)


def _warn_about_inputs(args, data: _Data) -> None:
    if len(data.classes) > MANY_CLASSES:
        where = f" from {data.label_note}" if data.label_note else ""
        _warn(f"{len(data.classes)} distinct labels{where}: is that the label column? "
              "Choose it with --label-column NAME|INDEX")
    if args.standardize or args.scale is not None:
        return
    largest = float(np.max(np.abs(data.X_train))) if data.X_train.size else 0.0
    if largest > UNSCALED_MAX:
        _warn(f"the inputs look unscaled (largest magnitude {largest:g}): training on them "
              "can diverge or stall. Pass --scale S to divide them by S (0-255 pixels: "
              "--scale 255) or --standardize")


def _warn(message: str) -> None:
    print(f"fastmlp: warning: {message}", file=sys.stderr)


def _optimizer(args, resumed: tuple[dict, dict] | None):
    """The optimizer for this run: from the options, or from the checkpoint, which the
    options must then agree with."""
    if args.momentum and (args.optimizer or "sgd") not in ("sgd", "rmsprop"):
        raise ValueError("--momentum applies to the sgd and rmsprop optimizers")
    if resumed is None:
        name = args.optimizer or "sgd"
        options = {}
        if args.lr is not None or name == "sgd":
            options["lr"] = DEFAULT_SGD_LR if args.lr is None else args.lr
        if args.momentum:
            options["momentum"] = args.momentum
        return _OPTIMIZERS[name](**options)
    config = resumed[0]
    optimizer = OPTIMIZERS[config["optimizer"]](**config["optimizer_hyper"])
    hyper = optimizer.hyper()
    given = {"--optimizer": (args.optimizer, config["optimizer"].lower()),
             "--lr": (args.lr, hyper.get("lr")),
             "--momentum": (args.momentum, hyper.get("momentum", 0.0))}
    for option, (value, saved) in given.items():
        if value is not None and value != saved:
            raise ValueError(f"--resume {args.resume}: the run was started with {option} "
                             f"{saved}, not {value}; a resumed run keeps its optimizer "
                             f"({optimizer!r}); drop {option} or start a new run")
    return optimizer


def _check_resume_data(args, resumed: tuple[dict, dict], n_train: int) -> None:
    """The checkpoint must continue a run on as many samples, and with as many steps per
    epoch (its step counter tells): a different --batch-size would silently continue a
    different run."""
    config, arrays = resumed
    order = arrays.get("order")
    if order is not None and len(order) != n_train:
        raise ValueError(f"--resume {args.resume}: the run trained on {len(order)} samples, "
                         f"this one has {n_train}; resume with the original --data, "
                         "--test-fraction, --validation-fraction and --seed")
    epochs_done = int(config["epoch"])
    counter = arrays.get("model.counter")
    if not epochs_done or counter is None:
        return
    steps = int(counter[0]) // epochs_done
    ours = math.ceil(n_train / args.batch_size)
    if steps != ours:
        raise ValueError(f"--resume {args.resume}: the run took {steps} steps per epoch, but "
                         f"--batch-size {args.batch_size} gives {ours} for {n_train} "
                         "training samples; resume with the original --batch-size")


def _input_scaling(args, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, scale) of --standardize or --scale: inputs are used as (x - mean) / scale."""
    if args.standardize:
        return (X.mean(axis=0, dtype=np.float64),
                X.std(axis=0, dtype=np.float64) + STANDARDIZE_EPS)
    if args.scale is not None:
        return np.zeros(X.shape[1]), np.full(X.shape[1], args.scale)
    return None


def _input_transform(scaling: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """The model options that apply (x - mean) / scale of `scaling` (x * 1/scale - mean/scale)."""
    if scaling is None:
        return {}
    mean, scale = scaling
    return {"input_scale": 1 / scale, "input_shift": -mean / scale}


def _augmentation(args, n_features: int) -> dict:
    """The fit options of --rotate and --shift (with the images' shape)."""
    if not (args.rotate or args.shift):
        return {}
    side = math.isqrt(n_features)
    height, width = args.image_shape or (side, side)
    if args.image_shape is None and side * side != n_features:
        raise ValueError(f"--rotate/--shift need --image-shape H W: the {n_features} "
                         f"features are not a square image")
    if height * width != n_features:
        raise ValueError(f"--image-shape {height} {width} has {height * width} pixels, the "
                         f"data {n_features} features")
    return {"rotate": args.rotate, "shift": args.shift, "image_shape": (height, width)}



def _target_smoothing(loss: str, value: float | None) -> float:
    """The label smoothing of `loss` (--label-smoothing, or its default); ValueError for
    a loss it does not apply to."""
    if value is None:
        return SYMMETRIC_KL_SMOOTHING if loss == "symmetric_kl" else 0.0
    if value > 0 and loss != "cross_entropy" and loss not in _DISTRIBUTION_LOSSES:
        raise ValueError(f"--label-smoothing applies to cross_entropy and the distribution "
                         f"losses ({', '.join(_DISTRIBUTION_LOSSES)}), not to {loss}")
    if loss == "symmetric_kl" and value == 0:
        raise ValueError("symmetric_kl needs --label-smoothing > 0 (every target > 0)")
    return value


def _encode(loss: str, y: np.ndarray, n_classes: int, smoothing: float = 0.0) -> np.ndarray:
    """Class indices as the targets `loss` expects (cross-entropy smooths its labels
    itself)."""
    if loss not in _DENSE_TARGET_LOSSES + _DISTRIBUTION_LOSSES:
        return y
    onehot = np.eye(n_classes)[y]
    if loss in _DISTRIBUTION_LOSSES:
        return (1 - smoothing) * onehot + smoothing / n_classes
    return 2 * onehot - 1 if loss == "hinge" else onehot


def _class_of(model, X) -> np.ndarray:
    """Predicted class indices: the largest output, for every loss."""
    return np.argmax(model.predict_logits(X), axis=1)


class _EpochReporter:
    """A fit callback: puts the class accuracy on the validation split into the History
    (for one-hot/±1 losses the engine's accuracy counts correct outputs, not classes) and
    prints the epoch's line."""

    def __init__(self, X_val, y_val, loss: str, epochs: int, n_train: int,
                 quiet: bool) -> None:
        self.X_val, self.y_val, self.epochs, self.n_train = X_val, y_val, epochs, n_train
        self.dense, self.quiet = loss in _DENSE_TARGET_LOSSES, quiet

    def __call__(self, model, history) -> bool:
        if self.dense:
            history.accuracy[-1] = None
        if self.X_val is not None:
            history.val_accuracy[-1] = float(np.mean(_class_of(model, self.X_val)
                                                     == self.y_val))
        if not self.quiet:
            print(epoch_line(history.epoch[-1], self.epochs, history.loss[-1],
                              history.accuracy[-1], history.val_loss[-1],
                              history.val_accuracy[-1], history.time[-1], self.n_train),
                  flush=True)
        return False


class _ProgressBar:
    """One self-rewriting stderr line: epoch, bar, samples/s, running loss, ETA. It is
    fitted to the terminal's width: a line that wraps cannot be rewritten, and each update
    would leave a stale line behind."""

    BAR = 30  # the bar's widest

    def __init__(self, stream=None, columns: int | None = None) -> None:
        self.stream = stream or sys.stderr
        self.columns = columns  # None: the terminal's, read at every update
        self.epoch = None
        self.shown = 0  # length of the line on screen

    def __call__(self, epoch, epochs, done, n, loss) -> None:
        now = time.perf_counter()
        if epoch != self.epoch:  # first report of an epoch: rates start from here
            self.epoch, self.t0, self.done0 = epoch, now, done
        rate = (done - self.done0) / (now - self.t0) if now > self.t0 else 0.0
        eta = f"{(n - done) / rate:5.1f}s" if rate > 0 else "  ...  "
        # the last column stays free: some terminals wrap as soon as it is written
        columns = (self.columns or shutil.get_terminal_size().columns) - 1
        head = f"epoch {epoch}/{epochs} "
        tails = (f" {done}/{n}  {rate:>9,.0f} samples/s  loss {loss:.4f}  ETA {eta}",
                 f" loss {loss:.4f}  ETA {eta}")
        tail = next((t for t in tails if columns - len(head) - len(t) - 2 >= 10), tails[-1])
        width = max(0, min(self.BAR, columns - len(head) - len(tail) - 2))
        filled = width * done // n
        line = (f"{head}[{'#' * filled}{'.' * (width - filled)}]{tail}")[:columns]
        self.stream.write("\r" + line.ljust(self.shown))
        self.stream.flush()
        self.shown = len(line)
        if done >= n:  # the epoch's summary line (stdout) takes its place
            self.clear()

    def clear(self) -> None:
        self.stream.write("\r" + " " * self.shown + "\r")
        self.stream.flush()
        self.shown = 0


# -- output files ---------------------------------------------------------------------------

def _check_writable(path: Path | None, option: str) -> None:
    """Fail now, not after training, when `path` cannot be written."""
    if path is None:
        return
    parent = path.parent
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the directory {parent} is not writable")


def _write(path: Path, data: bytes) -> None:
    """Write atomically, with an error that names `path` (not the temporary file)."""
    try:
        serialization.write_atomic(path, data)
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None


def _save_model(model, classes: np.ndarray, path: Path) -> None:
    """The model file of ``model.save``, plus the original class labels when they are not
    0..K-1 (``fastmlp.load`` reads it as a plain MLP)."""
    arrays = model._state_arrays()
    if not np.array_equal(classes, np.arange(len(classes))):
        labels = json.dumps(classes.tolist()).encode()
        arrays[_CLASSES_ARRAY] = np.frombuffer(labels, dtype=np.uint8).astype(np.int64)
    _write(path, serialization.dumps(model._kind(), model.config(), arrays))


def _load_network(path: Path) -> tuple[BaseMLP, np.ndarray | None]:
    """The network in `path` and its class labels (None: the classes are 0..K-1)."""
    model = fastmlp.load(path)
    if not isinstance(model, BaseMLP):
        raise ValueError(f"{path} holds a {type(model).__name__}; evaluate and predict take "
                         "networks saved by `fastmlp train --save` or MLP.save (save an "
                         "estimator's network, its .model_, for them)")
    arrays = serialization.loads(serialization.read_file(path), str(path))[2]
    encoded = arrays.get(_CLASSES_ARRAY)
    if encoded is None:
        return model, None
    try:
        classes = np.asarray(json.loads(bytes(encoded.astype(np.uint8)).decode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt class labels ({exc})") from None
    if classes.ndim != 1 or len(classes) != model.layer_sizes[-1]:
        raise ValueError(f"{path}: {classes.size} class labels for "
                         f"{model.layer_sizes[-1]} outputs")
    return model, classes


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'fastmlp[plot]'") from None


def _plot(history, path: Path, test_accuracy: float) -> None:
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
    ax2.axhline(test_accuracy, color="grey", linestyle="--",
                label=f"test (final): {test_accuracy:.4f}")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax2.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    _write(path, buffer.getvalue())


# -- evaluate and predict ---------------------------------------------------------------

def _evaluate(args) -> int:
    if args.plot is not None:
        _check_matplotlib()
        _check_writable(args.plot, "--plot")
    model, classes = _load_network(args.model)
    n_outputs = model.layer_sizes[-1]
    if args.data is not None and args.data.is_file():
        X, y, _ = _load_file(args.data, args.label_column, model.dtype.name)
        source = str(args.data)
        if classes is None:
            classes = np.arange(n_outputs)
        if y.dtype.kind == "f" or (y.dtype.kind in "iu") != (classes.dtype.kind in "iu"):
            raise ValueError(f"{source}: its labels ({y.dtype}) are not of the kind the "
                             f"model was trained on ({classes.dtype})")
        unknown = np.setdiff1d(y, classes)
        if unknown.size:
            raise ValueError(f"{source}: {unknown.size} label(s) the model was not trained "
                             f"on, e.g. {unknown[0]!r}")
        y = np.searchsorted(classes, y)
    else:
        if args.label_column is not None:
            raise ValueError("--label-column applies to a .csv/.npy --data file")
        if classes is not None or model.layer_sizes[0] != 784 or n_outputs != 10:
            raise ValueError(f"{args.model} was not trained on Fashion-MNIST: give its test "
                             "data with --data")
        ds = datasets.load_fashion_mnist(args.data, dtype=model.dtype.name)
        X, y, source = ds.X_test, ds.y_test, f"{ds.source}, test split"
        classes = np.array(ds.class_names)
        if args.data is None:
            print(f"fastmlp: no --data given: evaluating on Fashion-MNIST ({source})",
                  file=sys.stderr)
    if args.label_smoothing is not None and model.loss not in _DISTRIBUTION_LOSSES:
        raise ValueError(f"--label-smoothing applies to the distribution losses "
                         f"({', '.join(_DISTRIBUTION_LOSSES)}); a {model.loss} model's "
                         "targets do not depend on it (cross_entropy's is saved with the "
                         "model)")
    smoothing = _target_smoothing(model.loss, args.label_smoothing)
    scores = model.evaluate(X, _encode(model.loss, y, n_outputs, smoothing))
    predicted = _class_of(model, X)
    accuracy = np.mean(predicted == y)
    print(f"data: {source}: {len(X)} samples")
    print(f"loss: {scores['loss']:.4f}  accuracy: {accuracy:.4f}")
    names = [str(c) for c in (classes if classes is not None else range(n_outputs))]
    cm = metrics.confusion_matrix(y, predicted, labels=np.arange(n_outputs))
    report = metrics.classification_report(np.array(names)[y], np.array(names)[predicted],
                                           labels=names)
    print("\nconfusion matrix (rows: true class, columns: predicted class)")
    print(metrics.format_confusion(cm, names))
    print("\nper class")
    print(metrics.format_report(report))
    if args.plot is not None:
        _plot_confusion(cm, names, accuracy, args.plot)
        print(f"confusion matrix drawn to {args.plot}")
    return 0


def _plot_confusion(cm: np.ndarray, names: list[str], accuracy: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # each true class's row
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"accuracy {accuracy:.4f}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    _write(path, buffer.getvalue())


def _read_features(path: Path, n_inputs: int) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with open(path, "rb") as fh:
            X = read_npy(fh, str(path))  # numeric, sizes checked against the bytes
        if X.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array of features, got shape {X.shape}")
    elif suffix == ".csv":
        X = tabular.read_csv(path, labels=None).X  # a header's label column is left out
    else:
        raise ValueError(f"{path}: expected a .npy or .csv file of features")
    if X.shape[1] != n_inputs:
        raise ValueError(f"{path}: {X.shape[1]} feature columns, but the model takes "
                         f"{n_inputs} inputs")
    return X


def _predict(args) -> int:
    if args.output is not None:
        if args.output.suffix.lower() not in _OUTPUT_SUFFIXES:
            raise ValueError(f"--output {args.output}: unsupported format "
                             f"{args.output.suffix or '(no extension)'!r}; use .csv or .npy")
        _check_writable(args.output, "--output")
    model, classes = _load_network(args.model)
    X = _read_features(args.input, model.layer_sizes[0])
    if classes is None:
        classes = np.arange(model.layer_sizes[-1])
    out = model.predict(X) if args.proba else classes[_class_of(model, X)]
    if args.output is not None and args.output.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, out, allow_pickle=False)
        _write(args.output, buffer.getvalue())
        return 0
    text = io.StringIO()
    if args.proba:
        text.write(",".join(_csv_field(str(c)) for c in classes.tolist()) + "\n")
        np.savetxt(text, out, delimiter=",", fmt="%.6g")
    else:
        text.writelines(f"{_csv_field(str(v))}\n" for v in out.tolist())
    if args.output is None:
        sys.stdout.write(text.getvalue())
    else:
        _write(args.output, text.getvalue().encode())
    return 0


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\n\r') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


# -- bench ----------------------------------------------------------------------------------

def _bench(args) -> int:
    from fastmlp import optim

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=args.samples)
    sizes = [784, 512, 256, 10]
    gflop = 6 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * args.samples / 1e9
    cores = os.cpu_count() or 1
    load_before = _load_average()
    print(f"one epoch of {'-'.join(map(str, sizes))}, float32, Adam, batch {args.batch_size}, "
          f"{args.samples} samples ({gflop:.1f} GFLOP), {args.repeats} timed epochs each; "
          f"kernel {fastmlp._engine.kernel()}")
    times = {}
    for name, cls in (("fastmlp", fastmlp.MLP), ("NumPy reference", fastmlp.reference.MLP)):
        model = cls(sizes, seed=0, threads=args.threads)
        optimizer = optim.Adam()
        model.fit(X[:1024], y[:1024], epochs=1, batch_size=args.batch_size,
                  optimizer=optimizer)  # warm-up: allocation, thread start, caches
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=args.batch_size, optimizer=optimizer)
            runs.append(time.perf_counter() - t)
        times[name] = (min(runs), statistics.median(runs))
        print(f"  {name:<16} min {times[name][0]:7.3f} s  median {times[name][1]:7.3f} s  "
              f"{gflop / times[name][0]:7.1f} GFLOP/s (at the minimum)")
    fast, slow = times["fastmlp"], times["NumPy reference"]
    print(f"fastmlp is {slow[0] / fast[0]:.1f}x (minimum) / {slow[1] / fast[1]:.1f}x (median) "
          f"faster than the NumPy reference here")
    load_after = _load_average()
    if load_before is not None and load_after is not None:
        print(f"load average {load_before:.2f} before, {load_after:.2f} after, on {cores} "
              f"core(s)")
        if load_before > 0.5 * cores:
            print("note: other work was running; the timings (and their ratio) vary with "
                  "it; compare minimums on a quiet machine")
    return 0


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


if __name__ == "__main__":
    sys.exit(main())
