"""Epoch by epoch, a long fit with the engine's subnormal flush on and off.

Training makes subnormal numbers (below 1.2e-38 in float32, 2.2e-308 in float64): Adam's
first moment of a weight whose gradient stays zero (a dead ReLU unit) decays by beta1 each
step into that range and stays there. Each instruction that meets one costs an Intel core a
microcode assist, so without the flush a fit slows down epoch after epoch
(csrc/fpenv.h). This script trains 784-512-256-10 (ReLU, cross-entropy, Adam lr 1e-3, seed
0) on Fashion-MNIST (the Debian package's files, else fastmlp's embedded subset) for
``--epochs`` epochs, timing each epoch, once with FASTMLP_FLUSH_DENORMAL=1 (the default)
and once with 0, each fit in a process of its own, the two alternating over ``--rounds``
rounds (the first mode of a round alternates too)::

    python benchmarks/subnormal.py --epochs 8 --batch-size 128 --rounds 2
    python benchmarks/subnormal.py --epochs 8 --batch-size 32 --dtype float64 --threads 2

Prints per mode and epoch the median seconds over the rounds (process CPU time with one
thread, wall time with more), the last epoch against the first, the test accuracy and how
many of Adam's first-moment entries are subnormal at the end; then each epoch's ratio of
the two modes. Also the CPU model and the load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import cpu_model  # noqa: E402  (beside this script, on the path above)

CHILD = r"""
import json, sys, time
import numpy as np
import fastmlp
epochs, batch, threads, samples = map(int, sys.argv[1:5])
dtype = sys.argv[5]
data = fastmlp.datasets.load_fashion_mnist(dtype=dtype)
X, y = data.X_train[:samples], data.y_train[:samples]
model = fastmlp.MLP([784, 512, 256, 10], activation="relu", loss="cross_entropy",
                    init="he_normal", dtype=dtype, seed=0, threads=threads)
opt = fastmlp.optim.Adam(lr=1e-3)
clock = time.process_time if threads == 1 else time.perf_counter
times = []
for _ in range(epochs):
    t = clock()
    model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt)
    times.append(clock() - t)
acc = float((model.predict(data.X_test).argmax(1) == data.y_test).mean())
tiny = np.finfo(dtype).tiny
m = [np.asarray(v) for s in opt.state for k, v in s.items() if k == "exp_avg"]
sub = sum(int(np.count_nonzero((a != 0) & (np.abs(a) < tiny))) for a in m)
total = sum(a.size for a in m)
print(json.dumps({"times": times, "accuracy": acc, "subnormal": sub, "moments": total,
                  "flush": fastmlp.flush_denormal(), "source": data.source}))
"""


def load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def run(flush: bool, args) -> dict:
    env = dict(os.environ, FASTMLP_FLUSH_DENORMAL="1" if flush else "0")
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.epochs), str(args.batch_size),
                          str(args.threads), str(args.samples), args.dtype],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["flush"] != flush:
        raise RuntimeError("the child's flush setting is not the one asked for")
    return result


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--samples", type=int, default=60000,
                   help="training rows used (the first ones; default all)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "threads", "rounds", "samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    print(f"CPU: {cpu_model()}; load before: {load()}")
    print(f"784-512-256-10, Adam, {args.dtype}, batch {args.batch_size}, {args.threads} "
          f"thread(s), {args.epochs} epochs, {args.rounds} round(s)")
    runs = {True: [], False: []}
    for r in range(args.rounds):
        for flush in ((True, False) if r % 2 == 0 else (False, True)):
            runs[flush].append(run(flush, args))
    print(f"data: {runs[True][0]['source']}; load after: {load()}")
    med = {}
    for flush in (True, False):
        rs = runs[flush]
        med[flush] = [statistics.median(r["times"][e] for r in rs) for e in range(args.epochs)]
        name = "flush (default)" if flush else "IEEE (flush off)"
        print(f"{name:17s} epochs (s): " + " ".join(f"{t:.2f}" for t in med[flush]) +
              f" | last/first {med[flush][-1] / med[flush][0]:.2f}x"
              f" | test accuracy {statistics.median(r['accuracy'] for r in rs):.4f}"
              f" | subnormal first moments {rs[0]['subnormal']:,} of {rs[0]['moments']:,}")
    print("IEEE / flush, per epoch: " +
          " ".join(f"{a / b:.2f}x" for a, b in zip(med[False], med[True])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
