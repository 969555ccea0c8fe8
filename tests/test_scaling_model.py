"""benchmarks/scaling_model.py: the cost model of docs/scaling.md, its hand-checkable
terms, and the page showing exactly what the script prints."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scaling_model.py"


@pytest.fixture(scope="module")
def model():
    spec = importlib.util.spec_from_file_location("scaling_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_terms_by_hand(model):
    small = (784, 512, 256, 10)
    W = 784 * 512 + 512 * 256 + 256 * 10  # 535,040 weights
    assert model.weights(small) == W
    assert model.parameters(small) == W + 512 + 256 + 10
    assert model.flops_per_sample(small) == 6 * W - 2 * 784 * 512 == 2_407_424
    n_bytes = 4 * model.parameters(small)
    assert model.allreduce_seconds(n_bytes, 1, 1, 1e-3) == 0
    # 2 ranks: each sends and receives the whole gradient once, in 2 messages
    assert model.allreduce_seconds(n_bytes, 2, 8, 1e-5) == pytest.approx(n_bytes / 1e9 + 2e-5)
    assert model.allreduce_seconds(n_bytes, 16, 8, 0) == pytest.approx(2 * 15 / 16 * n_bytes / 1e9)
    rate = 1e11
    b = model.min_rank_batch(small, 16, 10, 2e-5, rate)
    assert model.compute_seconds(small, b, rate) == pytest.approx(
        model.allreduce_seconds(n_bytes, 16, 10, 2e-5))


def test_the_page_shows_what_the_script_prints():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    page = (ROOT / "docs" / "scaling.md").read_text()
    assert out.strip() in page
    assert "| 4096 | 16 | 256 | 7.53 |" in out  # 256 samples x 2.41 MFLOP / 81.9 GFLOP/s


def test_other_assumptions_and_bad_ones(model, capsys):
    assert model.main(["--cores-per-rank", "2"]) == 0
    twice = capsys.readouterr().out
    assert "= 163.8 GFLOP/s per rank" in twice and "| 128 | 1 | 128 | 1.88 |" in twice
    for bad in (["--efficiency", "0"], ["--peak", "-1"], ["--cores-per-rank", "0"]):
        with pytest.raises(SystemExit) as exc:
            model.main(bad)
        assert exc.value.code == 2
