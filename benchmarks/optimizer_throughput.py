"""Update throughput of every optimizer, fastmlp's C kernels vs the NumPy reference.

    python benchmarks/optimizer_throughput.py [--sizes 1000000 10000000] [--repeats 7]

An optimizer step is memory-bound: it streams the parameters, the gradient and the
state (read) and writes the parameters and the state back, i.e. (3 + 2*slots) arrays
of the parameter size. Throughput is reported in GB/s of that traffic, next to the
machine's streaming bandwidth measured here with NumPy (c = a + b on 256 MB arrays).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np

from fastmlp import optim
from fastmlp.reference import optim as ref_optim

CONFIGS = [
    ("SGD", {"lr": 0.01}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    ("Adagrad", {}),
    ("Adadelta", {}),
    ("RMSprop", {"centered": True, "momentum": 0.9}),
    ("Adam", {}),
    ("AdamW", {"amsgrad": True}),
    ("Rprop", {}),
    ("DeltaBarDelta", {}),
]


def median_time(fn, repeats):
    fn()  # warm up (first touch of the state)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def stream_bandwidth(repeats):
    n = 64 * 2**20 // 4 * 4  # 64 Mi float32 = 256 MB per array
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    t = median_time(lambda: np.add(a, b, out=c), repeats)
    return 3 * a.nbytes / t / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    bw = stream_bandwidth(args.repeats)
    print(f"NumPy streaming bandwidth (c = a + b, float32, 1 thread): {bw:.1f} GB/s\n")
    head = "| optimizer | params | " + " | ".join(
        f"fastmlp {t}T GB/s" for t in args.threads) + " | NumPy ref GB/s | speed-up (1T) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    rng = np.random.default_rng(0)
    for n in args.sizes:
        p = rng.normal(size=n).astype(np.float32)
        g = rng.normal(size=n).astype(np.float32)
        for name, kw in CONFIGS:
            opt = optim.OPTIMIZERS[name](**kw)
            traffic = (3 + 2 * len(opt._used_slots())) * p.nbytes
            cols = []
            t1 = None
            for threads in args.threads:
                opt.threads = threads
                t = median_time(functools.partial(opt.step, [p], [g]), args.repeats)
                t1 = t if t1 is None else t1
                cols.append(f"{traffic / t / 1e9:.1f}")
            state = opt._new_state(p.shape, p.dtype)
            hyper = opt._engine_hyper()
            tr = median_time(functools.partial(ref_optim.update, name, hyper, state, p, g, opt.lr),
                             max(3, args.repeats // 2))
            label = name + ("(" + ", ".join(f"{k}={v}" for k, v in kw.items() if k != "lr") + ")"
                            if len(kw) > 1 or "lr" not in kw else "")
            print(f"| {label} | {n:,} | " + " | ".join(cols)
                  + f" | {traffic / tr / 1e9:.1f} | {tr / t1:.1f}x |")


if __name__ == "__main__":
    main()
