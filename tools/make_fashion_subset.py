#!/usr/bin/env python3
"""Build the Fashion-MNIST subset embedded in fastmlp.

Reads the four original Fashion-MNIST IDX files, draws a stratified,
deterministic (seeded) subset with the same number of images per class, and
writes it as a compressed ``.npz`` (keys ``X_train`` (n, 28, 28) uint8,
``y_train`` uint8, ``X_test``, ``y_test``) to
``src/fastmlp/data/fashion_mnist_subset.npz``.  The per-class counts are the
largest of a list of round candidates for which the file stays within the
size budget.  The licence notice ``FASHION_MNIST_LICENSE.txt`` is rewritten
next to it with a line describing the subset.

The ``.npz`` is written with fixed zip timestamps, so re-running the script
on the same input produces a byte-identical file.

Usage::

    python tools/make_fashion_subset.py [SOURCE_DIR] [--seed N] [--max-mb X]

``SOURCE_DIR`` defaults to ``../shared/datasets/fashion-mnist`` relative to
the repository root.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "datasets" / "fashion-mnist"
OUT_DIR = REPO_ROOT / "src" / "fastmlp" / "data"
OUT_NPZ = OUT_DIR / "fashion_mnist_subset.npz"
OUT_LICENSE = OUT_DIR / "FASHION_MNIST_LICENSE.txt"

#: (train per class, test per class), largest first.
CANDIDATES = [
    (1200, 200),
    (1000, 200),
    (900, 200),
    (800, 200),
    (750, 150),
    (600, 150),
    (500, 100),
    (400, 100),
    (300, 100),
    (200, 50),
    (100, 50),
]

LICENSE_TEXT = (
    "The MIT License (MIT) Copyright © 2017 Zalando SE, https://tech.zalando.com\n"
    "\n"
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this "
    "software and associated documentation files (the “Software”), to deal in the Software "
    "without restriction, including without limitation the rights to use, copy, modify, "
    "merge, publish, distribute, sublicense, and/or sell copies of the Software, and to "
    "permit persons to whom the Software is furnished to do so, subject to the following "
    "conditions:\n"
    "\n"
    "The above copyright notice and this permission notice shall be included in all copies or "
    "substantial portions of the Software.\n"
    "\n"
    "THE SOFTWARE IS PROVIDED “AS IS”, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, "
    "INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR "
    "PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE "
    "LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT "
    "OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR "
    "OTHER DEALINGS IN THE SOFTWARE.\n"
)


def _load_datasets_module():
    """Import src/fastmlp/datasets.py without importing the whole package."""
    path = REPO_ROOT / "src" / "fastmlp" / "datasets.py"
    spec = importlib.util.spec_from_file_location("_fastmlp_datasets", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def stratified_indices(
    labels: np.ndarray, per_class: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick ``per_class`` indices of every class, returned in file order."""
    picked = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        if idx.size < per_class:
            raise SystemExit(
                f"class {c} has only {idx.size} samples, need {per_class}"
            )
        picked.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic compressed .npz (fixed timestamps, zlib level 9)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr),
                                      allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def build(source: Path, seed: int, per_train: int, per_test: int,
          ds) -> dict[str, np.ndarray]:
    def find(base: str) -> Path:
        for name in (base, base + ".gz"):
            if (source / name).is_file():
                return source / name
        raise SystemExit(f"{source}: {base}[.gz] not found")

    Xtr = ds.read_idx(find("train-images-idx3-ubyte"))
    ytr = ds.read_idx(find("train-labels-idx1-ubyte"))
    Xte = ds.read_idx(find("t10k-images-idx3-ubyte"))
    yte = ds.read_idx(find("t10k-labels-idx1-ubyte"))
    rng = np.random.default_rng(seed)
    itr = stratified_indices(ytr, per_train, rng)
    ite = stratified_indices(yte, per_test, rng)
    return {
        "X_train": Xtr[itr].astype(np.uint8),
        "y_train": ytr[itr].astype(np.uint8),
        "X_test": Xte[ite].astype(np.uint8),
        "y_test": yte[ite].astype(np.uint8),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE,
                        help=f"directory with the IDX files (default {DEFAULT_SOURCE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-mb", type=float, default=6.0,
                        help="size budget of the .npz in MB (10**6 bytes)")
    parser.add_argument("--out", type=Path, default=OUT_NPZ)
    args = parser.parse_args(argv)

    ds = _load_datasets_module()
    budget = int(args.max_mb * 1_000_000)
    for per_train, per_test in CANDIDATES:
        arrays = build(args.source, args.seed, per_train, per_test, ds)
        data = npz_bytes(arrays)
        print(f"{per_train}/class train + {per_test}/class test: "
              f"{len(data)} bytes", file=sys.stderr)
        if len(data) <= budget:
            break
    else:
        raise SystemExit("no candidate fits the size budget")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    n_tr, n_te = len(arrays["y_train"]), len(arrays["y_test"])
    note = (
        f"fastmlp embeds {args.out.name}: a stratified subset of Fashion-MNIST "
        f"({per_train} train images per class = {n_tr}, {per_test} test images "
        f"per class = {n_te}; uint8 pixels, unmodified) drawn without "
        f"replacement with numpy.random.default_rng({args.seed}) from the "
        "original IDX files by tools/make_fashion_subset.py."
    )
    license_path = args.out.parent / OUT_LICENSE.name
    license_path.write_text(
        "Fashion-MNIST, https://github.com/zalandoresearch/fashion-mnist\n\n"
        + LICENSE_TEXT + "\n" + note + "\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out} ({len(data)} bytes) and {license_path}")
    print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
