"""The course's regularization study: train an over-sized MLP on a small part of the
Fashion-MNIST subset embedded in fastmlp, without regularization and with each
regularizer, and print train/test accuracy as a markdown table.

    python examples/regularization_study.py [--train 2000] [--epochs 30] [--hidden 512 512]

Every run starts from the same initial weights (seed 0), uses Adam(lr=1e-3), batch 64,
and sees the same batches; the settings are common starting points, not tuned.
"""

from __future__ import annotations

import argparse
import time

import fastmlp
from fastmlp import optim
from fastmlp.pruning import prune_and_retrain


def runs(epochs):
    """(label, constructor options, fit options, special)"""
    return [
        ("none", {}, {}),
        ("L2 (l2=1e-3)", {}, {"l2": 1e-3}),
        ("L1 subgradient (l1=1e-5)", {}, {"l1": 1e-5}),
        ("L1 proximal (l1=1e-4)", {}, {"l1": 1e-4, "l1_proximal": True}),
        ("activity L1 (1e-4)", {}, {"activity_l1": 1e-4}),
        ("dropout 0.5 (input 0.2)", {"dropout": 0.5, "input_dropout": 0.2}, {}),
        ("batch norm (before act.)", {"batch_norm": True}, {}),
        ("early stopping (patience 3)", {}, {"early_stopping": True, "patience": 3,
                                             "validation_fraction": 0.15}),
        ("Gaussian input noise (0.2)", {}, {"input_noise": 0.2}),
        ("random shifts (2 px)", {}, {"shift": 2, "image_shape": (28, 28)}),
        ("FGSM adversarial (eps 0.05, half)", {}, {"adversarial_eps": 0.05,
                                                  "adversarial_ratio": 0.5}),
        ("pruning 90% (3 rounds + retrain)", {}, {"prune": 0.9}),
        ("ensemble of 5 (bagging)", {}, {"ensemble": 5}),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2000, help="training samples used")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, nargs="*", default=[512, 512])
    args = ap.parse_args()
    data = fastmlp.datasets.load_embedded_fashion_mnist()
    X, y = data.X_train[: args.train], data.y_train[: args.train]
    Xt, yt = data.X_test, data.y_test
    sizes = [784, *args.hidden, 10]
    print(f"{'-'.join(map(str, sizes))} relu, Adam(1e-3), batch 64, {args.epochs} epochs, "
          f"{len(X)} training / {len(Xt)} test samples ({data.source})\n")
    print("| regularizer | train acc | test acc | gap | time |")
    print("|---|---|---|---|---|")
    for label, ctor, fit_opts in runs(args.epochs):
        fit_opts = dict(fit_opts)
        common = {"epochs": args.epochs, "batch_size": 64}
        t = time.perf_counter()
        if "ensemble" in fit_opts:
            model = fastmlp.Ensemble.of(fit_opts.pop("ensemble"), fastmlp.MLP, sizes, seed=0)
            model.fit(X, y, optimizer=None, lr=0.05, **common)
        elif "prune" in fit_opts:
            model = fastmlp.MLP(sizes, seed=0, **ctor)
            model.fit(X, y, optimizer=optim.Adam(lr=1e-3), **common)
            rounds = 3
            prune_and_retrain(model, X, y, target=fit_opts["prune"], rounds=rounds,
                              epochs=max(1, args.epochs // 10), batch_size=64,
                              optimizer=optim.Adam(lr=1e-3), l2=1e-4)
        else:
            model = fastmlp.MLP(sizes, seed=0, **ctor)
            model.fit(X, y, optimizer=optim.Adam(lr=1e-3), **common, **fit_opts)
        seconds = time.perf_counter() - t
        train_acc, test_acc = model.score(X, y), model.score(Xt, yt)
        print(f"| {label} | {train_acc:.4f} | {test_acc:.4f} | {train_acc - test_acc:+.4f} "
              f"| {seconds:.1f}s |", flush=True)
    print("\n(The ensemble's members use plain SGD, lr 0.05: bagging is the regularizer.)")


if __name__ == "__main__":
    main()
