"""Run by tests/test_distributed.py under ``mpiexec -n R`` (or alone): a distributed fit of
a small model on synthetic data, described by the JSON in argv[1]; rank 0 writes the
parameters, running statistics and history to the .npz path argv[2].

Case keys: optimizer ("sgd"/"adam"), epochs, batch_size, block_size, n, dropout,
batch_norm, input_noise, weights (bool), threads, fail_rank with fail_epoch (that rank
raises in a callback after that epoch) or fail_step (in its gradient of that step),
exit_rank with fail_epoch (that rank ends its process there), seed_rank (that rank's
model has another seed), cli_fail_rank (see cli()),
checkpoint (path), early_stopping (bool), plain (bool: model.fit instead, one process),
bias_prior (bool: bias_init='prior', but 0.0 on rank zero_bias_rank), report_refusal
(bool: a rank whose fit raises saves its parameters, and whether model and optimizer are
as they were, to OUT.rank<r>.npz).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

import fastmlp
from fastmlp import distributed
from fastmlp.optim import SGD, Adam


def data(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 0.5)
    return X, y


def model_for(case: dict, rank: int = 0):
    seed = 8 if rank == case.get("seed_rank") else 7
    return fastmlp.MLP([12, 16, 8, 3], seed=seed, threads=case.get("threads", 1),
                       dropout=case.get("dropout", 0.0),
                       batch_norm=case.get("batch_norm", False),
                       bias_init="prior" if case.get("bias_prior") and
                       rank != case.get("zero_bias_rank") else 0.0)


def cli(case: dict) -> None:
    """``fastmlp train --distributed`` on a CSV file (argv[2]); rank cli_fail_rank fails to
    load it (as a file that only some ranks can read would)."""
    from mpi4py import MPI

    from fastmlp import cli as command_line

    if MPI.COMM_WORLD.Get_rank() == case["cli_fail_rank"]:
        def unreadable(args):
            raise OSError(f"{args.data}: permission denied (injected)")
        command_line._load_training_data = unreadable
    sys.exit(command_line.main(["train", "--distributed", "--data", sys.argv[2],
                                "--hidden", "4", "--epochs", "2", "--quiet"]))


def main() -> None:
    case = json.loads(sys.argv[1])
    if "cli_fail_rank" in case:
        cli(case)
        return
    X, y = data(case.get("n", 300))
    Xv, yv = data(64, seed=2)
    rank = 0
    if not case.get("plain"):
        from mpi4py import MPI

        rank = MPI.COMM_WORLD.Get_rank()
    model = model_for(case, rank)
    optimizer = Adam(lr=0.01) if case.get("optimizer") == "adam" else \
        SGD(lr=0.05, momentum=0.9)
    weights = np.linspace(0.5, 1.5, X.shape[0]) if case.get("weights") else None
    kwargs = dict(epochs=case.get("epochs", 4), batch_size=case.get("batch_size", 24),
                  optimizer=optimizer, input_noise=case.get("input_noise", 0.0),
                  sample_weight=weights)
    if case.get("early_stopping"):
        kwargs.update(validation_data=(Xv, yv), early_stopping=True, patience=1)
    if case.get("plain"):
        history = model.fit(X, y, shuffle=True, **kwargs)
    else:
        callbacks = []
        if "exit_rank" in case:
            def leave(model, history):
                if rank == case["exit_rank"] and len(history.loss) == case["fail_epoch"]:
                    os._exit(3)
                return False
            callbacks.append(leave)
        if "fail_step" in case and rank == case["fail_rank"]:
            block = distributed._Step._block

            def failing_block(self, *args):
                if self.model.training_step == case["fail_step"]:
                    raise RuntimeError("injected failure")
                return block(self, *args)
            distributed._Step._block = failing_block
        elif "fail_rank" in case:
            def fail(model, history):
                if rank == case["fail_rank"] and len(history.loss) == case["fail_epoch"]:
                    raise RuntimeError("injected failure")
                return False
            callbacks.append(fail)
        try:
            history = distributed.fit(model, X, y, block_size=case.get("block_size", 8),
                                      callbacks=callbacks, checkpoint=case.get("checkpoint"),
                                      **kwargs)
        except Exception:
            # The fit makes every rank raise together. Each prints its own error, then
            # waits for the others before exiting: mpiexec ends the whole job when the
            # first rank exits with an error, and a rank still printing would lose its
            # message (the tests count them).
            traceback.print_exc()
            sys.stderr.flush()
            if case.get("report_refusal"):  # what the refused fit left: model, optimizer
                np.savez(f"{sys.argv[2]}.rank{rank}.npz", params=model.get_flat_params(),
                         untouched=np.array([optimizer._owner is None and
                                             not optimizer.state and
                                             np.array_equal(model.get_flat_params(),
                                                            model_for(case, rank)
                                                            .get_flat_params())]))
            MPI.COMM_WORLD.Barrier()
            sys.exit(1)
    if rank == 0:
        np.savez(sys.argv[2], params=model.get_flat_params(),
                 running=model._running_view().copy(), loss=np.array(history.loss),
                 steps=np.array([history.steps]), counter=np.array([model.training_step]),
                 stopped=np.array([history.stopped_epoch or 0]))


if __name__ == "__main__":
    main()
