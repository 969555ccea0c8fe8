"""Same-run A/B of two builds of fastmlp: one-epoch fits, alternating, each in its own process.

On a shared, noisy machine only ratios measured side by side mean much. Install each build
into its own new directory (``pip install -t`` into one that already holds fastmlp keeps
the old build and only warns), then compare them::

    git worktree add /tmp/old <commit>
    pip install --no-build-isolation --no-deps -t /tmp/old-site /tmp/old
    pip install --no-build-isolation --no-deps -t /tmp/new-site .
    python benchmarks/ab.py /tmp/old-site /tmp/new-site --batch-size 32 --rounds 3
    python benchmarks/ab.py /tmp/old-site /tmp/new-site --batch-size 32 128 512 --threads 1 \
        --cpu-time

With ``--cpu-time`` a child reports the CPU seconds of its process instead of wall time: with
one thread, the time its core worked on the fit, which other processes sharing the machine
change much less than the wall clock; ``benchmarks/peak.py --cpu-time`` is its peak.
Several batch sizes are timed in the same rounds, interleaved.

The two sides may also be one build run two ways: ``--env-old``/``--env-new KEY=VALUE``
(repeatable) add to each side's environment, e.g. the optimizer update fused into the
backward pass against the separate pass, with the build in the current environment::

    SITE=$(python -c "import fastmlp, os; print(os.path.dirname(os.path.dirname(fastmlp.__file__)))")
    python benchmarks/ab.py $SITE $SITE --env-old FASTMLP_FUSED_UPDATE=0 --batch-size 32 \
        --threads 1 --cpu-time

Within a round the two sides run in turn, the old side first in the first, third, ...
rounds and the new side first in the others (neither always runs right after the other).
Besides the ratio of the medians the script prints the rounds paired: each round's old/new
ratio (their median and range), in how many rounds the new side was faster, and the
two-sided sign test's p-value of that count (how often fair coins would split the rounds
as unevenly: on this project's busy machines a median ratio within a few percent of 1
with p above 0.1 is no evidence either way).

Each child puts its directory first on ``sys.path``, fits a fresh model once on 2,048 samples
(warm-up), then times one epoch on ``--samples`` synthetic samples (Adam, lr 1e-3; float32,
or ``--dtype float64``): of the
same model and optimizer, or with ``--fresh`` of a new model and optimizer made before the
timer starts, as ``benchmarks/peers.py`` times them (its first step then pays for the
optimizer state and the divergence snapshot). The script also says whether the two builds'
models end bitwise equal (a change that only moves data, such as a copy, must keep them
so). Run it
with an interpreter that has no editable install of fastmlp: an editable install's import
hook would win over ``sys.path``, and the child refuses to run then.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys

CHILD = r"""
import hashlib, json, sys, time
site, sizes = sys.argv[1], json.loads(sys.argv[2])
batch, samples, threads, fresh, cpu = map(int, sys.argv[3:8])
dtype = sys.argv[8]
clock = time.process_time if cpu else time.perf_counter
sys.path.insert(0, site)
import numpy as np
import fastmlp
from fastmlp import optim
if not fastmlp.__file__.startswith(site):
    sys.exit(f"fastmlp was imported from {fastmlp.__file__}, not from {site}")
rng = np.random.default_rng(0)
X = rng.standard_normal((samples, sizes[0]), dtype=np.float32).astype(dtype)
y = rng.integers(0, sizes[-1], size=samples)
model, opt = fastmlp.MLP(sizes, seed=0, threads=threads, dtype=dtype), optim.Adam(lr=1e-3)
model.fit(X[:2048], y[:2048], epochs=1, batch_size=batch, optimizer=opt)
if fresh:
    model, opt = fastmlp.MLP(sizes, seed=0, threads=threads, dtype=dtype), optim.Adam(lr=1e-3)
t = clock()
model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt)
print(clock() - t, hashlib.sha256(model.get_flat_params().tobytes()).hexdigest())
"""


def sign_test(faster: int, rounds: int) -> float:
    """Two-sided sign test: the chance that fair coins split `rounds` at least as unevenly
    as `faster` against the rest (ties counted on neither side beforehand)."""
    if rounds == 0:
        return 1.0
    low = min(faster, rounds - faster)
    tail = sum(math.comb(rounds, i) for i in range(low + 1)) / 2 ** rounds
    return min(1.0, 2 * tail)


def paired(old: list, new: list) -> str:
    """The rounds paired: each round's old/new ratio, how many favoured the new side, and
    the sign test's p-value of that count."""
    ratios = [o / n for o, n in zip(old, new)]
    untied = [r for r in ratios if r != 1.0]
    faster = sum(r > 1.0 for r in untied)
    return (f"paired by round: old/new median {statistics.median(ratios):.3f}x, range "
            f"{min(ratios):.3f}-{max(ratios):.3f}x; new faster in {faster} of {len(ratios)} "
            f"rounds (sign test p = {sign_test(faster, len(untied)):.2f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="directory holding the first build (pip install -t)")
    ap.add_argument("new", help="directory holding the second build")
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 256, 10])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[128])
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time by the process's CPU seconds (one thread on a shared machine)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--fresh", action="store_true",
                    help="time a new model and optimizer (made before the timer starts)")
    for side in ("old", "new"):
        ap.add_argument(f"--env-{side}", action="append", default=[], metavar="KEY=VALUE",
                        help=f"an environment variable for the {side} side's children")
    args = ap.parse_args(argv)
    sides = {"old": (args.old, args.env_old), "new": (args.new, args.env_new)}
    envs = {}
    for side, (_, pairs) in sides.items():
        envs[side] = dict(os.environ)
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not key or not eq:
                ap.error(f"--env-{side} takes KEY=VALUE, got {pair!r}")
            envs[side][key] = value
    times = {(b, s): [] for b in args.batch_size for s in sides}
    digests = {(b, s): set() for b in args.batch_size for s in sides}
    loads = []
    for r in range(args.rounds):
        for batch in args.batch_size:
            for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                site = sides[side][0]
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, site, json.dumps(args.sizes), str(batch),
                     str(args.samples), str(args.threads), str(int(args.fresh)),
                     str(int(args.cpu_time)), args.dtype],
                    capture_output=True, text=True, env=envs[side])
                if out.returncode != 0:
                    sys.exit(out.stderr.strip() or f"the child for {site} failed")
                seconds, digest = out.stdout.split()
                times[batch, side].append(float(seconds))
                digests[batch, side].add(digest)
                loads.append(os.getloadavg()[0])
    net = "-".join(map(str, args.sizes))
    fresh = ", fresh model" if args.fresh else ""
    clock = "CPU" if args.cpu_time else "wall"
    print(f"load average (1 min) while timing: {min(loads):.1f} to {max(loads):.1f}")
    for batch in args.batch_size:
        old, new = (statistics.median(times[batch, s]) for s in sides)
        same = digests[batch, "old"] == digests[batch, "new"]
        print(f"{net}, {args.dtype}, batch {batch}, {args.samples} samples, {args.threads} "
              f"threads{fresh}, {clock} seconds: old {old:.3f} s, new {new:.3f} s (medians), "
              f"old/new {old / new:.2f}x; trained models bitwise equal: "
              f"{'yes' if same else 'no'}")
        print("  " + paired(times[batch, "old"], times[batch, "new"]))
        for side, (site, pairs) in sides.items():
            t = times[batch, side]
            label = " ".join([site] + pairs)
            print(f"  {label}: min {min(t):.3f}, runs " + ", ".join(f"{x:.3f}" for x in t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
