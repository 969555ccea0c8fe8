"""The data-parallel cost model of docs/scaling.md, on paper: per training step, the compute
of one rank's share of the batch against the allreduce of the gradient, for the two
networks, global batches, rank counts and networks the document tabulates.

    python benchmarks/scaling_model.py                     # the tables of docs/scaling.md
    python benchmarks/scaling_model.py --peak 240 --cores-per-rank 2

Model (docs/scaling.md explains each term):
  FLOPs per sample = forward 2 W + backward 4 W - 2 W_0  (W weights, W_0 the first layer's:
                     its input gradient is never computed)
  compute per step = (B / p) * FLOPs per sample / (cores per rank * peak * efficiency)
  allreduce        = ring: 2 (p - 1) / p * P * 4 bytes / bandwidth + 2 (p - 1) * latency
  step             = compute + allreduce (no overlap), speedup = step(1 rank) / step(p)
  minimum per-rank batch = the one whose compute equals the allreduce (50% efficiency)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

NETWORKS = ((784, 512, 256, 10), (784, 2048, 2048, 2048, 10))
GLOBAL_BATCHES = (128, 512, 4096)
RANKS = (1, 2, 16)
# (Gbit/s, latency of one message in seconds): TCP over 1 and 10 Gbit/s Ethernet,
# RDMA over a 100 Gbit/s fabric (assumed: typical values, not measured here)
LINKS = ((1, 50e-6), (10, 20e-6), (100, 2e-6))
PEAK_GFLOPS = 117.0  # float32 FMA peak of one Zen 4 core (DESIGN.md section 4)
EFFICIENCY = 0.70  # the share of it an epoch of MLP training sustains
DTYPE_BYTES = 4  # float32 gradients


def weights(sizes: Sequence[int]) -> int:
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def parameters(sizes: Sequence[int]) -> int:
    """Weights and biases: what the allreduce sums."""
    return weights(sizes) + sum(sizes[1:])


def flops_per_sample(sizes: Sequence[int]) -> int:
    """Forward 2 W, backward 4 W less the first layer's input gradient (2 W_0)."""
    return 6 * weights(sizes) - 2 * sizes[0] * sizes[1]


def allreduce_seconds(n_bytes: float, ranks: int, gbit: float, latency: float) -> float:
    """Ring allreduce of n_bytes over `ranks`: each rank sends and receives 2 (p-1)/p of
    the bytes, in 2 (p-1) messages."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * n_bytes / (gbit * 1e9 / 8) + 2 * (ranks - 1) * latency


def compute_seconds(sizes: Sequence[int], samples: float, rate: float) -> float:
    return samples * flops_per_sample(sizes) / rate


def min_rank_batch(sizes: Sequence[int], ranks: int, gbit: float, latency: float,
                   rate: float) -> float:
    """The per-rank batch whose compute equals the allreduce: from it on, at least half
    of each step is computing (efficiency >= 50% without overlap)."""
    comm = allreduce_seconds(parameters(sizes) * DTYPE_BYTES, ranks, gbit, latency)
    return comm / compute_seconds(sizes, 1, rate)


def tables(peak_gflops: float = PEAK_GFLOPS, efficiency: float = EFFICIENCY,
           cores_per_rank: int = 1) -> str:
    """The document's tables, as Markdown."""
    rate = peak_gflops * 1e9 * efficiency * cores_per_rank
    out = [f"Assumed: {peak_gflops:g} GFLOP/s peak per core x {efficiency:.0%} efficiency x "
           f"{cores_per_rank} core(s) per rank = {rate / 1e9:.1f} GFLOP/s per rank; float32 "
           "gradients; ring allreduce; latency per message " +
           ", ".join(f"{latency * 1e6:g} us at {g} Gbit/s" for g, latency in LINKS) + "."]
    for sizes in NETWORKS:
        name = "-".join(map(str, sizes))
        n_bytes = parameters(sizes) * DTYPE_BYTES
        out += ["", f"### {name}", "",
                f"{parameters(sizes):,} parameters ({n_bytes / 1e6:.2f} MB of float32 "
                f"gradient per step), {flops_per_sample(sizes) / 1e6:.2f} MFLOP per sample.",
                "", "| global batch | ranks | batch per rank | compute ms | " +
                " | ".join(f"{g} Gbit/s: allreduce ms, speedup" for g, _ in LINKS) + " |",
                "|---:|---:|---:|---:|" + "---:|" * len(LINKS)]
        for batch in GLOBAL_BATCHES:
            single = compute_seconds(sizes, batch, rate)
            for p in RANKS:
                compute = compute_seconds(sizes, batch / p, rate)
                cells = []
                for gbit, latency in LINKS:
                    comm = allreduce_seconds(n_bytes, p, gbit, latency)
                    cells.append(f"{comm * 1e3:.2f}, {single / (compute + comm):.2f}x" if p > 1
                                 else "-, 1x")
                out.append(f"| {batch} | {p} | {batch / p:g} | {compute * 1e3:.2f} | " +
                           " | ".join(cells) + " |")
    out += ["", "### Minimum batch per rank (compute = allreduce: 50% efficiency)", "",
            "| network | ranks | " + " | ".join(f"{g} Gbit/s" for g, _ in LINKS) + " |",
            "|---|---:|" + "---:|" * len(LINKS)]
    for sizes in NETWORKS:
        for p in RANKS[1:]:
            cells = [f"{min_rank_batch(sizes, p, g, latency, rate):,.0f}" for g, latency in LINKS]
            out.append(f"| {'-'.join(map(str, sizes))} | {p} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak", type=float, default=PEAK_GFLOPS,
                        help="float32 FMA peak of one core, GFLOP/s (default %(default)s)")
    parser.add_argument("--efficiency", type=float, default=EFFICIENCY,
                        help="share of the peak training sustains (default %(default)s)")
    parser.add_argument("--cores-per-rank", type=int, default=1,
                        help="engine threads (cores) of each rank (default %(default)s)")
    args = parser.parse_args(argv)
    if args.peak <= 0 or not 0 < args.efficiency <= 1 or args.cores_per_rank < 1:
        parser.error("--peak must be > 0, --efficiency in (0, 1], --cores-per-rank >= 1")
    print(tables(args.peak, args.efficiency, args.cores_per_rank))
    return 0


if __name__ == "__main__":
    sys.exit(main())
