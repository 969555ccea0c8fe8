"""Data-parallel training throughput (issue 20): ranks x threads on one machine.

Contenders, interleaved within each round (so a noisy machine hits them alike), each run
`--repeats` times (best and median of the epoch's samples/s reported):

* ``plain 1x2``     ``model.fit``, one process, 2 engine threads (the fused engine loop)
* ``dist 1x2``      ``fastmlp.distributed.fit``, 1 rank x 2 threads
* ``dist 2x1``      ``fastmlp.distributed.fit``, 2 ranks x 1 thread (mpiexec, loopback)
* ``dist 1x2 b128`` 1 rank x 2 threads with one block per batch (what blocks of 32 cost)

on 784-512-256-10 (Adam, float32, synthetic MNIST-size inputs) at batch 128 in blocks of
32. For the distributed runs it also reports the time per step spent in the collectives
(the block losses' gather and the gradient sums' all-gather, waiting for the slower rank
included), in adding up the block tree, and the all-gather of one gradient-sized vector
per rank alone (ranks in step, no training: the transfer's own cost).

    python benchmarks/mpi_ranks.py                      # the RESULTS.md table
    python benchmarks/mpi_ranks.py --samples 5000 --repeats 2

Needs ``pip install 'fastmlp[mpi]'``; mpiexec is taken from beside the interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LOOPBACK = ["-launcher", "fork", "-hosts", "localhost", "-iface", "lo"]
SIZES = [784, 512, 256, 10]


def worker(args) -> None:
    """One timed epoch (after a warm-up epoch) in this process (one rank of a job)."""
    import fastmlp
    from fastmlp import distributed
    from fastmlp.optim import Adam

    rng = np.random.default_rng(0)
    X = rng.random((args.samples, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], args.samples)
    model = fastmlp.MLP(SIZES, seed=0, threads=args.threads)
    if args.mode == "plain":
        model.fit(X, y, epochs=1, batch_size=args.batch_size, optimizer=Adam(lr=1e-3))
        h = model.fit(X, y, epochs=1, batch_size=args.batch_size, optimizer=Adam(lr=1e-3))
        print(json.dumps({"samples_per_s": h.samples_per_s[-1]}), flush=True)
        return
    spent = {"gather": 0.0, "losses": 0.0, "reduce": 0.0}

    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    R = distributed._Ranks
    R.gather = timed(R.gather, "gather")
    R.gather_doubles = timed(R.gather_doubles, "losses")
    distributed._Step._reduce = timed(distributed._Step._reduce, "reduce")
    kw = dict(epochs=1, batch_size=args.batch_size, block_size=args.block_size)
    distributed.fit(model, X, y, optimizer=Adam(lr=1e-3), **kw)
    spent.update(gather=0.0, losses=0.0, reduce=0.0)
    h = distributed.fit(model, X, y, optimizer=Adam(lr=1e-3), **kw)
    steps = -(-args.samples // args.batch_size)
    figures = {"samples_per_s": h.samples_per_s[-1],
               "collective_ms": 1e3 * (spent["gather"] + spent["losses"]) / steps,
               "tree_ms": 1e3 * (spent["reduce"] - spent["gather"]) / steps}
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    ranks = distributed._Ranks(comm)
    vector = model.get_flat_params()[None, :]
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(20):
        ranks.gather(vector, [1] * ranks.size)
    figures["gather_ms"] = 1e3 * (time.perf_counter() - t0) / 20
    if comm.Get_rank() == 0:
        print(json.dumps(figures), flush=True)


def run(mode: str, ranks: int, threads: int, block: int | None, args) -> dict:
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode,
          "--threads", str(threads), "--samples", str(args.samples),
          "--batch-size", str(args.batch_size), "--block-size", str(block or args.block_size)]
    if mode != "plain":
        me = [str(Path(sys.executable).parent / "mpiexec"), *LOOPBACK, "-n", str(ranks), *me]
    out = subprocess.run(me, capture_output=True, text=True, timeout=1800, check=True)
    time.sleep(0.5)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="dist", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    contenders = {"plain 1x2": ("plain", 1, 2, None), "dist 1x2": ("dist", 1, 2, None),
                  "dist 2x1": ("dist", 2, 1, None),
                  "dist 1x2 b128": ("dist", 1, 2, args.batch_size)}
    results = {name: [] for name in contenders}
    print(f"load before: {os.getloadavg()}", flush=True)
    for r in range(args.repeats):
        names = list(contenders)
        names = names[r % len(names):] + names[: r % len(names)]
        for name in names:
            results[name].append(run(*contenders[name], args))
    print(f"load after: {os.getloadavg()}")
    print(f"784-512-256-10, Adam, float32, {args.samples} samples, batch {args.batch_size}, "
          f"blocks of {args.block_size}; {args.repeats} runs each, interleaved")
    print(f"{'':14} {'samples/s best':>14} {'median':>8}  {'ms/step: collectives':>20} "
          f"{'tree':>6}  {'all-gather alone':>16}")

    def med(runs, key):
        return statistics.median([x.get(key, float("nan")) for x in runs])

    for name, runs in results.items():
        sps = [x["samples_per_s"] for x in runs]
        print(f"{name:14} {max(sps):>14,.0f} {statistics.median(sps):>8,.0f}  "
              f"{med(runs, 'collective_ms'):>20.3f} {med(runs, 'tree_ms'):>6.3f}  "
              f"{med(runs, 'gather_ms'):>16.3f}")


if __name__ == "__main__":
    main()
