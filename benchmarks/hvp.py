"""Cost of a Hessian-vector product against one gradient (issue 17).

On 784-512-256-10 (float32 and float64) at a batch of 512 rows, interleaved within each
round so that a busy machine hits the contenders alike, min and median of `--repeats`:

* ``grad``     the engine's objective and parameter gradient (``Engine.loss_grad``, what
  ``model.gradients`` runs, without the input gradient dL/dX): one gradient evaluation
* ``gradients`` ``model.gradients(X, y)`` (also computes dL/dX and checks the inputs)
* ``hvp``      ``model.hvp(X, y, v)`` (R-operator, engine)
* ``gnvp``     ``model.gnvp(X, y, v)`` (Gauss-Newton product, engine)
* ``torch-grad`` / ``torch-hvp``  PyTorch ``torch.func.grad`` and the double-backward
  HVP ``vjp(grad(f))`` of the same objective (skipped without torch), same thread count

    python benchmarks/hvp.py                 # the issue-17 table
    python benchmarks/hvp.py --repeats 5 --threads 1

Target: hvp <= 2.5x grad (theory about 2x: a forward-mode pass over the forward and
backward passes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import fastmlp

SIZES = [784, 512, 256, 10]


def torch_contenders(model, X, y, v, threads):
    try:
        import torch
        from torch.func import grad, vjp
    except ImportError:
        print("skipping torch: pip install torch", file=sys.stderr)
        return {}
    torch.set_num_threads(threads)
    Ws, bs = model.get_params()
    params = tuple(torch.tensor(a) for pair in zip(Ws, bs) for a in pair)
    Xt, yt = torch.tensor(X), torch.tensor(y.astype(np.int64))
    tangents, off = [], 0
    for p in params:
        tangents.append(torch.tensor(v[off : off + p.numel()]).reshape(p.shape))
        off += p.numel()
    tangents = tuple(tangents)

    def objective(*ps):
        h = Xt
        for l in range(0, len(ps), 2):
            h = h @ ps[l] + ps[l + 1]
            if l + 2 < len(ps):
                h = torch.relu(h)
        return torch.nn.functional.cross_entropy(h, yt)

    g = grad(objective, argnums=tuple(range(len(params))))

    def hvp():
        return vjp(g, *params)[1](tangents)

    return {"torch-grad": lambda: g(*params), "torch-hvp": hvp}


def fastmlp_contenders(model, X, y, v):
    """fastmlp's timed calls: the gradient alone (the engine's, no Python around it), the
    public gradients, and the two curvature products."""
    labels, dense = model._targets(y, len(X))
    return {"grad": lambda: model._engine.loss_grad(X, labels, dense),
            "gradients": lambda: model.gradients(X, y), "hvp": lambda: model.hvp(X, y, v),
            "gnvp": lambda: model.gnvp(X, y, v)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=fastmlp.default_threads())
    args = ap.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; threads {args.threads}; batch {args.batch}; {SIZES}")
    print("load before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        X = rng.normal(size=(args.batch, SIZES[0])).astype(dtype)
        y = rng.integers(0, SIZES[-1], size=args.batch)
        model = fastmlp.MLP(SIZES, dtype=dtype, seed=0, threads=args.threads)
        model.adaptive_threads = False
        v = rng.normal(size=model.get_flat_params().size).astype(dtype)
        runs = fastmlp_contenders(model, X, y, v)
        runs.update(torch_contenders(model, X, y, v, args.threads))
        for run in runs.values():  # warm up: workspaces, torch's first-call set-up
            run()
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["grad"])
        low = min(times["grad"])
        print(f"\n{dtype}:  {'contender':<11} {'min ms':>8} {'median ms':>10} {'min / grad':>11} "
              f"{'median / grad':>14}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"          {name:<11} {1e3 * min(ts):8.2f} {1e3 * med:10.2f} "
                  f"{min(ts) / low:11.2f} {med / base:14.2f}")
        if "torch-grad" in times:
            ratio = statistics.median(times["torch-hvp"]) / statistics.median(times["hvp"])
            print(f"          torch-hvp / hvp (median): {ratio:.2f}")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print("\nload after:", uptime)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


if __name__ == "__main__":
    main()
