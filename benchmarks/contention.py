"""Training speed on a busy machine: one epoch with 0, 1 and 2 competing busy-loop processes.

Contenders, interleaved within each round (so a noisy machine hits them alike), each timed
`--repeats` times per cell (min and median reported):

* ``fastmlp``        default threads (all cores) with the adaptive thread count (the default)
* ``fastmlp-1``      one engine thread
* ``fastmlp-fixed``  all cores, adaptive thread count off (what fastmlp did before)
* ``torch``          PyTorch's own loop, its default thread count
* ``numpy``          fastmlp.reference (the NumPy loop), NumPy's BLAS threads as they are

on 784-512-256-10 (Adam, float32) at batch 32 / 128 / 512, and a scikit-learn-size fit
(``MLPClassifier(hidden_layer_sizes=(100,))`` on digits, fastmlp default / 1 thread and
scikit-learn). The competing processes are pure-Python busy loops started with the
``spawn`` method, one per requested level, killed after the level. Each round starts with
the next contender, and every run is followed by half a second of sleep (as in peers.py),
so that threads another library left spinning do not weigh on one contender only.

    python benchmarks/contention.py                   # the issue-14 table
    python benchmarks/contention.py --repeats 3 --samples 5000 --loads 0 1

Targets (issue 14): with one competing process, default-thread fastmlp is at most 1.3x its
own 1-thread time under the same load and faster than PyTorch; on an idle machine the
1 -> 2 thread speed-up at batch 128 is at least 1.8x.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the peer loops and the environment report)


def busy_loop() -> None:  # pragma: no cover - runs in the competing processes
    while True:
        pass


def fastmlp_run(threads, adaptive):
    import fastmlp

    def run(X, y, batch_size, epochs):
        model = fastmlp.MLP(list(peers.SIZES), seed=peers.SEED, threads=threads)
        model.adaptive_threads = adaptive
        t0 = time.perf_counter()
        model.fit(X, y, epochs=epochs, batch_size=batch_size,
                  optimizer=fastmlp.optim.Adam(lr=peers.LRS["adam"]))
        return time.perf_counter() - t0

    return run


def digits_runs():
    """scikit-learn-size fits: MLPClassifier((100,)), 50 epochs of adam at batch 200."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    opts = dict(hidden_layer_sizes=(100,), max_iter=50, tol=0.0, n_iter_no_change=50,
                random_state=0)

    def timed(make):
        def run():
            est = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                est.fit(X, y)
                return time.perf_counter() - t0
        return run

    return {
        "fastmlp": timed(lambda: MLPClassifier(**opts)),
        "fastmlp-1": timed(lambda: MLPClassifier(threads=1, **opts)),
        "sklearn": timed(lambda: SkMLP(**opts)),
    }


def start_load(k: int) -> list:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=busy_loop, daemon=True) for _ in range(k)]
    for p in procs:
        p.start()
    time.sleep(1.0 if k else 0.0)  # let them reach their loops
    return procs


def stop_load(procs) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.join()


def rotated(runs: dict, r: int) -> list:
    """The contenders in round r's order: each round starts with the next one, so that
    none always runs right after the same other (BLAS or OpenMP threads of the one before
    can still be spinning)."""
    items = list(runs.items())
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def summary(times):
    return min(times), statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2],
                   help="competing busy-loop processes per level (default 0 1 2)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--samples", type=int, default=10_000, help="samples per epoch (10000)")
    p.add_argument("--repeats", type=int, default=5, help="rounds per level (5)")
    p.add_argument("--only", nargs="+", default=None,
                   help="contenders (default: all of fastmlp fastmlp-1 fastmlp-fixed torch numpy)")
    p.add_argument("--no-digits", action="store_true", help="skip the scikit-learn-size fit")
    args = p.parse_args(argv)

    threads = os.cpu_count() or 1
    runs = {"fastmlp": fastmlp_run(None, True), "fastmlp-1": fastmlp_run(1, True),
            "fastmlp-fixed": fastmlp_run(None, False)}
    for name, factory in (("torch", peers.make_torch), ("numpy", peers.make_reference)):
        try:
            runs[name] = factory(threads)
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
    if args.only:
        runs = {k: v for k, v in runs.items() if k in args.only}
    digits = {} if args.no_digits else digits_runs()

    rng = np.random.default_rng(0)
    X = rng.random((args.samples, peers.SIZES[0]), dtype=np.float32)
    y = rng.integers(0, peers.SIZES[-1], size=args.samples)

    for line in peers.environment_lines(threads):
        print(line)
    cells = {}  # (load, workload, contender) -> [seconds]
    for load in args.loads:
        for bs in args.batch_sizes:  # warm-up, idle: code paths, pages, thread pools
            for run in runs.values():
                run(X[:2048], y[:2048], bs, 1)
        procs = start_load(load)
        try:
            print(f"# {load} competing process(es): load average {os.getloadavg()}",
                  flush=True)
            for r in range(args.repeats):
                for bs in args.batch_sizes:
                    for name, run in rotated(runs, r):
                        t = run(X, y, bs, 1)
                        cells.setdefault((load, f"batch {bs}", name), []).append(t)
                        print(f"  load {load} round {r + 1} batch {bs:<4} {name:<13} {t:7.3f} s",
                              file=sys.stderr, flush=True)
                        time.sleep(0.5)  # let other libraries' spinning threads go idle
                for name, run in rotated(digits, r):
                    t = run()
                    time.sleep(0.5)
                    cells.setdefault((load, "digits", name), []).append(t)
                    print(f"  load {load} round {r + 1} digits     {name:<13} {t:7.3f} s",
                          file=sys.stderr, flush=True)
            print(f"#   after: load average {os.getloadavg()}", flush=True)
        finally:
            stop_load(procs)

    print()
    print("| competing | workload | contender | min s | median s | median / fastmlp-1 "
          "| median / fastmlp |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for (load, work, name), times in cells.items():
        lo, med = summary(times)
        one = cells.get((load, work, "fastmlp-1"))
        default = cells.get((load, work, "fastmlp"))
        r1 = f"{med / statistics.median(one):.2f}" if one else ""
        rd = f"{med / statistics.median(default):.2f}" if default else ""
        print(f"| {load} | {work} | {name} | {lo:.3f} | {med:.3f} | {r1} | {rd} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
