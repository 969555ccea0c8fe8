"""Measure this machine's float32 (or float64) FMA peak (1 thread and all threads) with peak.c.

    python benchmarks/peak.py            # prints the peak in GFLOP/s
    python benchmarks/peak.py --cpu-time # timed by each thread's CPU time (a shared machine)
    python benchmarks/peak.py --float64  # the float64 peak (half the lanes)

``measure_peak()`` compiles peak.c with the system C compiler (cc, with OpenMP) into a
temporary directory and returns ``{"isa": ..., "threads": {1: gflops, n: gflops}}``;
the peers script uses it to report "% of peak" for whatever machine runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure_peak(threads: int | None = None, cpu_time: bool = False,
                 dtype: str = "float32") -> dict:
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found (set CC)")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "peak"
        subprocess.run([cc, "-O3", "-fopenmp", str(HERE / "peak.c"), "-o", str(exe)],
                       check=True, capture_output=True, text=True)
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        if cpu_time:  # the rate of a core while it runs: meaningful on a shared machine
            env["PEAK_CPU_TIME"] = "1"
        if dtype == "float64":
            env["PEAK_FLOAT64"] = "1"
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True,
                             env=env).stdout.split("\n")
    result = {"isa": out[0].split()[1], "threads": {}}
    for line in out[1:]:
        if line.strip():
            t, g = line.split()
            result["threads"][int(t)] = float(g)
    return result


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--cpu-time", "--float64")]
    cpu = "--cpu-time" in sys.argv[1:]
    dtype = "float64" if "--float64" in sys.argv[1:] else "float32"
    peak = measure_peak(int(args[0]) if args else None, cpu_time=cpu, dtype=dtype)
    print(f"{dtype} FMA peak ({peak['isa']}{', timed by CPU time' if cpu else ''}):")
    for t, g in peak["threads"].items():
        print(f"  {t} thread(s): {g:.1f} GFLOP/s")
