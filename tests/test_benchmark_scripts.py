"""The benchmark scripts that draw figures still run (at tiny sizes), so they never rot."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_flops_count_what_training_performs():
    sweep = _load("sweep")
    # 784-512-256-10: 4 W0 + 6 (W - W0) = 144.6 GFLOP per 60,000 samples (issue 18's count)
    W0, W = 784 * 512, 784 * 512 + 512 * 256 + 256 * 10
    assert sweep.flops_per_sample((784, 512, 256, 10)) == 4 * W0 + 6 * (W - W0)
    assert abs(sweep.flops_per_sample((784, 512, 256, 10)) * 60_000 / 1e9 - 144.6) < 0.1


def test_sweep_quick_writes_its_three_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("the peak measurement needs a C compiler")
    sweep = _load("sweep")
    assert sweep.main(["--quick", "--no-torch", "--out", str(tmp_path)]) == 0
    for axis in ("width", "depth", "batch"):
        data = (tmp_path / f"sweep_{axis}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    out = capsys.readouterr().out
    assert out.count("| width |") == 2 and out.count("| batch |") == 2
