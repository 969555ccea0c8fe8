"""Cost as the work grows: training throughput (GFLOP/s and % of the measured peak) of
fastmlp and PyTorch over width, depth and batch size, drawn as PNG plots.

    python benchmarks/sweep.py                    # full sweep, 1 thread, ~10 minutes
    python benchmarks/sweep.py --threads 2 --out benchmarks/figures
    python benchmarks/sweep.py --quick            # tiny sizes (the test runs this)

Three sweeps, float32, Adam, ReLU, softmax cross-entropy, random data:
  width  64 ... 4096   (784-w-w-10, batch 128)
  depth  1 ... 6       (784 then that many 512-wide hidden layers then 10, batch 128)
  batch  1 ... 2048    (784-512-256-10)
FLOPs count what is performed ("actual"): per sample 2 W forward, 2 W for the weight
gradients and 2 W for the deltas except the first layer's (no input gradient), i.e.
6 W - 2 W0 (W weights, W0 of the first layer). Each cell trains long enough to take about
``--seconds`` seconds; contenders are interleaved in every round and the best of
``--repeats`` rounds is kept (the median is printed too). The machine's load is printed;
a run on a busy machine is not evidence either way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peak import measure_peak  # noqa: E402

SEED = 0


def flops_per_sample(sizes) -> float:
    weights = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 6.0 * sum(weights) - 2.0 * weights[0]


def fastmlp_runner(threads: int):
    import fastmlp

    def run(sizes, X, y, batch):
        model = fastmlp.MLP(list(sizes), activation="relu", loss="cross_entropy",
                            init="he_normal", dtype="float32", seed=SEED, threads=threads)
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch, optimizer=fastmlp.optim.Adam(lr=1e-3))
        return time.perf_counter() - t0

    return run


def torch_mlp(torch, sizes, dtype=None):
    """PyTorch's twin of the benchmarks' network: Linear layers with ReLU between them,
    Adam (lr 1e-3) and cross-entropy; (model, optimizer, loss function)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()


def torch_runner(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)

    def run(sizes, X, y, batch):
        torch.manual_seed(SEED)
        model, opt, loss_fn = torch_mlp(torch, sizes)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(SEED))
        t0 = time.perf_counter()
        for start in range(0, len(X), batch):
            idx = perm[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xt[idx]), yt[idx]).backward()
            opt.step()
        return time.perf_counter() - t0

    return run


def cells(quick: bool) -> dict:
    if quick:
        return {"width": [(784, w, w, 10) for w in (16, 32)],
                "depth": [(784,) + (32,) * d + (10,) for d in (1, 2)],
                "batch": [(1 << k, (784, 32, 16, 10)) for k in (3, 5)]}
    return {"width": [(784, w, w, 10) for w in (64, 128, 256, 512, 1024, 2048, 4096)],
            "depth": [(784,) + (512,) * d + (10,) for d in range(1, 7)],
            "batch": [(1 << k, (784, 512, 256, 10)) for k in range(0, 12)]}


def measure(runners, sizes, batch, seconds, repeats, rng):
    """{name: (best GFLOP/s, median GFLOP/s)} for one cell."""
    flops = flops_per_sample(sizes)
    # samples for about `seconds` of fastmlp work at a guessed 20 GFLOP/s, at least 4 batches
    n = int(min(max(4 * batch, seconds * 20e9 / flops), 200_000))
    n = max(batch, n - n % batch)
    X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], n).astype(np.int64)
    for run in runners.values():  # warm-up
        run(sizes, X[: min(n, 4 * batch)], y[: min(n, 4 * batch)], batch)
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(run(sizes, X, y, batch))
    return {name: (flops * n / min(t) / 1e9, flops * n / statistics.median(t) / 1e9)
            for name, t in times.items()}


def plot(results, peak, out: Path, threads: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    labels = {"width": "hidden width (784-w-w-10, batch 128)",
              "depth": "hidden layers of 512 (batch 128)",
              "batch": "batch size (784-512-256-10)"}
    for axis, rows in results.items():
        fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
        xs = [r[0] for r in rows]
        for name in rows[0][1]:
            best = [r[1][name][0] for r in rows]
            ax.plot(xs, best, marker="o", label=name)
        ax.axhline(peak, color="grey", linestyle="--", label=f"measured peak {peak:.0f}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(labels[axis])
        ax.set_ylabel(f"GFLOP/s, training, {threads} thread(s)")
        ax.set_ylim(0, peak * 1.1)
        secondary = ax.secondary_yaxis("right", functions=(lambda g: 100 * g / peak,
                                                           lambda p: p * peak / 100))
        secondary.set_ylabel("% of peak")
        ax.legend()
        ax.set_title(f"Training throughput vs {axis}")
        fig.tight_layout()
        path = out / f"sweep_{axis}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 0.01, 1
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    peak = measure_peak(args.threads)["threads"]
    peak = peak.get(args.threads) or max(peak.values())
    runners = {"fastmlp": fastmlp_runner(args.threads)}
    torch_run = None if args.no_torch else torch_runner(args.threads)
    if torch_run is not None:
        runners["pytorch"] = torch_run
    rng = np.random.default_rng(SEED)
    results = {}
    print(f"peak {peak:.1f} GFLOP/s on {args.threads} thread(s)")
    print("| sweep | cell | " + " | ".join(f"{k} GFLOP/s best / median (% peak)"
                                           for k in runners) + " |")
    for axis, grid in cells(args.quick).items():
        rows = []
        for cell in grid:
            batch, sizes = cell if axis == "batch" else (128 if not args.quick else 16, cell)
            x = {"width": sizes[1], "depth": len(sizes) - 2, "batch": batch}[axis]
            r = measure(runners, sizes, batch, args.seconds, args.repeats, rng)
            rows.append((x, r))
            print(f"| {axis} | {x} | " + " | ".join(
                f"{b:.1f} / {m:.1f} ({100 * b / peak:.0f}%)" for b, m in r.values()) + " |",
                flush=True)
        results[axis] = rows
    for path in plot(results, peak, args.out, args.threads):
        print(f"wrote {path}")
    print(f"load average after: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
