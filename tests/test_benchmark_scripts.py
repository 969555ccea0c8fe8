"""The benchmark scripts that draw figures still run (at tiny sizes), so they never rot."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
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
    # 784-512-256-10: 4 W0 + 6 (W - W0) per sample (issue 18's count, biases left out)
    W0, W = 784 * 512, 784 * 512 + 512 * 256 + 256 * 10
    assert sweep.flops_per_sample((784, 512, 256, 10)) == 4 * W0 + 6 * (W - W0)


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


def test_second_order_quick_writes_figures_and_a_table_with_every_method(tmp_path, capsys):
    """The solver comparison of docs/second_order.md (issue 17) at tiny sizes."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("scipy")
    pytest.importorskip("threadpoolctl")
    bench = _load("second_order")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for case, methods in (("clouds", bench.SMALL), ("autoencoder", bench.LARGE),
                          ("regression", bench.SMALL)):
        data = (tmp_path / f"second_order_{case}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
        section = out[out.index(f"**{case}**"):]
        section = section[:section.index("![")]
        for method in methods:
            assert f"| {bench.LABELS[method]} |" in section
        assert "Within Adam's time: Hessian-free" in section
    assert not list(tmp_path.glob("*.tmp"))


def test_second_order_summary_columns():
    """The table's columns from hand-made traces: the first time a target is reached, the
    best loss within a time, medians over seeds with an unreached target as infinite."""
    pytest.importorskip("scipy")
    pytest.importorskip("threadpoolctl")
    bench = _load("second_order")
    r = {"times": np.array([0.0, 1.0, 2.0, 3.0]), "losses": np.array([4.0, 3.0, 1.0, 2.0]),
         "note": ""}
    assert bench.first_reaching(r, 2.5) == (2.0, 2)
    assert bench.first_reaching(r, 0.5) == (None, None)
    assert bench.loss_at(r, 2.5) == 1.0 and bench.loss_at(r, 0.0) == 4.0
    case = bench.regression(10, 1.0, [0, 1, 2])
    adam = {"times": np.array([0.0, 2.0]), "losses": np.array([4.0, 1.5]), "note": ""}
    slow = {"times": np.array([0.0, 5.0]), "losses": np.array([4.0, 2.0]), "note": ""}
    lbfgs = bench.summarize(case, {"adam": [adam] * 3, "lbfgs": [r, r, slow]})[1]
    assert lbfgs["t_target"] == 2.0 and lbfgs["it_target"] == 2  # median of 2, 2, inf
    assert lbfgs["at_adam"] == 1.0 and lbfgs["final"] == 2.0 and lbfgs["time"] == 3.0


def test_blas_path_benchmark_prints_its_table(capsys):
    """benchmarks/blas_path.py (issue 18) at a tiny size: a row per contender and batch."""
    pytest.importorskip("scipy")
    pytest.importorskip("threadpoolctl")
    from fastmlp import _engine

    before = _engine.kernel()
    bench = _load("blas_path")
    assert bench.main(["--samples", "300", "--repeats", "1", "--batch-sizes", "100"]) == 0
    out = capsys.readouterr().out
    assert out.count("| 100 | blas |") == 1 and out.count("| 100 | numpy |") == 1
    assert "load average before" in out and "load average after" in out
    assert _engine.kernel() == before  # the benchmark gives the kernel choice back


def test_ab_runs_one_build_two_ways(capsys):
    """benchmarks/ab.py with the installed build on both sides, the fused update off on
    one (--env-old): two fits per round, the same bits (issue 18's fused update)."""
    import os

    import fastmlp

    site = os.path.dirname(os.path.dirname(fastmlp.__file__))
    if not os.path.isfile(os.path.join(site, "fastmlp", "__init__.py")) or \
            site == str(BENCHMARKS.parent / "src"):
        pytest.skip("fastmlp is not installed into a site directory (editable install)")
    ab = _load("ab")
    assert ab.main([site, site, "--env-old", "FASTMLP_FUSED_UPDATE=0", "--sizes", "30", "64",
                    "10", "--samples", "300", "--rounds", "2", "--batch-size", "16", "50",
                    "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for b in (16, 50):
        line = next(x for x in out.splitlines() if f"batch {b}," in x)
        assert line.endswith("trained models bitwise equal: yes")
    assert "FASTMLP_FUSED_UPDATE=0: min" in out
    assert out.count("  paired by round: old/new median ") == 2
    with pytest.raises(SystemExit):
        ab.main([site, site, "--env-new", "NOEQUALS"])


def test_ab_pairs_rounds_and_tests_their_signs():
    """ab.py's paired summary from known times: per-round ratios, the count of rounds the
    new side won, and the two-sided sign test (exact binomial tails)."""
    ab = _load("ab")
    assert ab.sign_test(0, 0) == 1.0 and ab.sign_test(3, 6) == 1.0
    assert ab.sign_test(9, 11) == pytest.approx(2 * (1 + 11 + 55) / 2048)
    assert ab.sign_test(2, 11) == ab.sign_test(9, 11)
    assert ab.sign_test(5, 5) == pytest.approx(2 / 32)
    line = ab.paired([1.0, 1.1, 0.9, 1.2, 1.0], [0.5, 1.0, 1.0, 1.0, 1.0])
    assert line == ("paired by round: old/new median 1.100x, range 0.900-2.000x; new faster "
                    "in 3 of 5 rounds (sign test p = 0.62)")


def test_targets18_quick_measures_every_target(capsys):
    """benchmarks/targets18.py (issue 18's every target in one run) at tiny sizes: the peaks
    of both dtypes, a row per workload and contender with a verdict on each goal, the load
    before and after every workload, and the kernel choice given back."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("the peak measurement needs a C compiler")
    from fastmlp import _engine

    before = _engine.kernel()
    bench = _load("targets18")
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| (")]
    for target, threads in (("a", 1), ("a", 2), ("c", 1), ("c", 2), ("d", 1), ("d", 2)):
        mine = [r for r in rows if r.startswith(f"| ({target}) |") and f"| {threads} |" in r
                and "| fastmlp |" in r]
        assert mine and all(": met |" in r or ": NOT met |" in r or ": not judged (" in r
                            for r in mine)
    sgd = [r for r in rows if f"| {bench.SGD} |" in r]  # (a)'s one-thread batches, no goal
    assert len(sgd) == 2 and all(r.startswith("| (a) |") and "| 1 |" in r for r in sgd)
    assert all("no goal; Adam's epoch took " in r for r in sgd)
    for r in rows:  # GFLOP/s and % of peak are figures (none for (e), a ratio instead)
        cols = [c.strip() for c in r.strip("|").split("|")]
        if cols[0] != "(e)":
            assert float(cols[6]) > 0 and all(float(p) > 0 for p in cols[7].split(" / "))
    b = [r for r in rows if r.startswith("| (b) |") and "| fastmlp |" in r]
    assert len(b) == 1 and "| float64 |" in b[0]
    if importlib.util.find_spec("torch") is not None:
        assert "x PyTorch (>= 2x: " in b[0]
    assert out.count("load average before") >= 5 and out.count(", after ") >= 5
    assert "float64 1 thread(s)" in out and "float32 2 thread(s)" in out
    fused = "on" if _engine.fused_update() else "off"
    assert f"optimizer update fused into the backward pass: {fused}" in out
    assert _engine.kernel() == before


def test_targets18_verdicts_from_known_times():
    """The table's judgement from hand-made runs: % of peak by the median, the ratio to
    PyTorch, NumPy's loop for (e), and two-thread goals left unjudged when the two-thread
    peak shows a busy second core."""
    bench = _load("targets18")

    def cell(target, threads, contender, times, goal=None, dtype="float32", what="w"):
        c = bench.Cell(target, what, dtype, threads, contender, 80e9, goal)
        c.times = times
        return c

    cells = [cell("a", 1, "fastmlp", [1.0, 1.1, 2.0], 80.0),    # median 1.1 s: 72.7 GFLOP/s
             cell("a", 1, bench.SGD, [0.8, 0.88, 0.9]),         # median 0.88 s
             cell("a", 1, "fastmlp", [0.9, 1.0, 1.05], 80.0, what="v"),   # 80 GFLOP/s
             cell("a", 2, "fastmlp", [0.5, 0.5, 0.5], 75.0),    # 160 GFLOP/s
             cell("b", 1, "fastmlp", [2.0, 2.0, 2.0], 70.0, "float64"),  # 40 GFLOP/s
             cell("b", 1, "pytorch", [4.5, 4.0, 5.0], None, "float64"),
             cell("e", 1, "blas (forced)", [1.0, 1.2, 1.4]),
             cell("e", 1, "numpy loop", [1.0, 1.0, 1.0])]
    peak = {("float32", 1): 100.0, ("float32", 2): 200.0, ("float64", 1): 50.0,
            ("float64", 2): 100.0}
    rows = bench.verdicts(cells, peak)
    assert rows[0][1] == pytest.approx(80 / 1.1) and rows[0][3] == pytest.approx(800 / 11)
    assert rows[0][2] == pytest.approx(80.0) and rows[0][4].endswith(": NOT met")
    sgd = rows.pop(1)  # the same epoch with plain SGD: no goal, Adam's share instead
    assert sgd[3] == pytest.approx(8000 / 88)
    assert sgd[4] == "no goal; Adam's epoch took 1.25x this (Adam's update beyond plain " \
                     "SGD's: 20 % of it)"
    assert rows[1][4] == ">= 80%: met"
    assert rows[2][3] == pytest.approx(80.0) and rows[2][4] == ">= 75%: met"
    assert rows[3][4] == ">= 70%: met; 2.25x PyTorch (>= 2x: met)"
    assert rows[5][4] == "1.20x NumPy's loop: met" and rows[5][1] is None
    close = bench.verdicts([cell("d", 1, "fastmlp", [1.0, 1.0, 1.0], 80.0)],
                           {("float32", 1): 100.02})  # 79.98 %: "80.0" in the table
    assert close[0][4] == ">= 80%: NOT met (79.98 %)"
    busy = dict(peak)
    busy["float32", 2] = 170.0  # 1.7x one thread's: the second core was partly taken
    assert "not judged" in bench.verdicts(cells, busy)[3][4]
    assert bench.verdicts(cells, busy)[2][4] == ">= 80%: met"


def test_targets18_settles_other_threads_before_timing():
    """settle() returns as soon as no other thread of the process burns CPU, and gives up
    at its limit while one does (a spinning thread here)."""
    import threading

    bench = _load("targets18")
    assert bench.settle(limit=5.0) < 5.0
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        assert bench.settle(limit=0.1) >= 0.1
    finally:
        stop.set()
        t.join()


def test_peak_takes_float32_or_float64_only():
    """peak.py measures either dtype's FMA peak (targets18.py's quick test runs both); any
    other dtype is refused before anything is compiled."""
    peak = _load("peak")
    with pytest.raises(ValueError, match="float32' or 'float64"):
        peak.measure_peak(1, dtype="float16")


def test_update_cost_builds_and_times_each_rule(tmp_path):
    """benchmarks/update_cost.c (the optimizer updates' ns per parameter: whether Adam is
    bound by its division and square root, as on session 9's Xeon, or by memory, beside
    a loop with Adam's reads and writes and neither) builds against csrc/optim.c as its
    header says, and prints a time for each rule; a bad size is refused."""
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("update_cost.c needs a C compiler")
    root = BENCHMARKS.parent
    exe = tmp_path / "update_cost"
    subprocess.run([cc, "-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp",
                    f"-I{root / 'csrc'}", str(BENCHMARKS / "update_cost.c"),
                    str(root / "csrc" / "optim.c"), str(root / "csrc" / "fpenv.c"), "-o", str(exe),
                    "-lm"], check=True)
    out = subprocess.run([str(exe), "1000", "20"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [r[:2] for r in rows] == [[rule, dtype] for dtype in ("float32", "float64")
                                     for rule in ("sgd", "sgd_momentum", "adam",
                                                  "adam_traffic")]
    assert all(r[2] == "1000" and float(r[3]) > 0 for r in rows)
    bad = subprocess.run([str(exe), "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_subnormal_times_each_epoch_both_ways(capsys):
    """benchmarks/subnormal.py (a fit's epochs with the subnormal flush on and off, each in
    its own process) runs at a tiny size and reports both modes; bad counts are refused."""
    subnormal = _load("subnormal")
    assert subnormal.main(["--epochs", "2", "--samples", "256", "--batch-size", "64",
                           "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "fastmlp, flush (default) epochs (s):" in out and "fastmlp, IEEE" in out
    assert out.count("test accuracy") == 2 and "fastmlp IEEE / flush, per epoch:" in out
    with pytest.raises(SystemExit):
        subnormal.parse(["--epochs", "0"])


def test_subnormal_with_pytorch(capsys):
    """--torch adds PyTorch's epochs, by default and flushing, and their ratio to fastmlp's."""
    pytest.importorskip("torch")
    subnormal = _load("subnormal")
    assert subnormal.main(["--epochs", "1", "--samples", "128", "--batch-size", "64",
                           "--rounds", "1", "--torch"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch (default)" in out and "PyTorch, flush" in out
    assert out.count("test accuracy") == 4
    assert "PyTorch (default) / fastmlp (default), per epoch:" in out
