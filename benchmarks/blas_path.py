#!/usr/bin/env python
"""The BLAS-backed kernel path (issue 18), forced, against NumPy's own training loop.

Both train 784-512-256-10 (ReLU, softmax cross-entropy, float32, Adam lr 1e-3, reshuffled
epochs) on the same synthetic data, one thread each, at batch 128 and 512:

* ``blas``      -- fastmlp with ``set_kernel("blas")``: the dense layer's products through
  SciPy's sgemm (scipy.linalg.cython_blas), fastmlp's own loss, epilogues and optimizer;
* ``numpy``     -- fastmlp's NumPy reference (``fastmlp.reference.MLP``), the training loop
  written in NumPy, its products through NumPy's sgemm (its BLAS held to one thread with
  threadpoolctl);
* ``avx2`` etc. -- with ``--hand``, the best hand-written kernel set too, for context.

NumPy and SciPy each ship their own OpenBLAS build: the header prints both (threadpoolctl:
version and the kernel "architecture" each picked). The contenders are interleaved in
every round; each fit's process CPU time (``time.process_time``, the BLAS and fastmlp on
one thread: the time the work took, whatever else ran on the machine) and wall time are
recorded; the table gives min and median per contender and the ratio blas / numpy of
each. The load average is printed before and after.

Run from the repository root::

    python benchmarks/blas_path.py                      # 20,000 samples, 5 rounds
    python benchmarks/blas_path.py --samples 60000 --repeats 3 --hand
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastmlp
import fastmlp.reference
from fastmlp import _engine

SIZES = [784, 512, 256, 10]


def make_data(n: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, SIZES[0]), dtype=np.float32), rng.integers(0, 10, n)


def fit_fastmlp(kernel: str):
    def fit(X, y, batch_size):
        _engine.set_kernel(kernel)
        model = fastmlp.MLP(SIZES, activation="relu", loss="cross_entropy", init="he_normal",
                            dtype="float32", seed=0, threads=1)
        model.fit(X, y, epochs=1, batch_size=batch_size, shuffle=True,
                  optimizer=fastmlp.optim.Adam(lr=1e-3))
    return fit


def fit_numpy(X, y, batch_size):
    model = fastmlp.reference.MLP(SIZES, activation="relu", loss="cross_entropy",
                                  init="he_normal", dtype="float32", seed=0)
    model.fit(X, y, epochs=1, batch_size=batch_size, shuffle=True,
              optimizer=fastmlp.optim.Adam(lr=1e-3))


def timed(fit, X, y, batch_size):
    """(process CPU seconds, wall seconds) of one fit."""
    c, t = time.process_time(), time.perf_counter()
    fit(X, y, batch_size)
    return time.process_time() - c, time.perf_counter() - t


def blas_lines() -> list[str]:
    lines = []
    for d in threadpool_info():
        if d.get("user_api") == "blas":
            owner = "scipy" if "scipy.libs" in d["filepath"] else \
                "numpy" if "numpy" in d["filepath"] else d["filepath"]
            lines.append(f"{owner} BLAS: {d.get('internal_api')} {d.get('version')} "
                         f"architecture={d.get('architecture')} "
                         f"threading={d.get('threading_layer')}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--hand", action="store_true", help="time the best hand kernel set too")
    args = p.parse_args(argv)

    X, y = make_data(args.samples)
    before = _engine.kernel()
    contenders = {"blas": fit_fastmlp("blas"), "numpy": fit_numpy}
    if args.hand:
        contenders[before] = fit_fastmlp(before)
    print(f"fastmlp {fastmlp.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} logical cores; OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '<unset>')} OPENBLAS_L2_SIZE="
          f"{os.environ.get('OPENBLAS_L2_SIZE', '<unset>')}")
    _engine.set_kernel("blas")  # registers SciPy's BLAS, so that threadpoolctl lists it
    print("\n".join(blas_lines()))
    print(f"load average before: {os.getloadavg()}")
    gflop = 6 * sum(a * b for a, b in zip(SIZES, SIZES[1:])) * args.samples / 1e9
    rows = []
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for batch in args.batch_sizes:
                for fit in contenders.values():  # warm-up: a short fit each
                    fit(X[:4096], y[:4096], batch)
                cpu = {k: [] for k in contenders}
                wall = {k: [] for k in contenders}
                for _ in range(args.repeats):
                    for name, fit in contenders.items():
                        c, w = timed(fit, X, y, batch)
                        cpu[name].append(c)
                        wall[name].append(w)
                        time.sleep(0.2)
                rows.append((batch, cpu, wall))
    finally:
        _engine.set_kernel(before)
    print(f"load average after: {os.getloadavg()}\n")
    print(f"784-512-256-10, {args.samples} samples ({gflop:.1f} GFLOP per epoch), one thread, "
          f"{args.repeats} interleaved rounds; seconds per epoch")
    print("| batch | contender | CPU s min / median | wall s min / median | GFLOP/s (CPU, "
          "median) | CPU median / numpy's |")
    print("|---|---|---|---|---|---|")
    for batch, cpu, wall in rows:
        ref = statistics.median(cpu["numpy"])
        for name in contenders:
            med = statistics.median(cpu[name])
            print(f"| {batch} | {name} | {min(cpu[name]):.3f} / {med:.3f} | "
                  f"{min(wall[name]):.3f} / {statistics.median(wall[name]):.3f} | "
                  f"{gflop / med:.1f} | {med / ref:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
