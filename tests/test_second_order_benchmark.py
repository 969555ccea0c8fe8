"""benchmarks/second_order.py (the solver comparison of docs/second_order.md) runs at tiny
sizes, writes its figures and a table with every method, so that it never rots."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "benchmarks", "second_order.py")


@pytest.fixture(scope="module")
def bench():
    """The script as a module (registered while loading: its dataclass needs that)."""
    pytest.importorskip("threadpoolctl")
    spec = importlib.util.spec_from_file_location("second_order_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_quick_run_writes_figures_and_table(bench, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("scipy")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for case, methods in (("clouds", bench.SMALL), ("autoencoder", bench.LARGE),
                          ("regression", bench.SMALL)):
        png = tmp_path / f"second_order_{case}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        section = out[out.index(f"**{case}**"):]
        section = section[:section.index("![")]
        for method in methods:
            assert f"| {bench.LABELS[method]} |" in section
        assert "Within Adam's time: Hessian-free" in section
    assert not list(tmp_path.glob("*.tmp"))


def test_trace_measures_and_summarizes(bench):
    """The table's columns from hand-made traces: the first time a target is reached, the
    best loss within a time, medians over seeds with an unreached target as infinite."""
    r = {"times": np.array([0.0, 1.0, 2.0, 3.0]), "losses": np.array([4.0, 3.0, 1.0, 2.0]),
         "note": ""}
    assert bench.first_reaching(r, 2.5) == (2.0, 2)
    assert bench.first_reaching(r, 0.5) == (None, None)
    assert bench.loss_at(r, 2.5) == 1.0 and bench.loss_at(r, 0.0) == 4.0
    case = bench.regression(10, 1.0, [0, 1, 2])
    adam = {"times": np.array([0.0, 2.0]), "losses": np.array([4.0, 1.5]), "note": ""}
    slow = {"times": np.array([0.0, 5.0]), "losses": np.array([4.0, 2.0]), "note": ""}
    rows = bench.summarize(case, {"adam": [adam] * 3, "lbfgs": [r, r, slow]})
    lbfgs = rows[1]
    assert lbfgs["t_target"] == 2.0 and lbfgs["it_target"] == 2  # median of 2, 2, inf
    assert lbfgs["at_adam"] == 1.0 and lbfgs["final"] == 2.0 and lbfgs["time"] == 3.0
