"""Same-run A/B of two builds of fastmlp: one-epoch fits, alternating, each in its own process.

On a shared, noisy machine only ratios measured side by side mean much. Install each build
into its own directory, then compare them::

    git worktree add /tmp/old <commit> && pip install --no-build-isolation --no-deps -t /tmp/old-site /tmp/old
    pip install --no-build-isolation --no-deps -t /tmp/new-site .
    python benchmarks/ab.py /tmp/old-site /tmp/new-site --batch-size 32 --rounds 3

Each child puts its directory first on ``sys.path``, fits a fresh model once on 2,048 samples
(warm-up), then times one epoch on ``--samples`` synthetic samples (Adam, lr 1e-3): of the
same model and optimizer, or with ``--fresh`` of a new model and optimizer made before the
timer starts, as ``benchmarks/peers.py`` times them (its first step then pays for the
optimizer state and the divergence snapshot). Run it
with an interpreter that has no editable install of fastmlp: an editable install's import
hook would win over ``sys.path``, and the child refuses to run then.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
site, sizes = sys.argv[1], json.loads(sys.argv[2])
batch, samples, threads, fresh = map(int, sys.argv[3:7])
sys.path.insert(0, site)
import numpy as np
import fastmlp
from fastmlp import optim
if not fastmlp.__file__.startswith(site):
    sys.exit(f"fastmlp was imported from {fastmlp.__file__}, not from {site}")
rng = np.random.default_rng(0)
X = rng.standard_normal((samples, sizes[0]), dtype=np.float32)
y = rng.integers(0, sizes[-1], size=samples)
model, opt = fastmlp.MLP(sizes, seed=0, threads=threads), optim.Adam(lr=1e-3)
model.fit(X[:2048], y[:2048], epochs=1, batch_size=batch, optimizer=opt)
if fresh:
    model, opt = fastmlp.MLP(sizes, seed=0, threads=threads), optim.Adam(lr=1e-3)
t = time.perf_counter()
model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt)
print(time.perf_counter() - t)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="directory holding the first build (pip install -t)")
    ap.add_argument("new", help="directory holding the second build")
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 256, 10])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fresh", action="store_true",
                    help="time a new model and optimizer (made before the timer starts)")
    args = ap.parse_args(argv)
    times = {args.old: [], args.new: []}
    for _ in range(args.rounds):
        for site in (args.old, args.new):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, site, json.dumps(args.sizes), str(args.batch_size),
                 str(args.samples), str(args.threads), str(int(args.fresh))],
                capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(out.stderr.strip() or f"the child for {site} failed")
            times[site].append(float(out.stdout))
    old, new = (statistics.median(times[s]) for s in (args.old, args.new))
    net = "-".join(map(str, args.sizes))
    fresh = ", fresh model" if args.fresh else ""
    print(f"{net}, batch {args.batch_size}, {args.samples} samples, {args.threads} threads{fresh}: "
          f"old {old:.3f} s, new {new:.3f} s, old/new {old / new:.2f}x")
    for site in times:
        print(f"  {site}: " + ", ".join(f"{t:.3f}" for t in times[site]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
