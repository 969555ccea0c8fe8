"""The course gallery (examples/course/): every script runs with --quick and writes a
valid PNG into the directory it is given.

The scripts run in this process (runpy, as ``__main__``, with their own argv), so the
import of fastmlp and matplotlib is paid once; warnings are errors for them as well.
"""

from __future__ import annotations

import runpy
import struct
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")  # the edge-of-stability script's Lanczos iteration

COURSE = Path(__file__).resolve().parents[1] / "examples" / "course"
SCRIPTS = sorted(p.stem for p in COURSE.glob("[!_]*.py")) if COURSE.is_dir() else []
SLOW = {"vanishing_gradients", "minibatch_noise", "l0_pruning"}  # a few seconds each


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG whose chunks and checksums are all intact."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    pos, kinds, size = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad checksum in chunk {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    return size


def test_the_gallery_is_there():
    if not COURSE.is_dir():
        pytest.skip("examples/ is not next to the tests (an installed copy of the tests)")
    assert len(SCRIPTS) >= 9


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW
                                    else s for s in SCRIPTS])
def test_script_writes_a_png(script, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(COURSE))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--quick", "--out", str(tmp_path / "f")])
    runpy.run_path(str(COURSE / f"{script}.py"), run_name="__main__")
    out = tmp_path / "f" / f"{script}.png"
    assert f"wrote {out}" in capsys.readouterr().out
    width, height = png_size(out.read_bytes())
    assert width >= 200 and height >= 200
    assert [p.name for p in (tmp_path / "f").iterdir()] == [out.name]  # no temporary left
