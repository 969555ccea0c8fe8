"""L2 regularization strength against the weights' size and the accuracy.

The penalty ``l2/2 |W|^2`` pulls every weight toward 0 at each step (weight decay), so the
weights' norm falls as the strength grows; on a small training set the gap between
training and test accuracy closes, until too strong a penalty underfits and both drop.
A 784-128-10 ReLU net on 2,000 images of the embedded Fashion-MNIST subset.
"""

from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp import optim

from _common import fashion, figure, parse_args, save

STRENGTHS = [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def main() -> None:
    args = parse_args(__doc__)
    X, y, Xt, yt = fashion(args.quick, n_train=2000)
    epochs = 2 if args.quick else 40
    norms, train_acc, test_acc = [], [], []
    for l2 in STRENGTHS:
        model = fastmlp.MLP([784, 128, 10], seed=0)
        model.fit(X, y, epochs=epochs, batch_size=32, optimizer=optim.SGD(lr=0.05, momentum=0.9),
                  l2=l2)
        norms.append(float(np.sqrt(sum(np.sum(W.astype(np.float64) ** 2)
                                       for W in model.weights))))
        train_acc.append(model.score(X, y))
        test_acc.append(model.score(Xt, yt))
    x = np.arange(len(STRENGTHS))
    names = [f"{s:g}" for s in STRENGTHS]
    fig, ax = figure(1, 2)
    ax[0, 0].plot(x, norms, "o-")
    ax[0, 0].set(ylabel="|W| (all layers, L2)", yscale="log", title="weight norm")
    ax[0, 1].plot(x, train_acc, "o-", label="train")
    ax[0, 1].plot(x, test_acc, "s--", label="test")
    ax[0, 1].set(ylabel="accuracy", title=f"{len(X)} training images, {epochs} epochs")
    ax[0, 1].legend(fontsize="small")
    for a in ax[0]:
        a.set_xticks(x, names)
        a.set_xlabel("l2 strength")
    save(fig, args.out, __file__)


if __name__ == "__main__":
    main()
