"""The course's comparison of update rules: train the same MLP on the Fashion-MNIST
subset embedded in fastmlp with each optimizer and print the training loss after
every epoch and the final test accuracy, as a markdown table.

    python examples/compare_optimizers.py [--epochs 5] [--hidden 128] [--batch-size 64]

Every run starts from the same initial weights (seed 0) and sees the batches in the
same order. Rates are common starting points, not tuned per optimizer.
"""

from __future__ import annotations

import argparse
import time

import fastmlp
from fastmlp import optim

RUNS = [
    ("SGD", optim.SGD(lr=0.05)),
    ("SGD + momentum 0.9", optim.SGD(lr=0.01, momentum=0.9)),
    ("SGD + Nesterov 0.9", optim.SGD(lr=0.01, momentum=0.9, nesterov=True)),
    ("Adagrad", optim.Adagrad(lr=0.01)),
    ("Adadelta", optim.Adadelta(lr=1.0)),
    ("RMSprop", optim.RMSprop(lr=0.001)),
    ("Adam", optim.Adam(lr=0.001)),
    ("AdamW", optim.AdamW(lr=0.001)),
    ("Rprop (full batch)", optim.Rprop(lr=0.001)),
    ("DeltaBarDelta", optim.DeltaBarDelta(lr=0.01)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, nargs="*", default=[128])
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    data = fastmlp.datasets.load_embedded_fashion_mnist()
    sizes = [784, *args.hidden, 10]
    print(f"{'-'.join(map(str, sizes))} relu, cross-entropy, float32, batch {args.batch_size}, "
          f"{len(data.X_train)} training samples ({data.source})\n")
    cols = " | ".join(f"loss@{e}" for e in range(1, args.epochs + 1))
    print(f"| optimizer | {cols} | test acc | time |")
    print("|---|" + "---|" * (args.epochs + 2))
    for label, opt in RUNS:
        model = fastmlp.MLP(sizes, seed=0)
        full = label.endswith("(full batch)")
        t = time.perf_counter()
        h = model.fit(data.X_train, data.y_train, epochs=args.epochs * (20 if full else 1),
                      batch_size=len(data.X_train) if full else args.batch_size, optimizer=opt)
        seconds = time.perf_counter() - t
        losses = h.loss[19::20] if full else h.loss
        acc = model.score(data.X_test, data.y_test)
        print(f"| {opt!r}{' (full batch)' if full else ''} | "
              + " | ".join(f"{v:.4f}" for v in losses) + f" | {acc:.4f} | {seconds:.1f}s |")
    print("\nRprop runs 20 full-batch steps per reported epoch (it is a full-batch method).")


if __name__ == "__main__":
    main()
