"""Peak memory of a fit against the budget
``data + 2 x (parameters + optimizer state + one batch of activations) + 60 MB``.

    python benchmarks/memory.py [--samples 60000] [--batch-size 128] [--sizes 784 512 256 10]

The fit runs in a fresh subprocess; its peak RSS (ru_maxrss) minus the RSS just before
``fit`` (interpreter, NumPy, fastmlp and the data already loaded) is compared with the part
of the budget beyond the data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np
import fastmlp
from fastmlp import optim
sizes, n, batch = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
y = rng.integers(0, sizes[-1], size=n)
model = fastmlp.MLP(sizes, seed=0)
def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before = rss_now()
model.fit(X, y, epochs=1, batch_size=batch, optimizer=optim.Adam())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "data": X.nbytes + y.nbytes}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 256, 10])
    args = ap.parse_args()
    out = subprocess.run([sys.executable, "-c", CHILD,
                          json.dumps([args.sizes, args.samples, args.batch_size])],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    params = sum(a * b + b for a, b in zip(args.sizes[:-1], args.sizes[1:])) * 4
    state = 2 * params  # Adam: exp_avg, exp_avg_sq
    acts = args.batch_size * sum(args.sizes) * 4
    budget = 2 * (params + state + acts) + 60 * 2**20
    grew = r["peak"] - r["before"]
    mb = 2**20
    print(f"data {r['data'] / mb:.1f} MB; parameters {params / mb:.1f} MB, Adam state "
          f"{state / mb:.1f} MB, one batch of activations {acts / mb:.2f} MB")
    print(f"RSS before fit {r['before'] / mb:.1f} MB (interpreter, libraries, data); "
          f"peak during fit {r['peak'] / mb:.1f} MB")
    print(f"growth during fit {grew / mb:.1f} MB; budget beyond the data "
          f"2 x (params + state + activations) + 60 MB = {budget / mb:.1f} MB -> "
          f"{'within' if grew <= budget else 'OVER'} budget")
    return 0 if grew <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
