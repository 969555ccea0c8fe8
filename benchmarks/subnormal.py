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

With ``--torch`` PyTorch trains the same network (``sweep.torch_mlp``: Adam, lr 1e-3) the
same way, as it runs by default (IEEE) and with ``torch.set_flush_denormal(True)``.

Prints per mode and epoch the median seconds over the rounds (process CPU time with one
thread, wall time with more), the last epoch against the first, the test accuracy and how
many of Adam's first-moment entries are subnormal at the end; then each epoch's ratio of
fastmlp's two modes (and with ``--torch``, PyTorch's default against fastmlp's). Also the
CPU model and the load before and after.
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

TORCH_CHILD = r"""
import json, sys, time
import numpy as np
import torch
import fastmlp
epochs, batch, threads, samples = map(int, sys.argv[1:5])
dtype, flush, here = sys.argv[5], sys.argv[6] == "1", sys.argv[7]
sys.path.insert(0, here)
from sweep import torch_mlp
torch.set_num_threads(threads)
if not torch.set_flush_denormal(flush) and flush:
    raise SystemExit("torch cannot flush subnormals here")
torch.manual_seed(0)
data = fastmlp.datasets.load_fashion_mnist(dtype=dtype)
X = torch.from_numpy(data.X_train[:samples])
y = torch.from_numpy(data.y_train[:samples].astype(np.int64))
model, opt, loss_fn = torch_mlp(torch, [784, 512, 256, 10], getattr(torch, dtype))
gen = torch.Generator().manual_seed(0)
clock = time.process_time if threads == 1 else time.perf_counter
times = []
for _ in range(epochs):
    t = clock()
    perm = torch.randperm(len(X), generator=gen)
    for start in range(0, len(X), batch):
        idx = perm[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(X[idx]), y[idx]).backward()
        opt.step()
    times.append(clock() - t)
with torch.no_grad():
    pred = model(torch.from_numpy(data.X_test)).argmax(1).numpy()
acc = float((pred == data.y_test).mean())
tiny = np.finfo(dtype).tiny
m = [s["exp_avg"].numpy() for s in opt.state.values()]
sub = sum(int(np.count_nonzero((a != 0) & (np.abs(a) < tiny))) for a in m)
print(json.dumps({"times": times, "accuracy": acc, "subnormal": sub,
                  "moments": sum(a.size for a in m), "flush": flush, "source": data.source}))
"""


def load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


MODES = {("fastmlp", True): "fastmlp, flush (default)", ("fastmlp", False): "fastmlp, IEEE",
         ("pytorch", False): "PyTorch (default)", ("pytorch", True): "PyTorch, flush"}


def run(mode, args) -> dict:
    library, flush = mode
    common = [str(args.epochs), str(args.batch_size), str(args.threads), str(args.samples),
              args.dtype]
    if library == "fastmlp":
        env = dict(os.environ, FASTMLP_FLUSH_DENORMAL="1" if flush else "0")
        cmd = [sys.executable, "-c", CHILD] + common
    else:
        env = dict(os.environ)
        cmd = [sys.executable, "-c", TORCH_CHILD] + common + [
            "1" if flush else "0", str(Path(__file__).resolve().parent)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
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
    p.add_argument("--torch", action="store_true",
                   help="PyTorch too, by default and with torch.set_flush_denormal(True)")
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
    modes = [("fastmlp", True), ("fastmlp", False)]
    if args.torch:
        try:
            import torch  # noqa: F401  (in this process only to say it is missing)
        except ImportError:
            raise SystemExit("--torch needs PyTorch: pip install torch==2.13.0 (CPU)")
        modes += [("pytorch", False), ("pytorch", True)]
    runs = {mode: [] for mode in modes}
    for r in range(args.rounds):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            runs[mode].append(run(mode, args))
    print(f"data: {runs[modes[0]][0]['source']}; load after: {load()}")
    med = {}
    for mode in modes:
        rs = runs[mode]
        med[mode] = [statistics.median(r["times"][e] for r in rs) for e in range(args.epochs)]
        print(f"{MODES[mode]:24s} epochs (s): " + " ".join(f"{t:.2f}" for t in med[mode]) +
              f" | last/first {med[mode][-1] / med[mode][0]:.2f}x"
              f" | test accuracy {statistics.median(r['accuracy'] for r in rs):.4f}"
              f" | subnormal first moments {rs[0]['subnormal']:,} of {rs[0]['moments']:,}")

    def ratios(a, b):
        return " ".join(f"{x / y:.2f}x" for x, y in zip(med[a], med[b]))

    print("fastmlp IEEE / flush, per epoch: " + ratios(("fastmlp", False), ("fastmlp", True)))
    if args.torch:
        print("PyTorch (default) / fastmlp (default), per epoch: " +
              ratios(("pytorch", False), ("fastmlp", True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
