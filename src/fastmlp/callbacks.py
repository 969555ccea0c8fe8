"""Callbacks for ``fit(callbacks=[...])``: each is called as ``callback(model, history)``
after every epoch; a truthy return value stops training."""

from __future__ import annotations

import csv
import io
import os

from fastmlp import serialization
from fastmlp.train.history import History


class CSVLogger:
    """Write the History to a CSV file after every epoch: one row per epoch with
    ``epoch, loss, accuracy, val_loss, val_accuracy, lr, time, samples_per_s`` and one
    ``grad_norm_<l>`` column per dense layer (empty cells for values that are None).

    The file is replaced atomically each epoch, so it always holds complete rows, also
    when training is interrupted. With ``append=True`` the rows of earlier fits already
    in the file are kept (a resumed run continues its log)."""

    COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time",
               "samples_per_s")

    def __init__(self, path: str | os.PathLike, *, append: bool = False) -> None:
        self.path = os.fspath(path)
        self._earlier: list[list[str]] = []
        if append and os.path.exists(self.path):
            with open(self.path, newline="") as fh:
                self._earlier = list(csv.reader(fh))[1:]
        # fail now, not after the first epoch, when the directory cannot be written
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise ValueError(f"CSVLogger: cannot write into the directory {directory!r}")

    def __call__(self, model: object, history: History) -> bool:
        layers = len(history.grad_norm[0]) if history.grad_norm else 0
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(list(self.COLUMNS) + [f"grad_norm_{l}" for l in range(layers)])
        writer.writerows(self._earlier)
        for i in range(len(history)):
            row = [getattr(history, c)[i] for c in self.COLUMNS]
            row += list(history.grad_norm[i]) if history.grad_norm else []
            writer.writerow(["" if v is None else v for v in row])
        serialization.write_atomic(self.path, out.getvalue().encode())
        return False
