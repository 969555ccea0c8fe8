"""The CPU description the engine reads (cpuid, sysfs) and the blocking it derives from it:
the reported caches match the operating system's, the k-block and row group follow the
documented rule, forcing them is checked at the boundary, and no choice of blocking (nor
the thread count) changes a single bit of training, gradients or predictions."""

from __future__ import annotations

import glob
import platform
import re
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import _engine
from conftest import make_problem, relative_error

SYSFS = Path("/sys/devices/system/cpu")


@pytest.fixture
def forced_blocking():
    """set_blocking for one test; derived blocking again afterwards."""
    yield _engine.set_blocking
    _engine.set_blocking()


def sysfs_sizes(level: int) -> set:
    """Sizes (bytes) of the data/unified caches of `level` over all CPUs sysfs lists."""
    units = {"K": 1 << 10, "M": 1 << 20, "": 1}
    sizes = set()
    for index in glob.glob(str(SYSFS / "cpu[0-9]*" / "cache" / "index[0-9]*")):
        d = Path(index)
        try:
            kind = (d / "type").read_text().strip()
            if int((d / "level").read_text()) != level or kind == "Instruction":
                continue
            m = re.fullmatch(r"(\d+)([KM]?)", (d / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if m:
            sizes.add(int(m.group(1)) * units[m.group(2)])
    return sizes


def test_kernel_info_describes_the_cpu():
    info = fastmlp.kernel_info()
    assert info["kernel"] == _engine.kernel()
    assert info["cache_source"] in ("cpuid", "sysfs", "default")
    assert info["l1d"] > 0 and info["l2"] > info["l1d"] and info["l3"] >= 0
    for dtype in ("float32", "float64"):
        b = info[dtype]
        assert all(isinstance(b[k], int) and b[k] > 0 for k in ("mr", "nr", "kc", "mc"))


@pytest.mark.skipif(not (SYSFS / "cpu0" / "cache").is_dir(), reason="no Linux cache sysfs")
def test_cache_sizes_match_the_operating_system():
    info = fastmlp.kernel_info()
    assert info["cache_source"] in ("cpuid", "sysfs")
    assert info["l1d"] in sysfs_sizes(1)
    assert info["l2"] in sysfs_sizes(2)
    if info["l3"] and sysfs_sizes(3):
        assert info["l3"] in sysfs_sizes(3)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or
                    not Path("/proc/cpuinfo").is_file(), reason="x86 Linux only")
def test_family_and_model_match_proc_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    fields = dict(re.findall(r"^(vendor_id|cpu family|model)\s*:\s*(\S+)$", text, re.MULTILINE))
    info = fastmlp.kernel_info()
    assert info["vendor"] == fields["vendor_id"]
    assert info["family"] == int(fields["cpu family"])
    assert info["model"] == int(fields["model"])


def assert_derived_blocking():
    """kc: a packed panel's kc x nr slice fills a quarter of L2 when a panel row has 128
    bytes or more (the AVX-512 tiles), else half of L1d (a multiple of 8 in [64, 4096]);
    mc: the rows sharing a panel, a multiple of mr, at most 64, within half of L2."""
    info = fastmlp.kernel_info()
    for dtype, size in (("float32", 4), ("float64", 8)):
        b = info[dtype]
        row = b["nr"] * size
        kc = (info["l2"] // 4 if row >= 128 else info["l1d"] // 2) // row // 8 * 8
        assert b["kc"] == min(max(kc, 64), 4096)
        mc = min(info["l2"] // 2 // (b["kc"] * size), 64) // b["mr"] * b["mr"]
        assert b["mc"] == max(mc, b["mr"])


def test_blocking_follows_the_caches(kernel):
    """The derived blocking on every kernel path (their panel widths differ)."""
    assert_derived_blocking()


def test_forced_blocking_is_reported_and_reset(forced_blocking):
    forced_blocking(kc=24, mc=7)
    assert fastmlp.kernel_info()["float32"]["kc"] == 24
    assert fastmlp.kernel_info()["float64"]["mc"] == 7
    forced_blocking()
    assert_derived_blocking()


@pytest.mark.parametrize("bad, error", [("8", TypeError), (1.5, TypeError), (True, TypeError),
                                        (0, ValueError), (-3, ValueError),
                                        (2**20 + 1, ValueError)])
def test_forced_blocking_rejects_bad_values(forced_blocking, bad, error):
    before = fastmlp.kernel_info()
    with pytest.raises(error, match="kc must be"):
        forced_blocking(kc=bad)
    with pytest.raises(error, match="mc must be"):
        forced_blocking(mc=bad)
    with pytest.raises(error, match="span must be"):
        forced_blocking(span=bad)
    assert fastmlp.kernel_info() == before  # nothing changed


# (kc, mc, span): None derives; small forced values split every product (K = inputs, batch
# and outputs) into many k-blocks of odd depth, row groups that end inside a tile, and spans
# of one or a few row groups (every panel packed again for each)
BLOCKINGS = [(None, None, None), (1, None, None), (7, 5, None), (64, 13, None),
             (None, 1, None), (300, 64, None), (None, None, 1), (None, 8, 20), (5, 7, 15)]


def train_and_predict(dtype, batch, threads=1):
    X, y = make_problem("cross_entropy", 130, 200, 10, seed=2)
    m = fastmlp.MLP([200, 96, 48, 10], activation="tanh", seed=3, dtype=dtype, threads=threads,
                    bias_init=0.05)
    m.fit(X, y, epochs=1, batch_size=batch, optimizer=fastmlp.optim.Adam(lr=1e-3))
    g = m.gradients(X[:70], y[:70])
    return [m.get_flat_params(), g["flat"], g["input"], m.predict(X), m.predict(X[:1])]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [16, 65])  # below and above a row group (64 rows)
def test_blocking_never_changes_results(kernel, forced_blocking, dtype, batch):
    """Every k-block continues its tiles' FMA chains from their outputs, so any kc (and any
    row group mc, any span of rows) gives the same bits as one pass over k, on one thread
    and on two."""
    first = None
    for kc, mc, span in BLOCKINGS:
        forced_blocking(kc=kc, mc=mc, span=span)
        for threads in (1, 2):
            out = train_and_predict(dtype, batch, threads)
            if first is None:
                first = out
                continue
            for a, b in zip(first, out):
                np.testing.assert_array_equal(
                    a, b, err_msg=f"kc={kc} mc={mc} span={span} threads={threads}")


def test_blocked_products_match_the_reference(forced_blocking):
    """Blocked products are the same products: float64 gradients against the NumPy
    reference with a k-block that splits every one of them."""
    forced_blocking(kc=5, mc=7, span=14)
    X, y = make_problem("cross_entropy", 70, 40, 6, seed=1)
    eng, ref = (impl([40, 33, 17, 6], activation="relu", seed=1, dtype="float64", bias_init=0.05)
                for impl in (fastmlp.MLP, fastmlp.reference.MLP))
    ge, gr = eng.gradients(X, y), ref.gradients(X, y)
    assert ge["loss"] == pytest.approx(gr["loss"], rel=1e-10)
    assert relative_error([ge["flat"], ge["input"]], [gr["flat"], gr["input"]]) <= 1e-10
