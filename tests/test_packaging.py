"""What the installed package ships and which Python versions its sources parse on."""

from __future__ import annotations

import ast
from importlib import metadata, resources
from pathlib import Path

import pytest

import fastmlp

OLDEST_PYTHON = (3, 9)  # pyproject's requires-python
SOURCES = sorted(Path(fastmlp.__file__).parent.rglob("*.py")) + \
    sorted(Path(__file__).parent.glob("*.py"))  # the installed package and the tests


def test_py_typed_marker_is_installed():
    assert (resources.files("fastmlp") / "py.typed").is_file()


def test_license_is_in_the_metadata():
    meta = metadata.metadata("fastmlp")
    assert "MIT License" in (meta.get("License") or "") + " ".join(meta.get_all("Classifier"))
    files = [str(f) for f in metadata.files("fastmlp") or []]
    assert any(f.endswith("LICENSE") for f in files)


def _annotations(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if a is not None and a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sources_run_on_the_oldest_supported_python(path):
    """`X | None` in an annotation is evaluated at import time on 3.9 (TypeError) unless
    the module has ``from __future__ import annotations``; match statements and other
    3.10+ grammar do not parse at all. (.ci/run also runs the suite on 3.9.)"""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path), feature_version=OLDEST_PYTHON)
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                 and any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not future:
        unions = [ast.unparse(a) for a in _annotations(tree)
                  if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                         for n in ast.walk(a))]
        assert not unions, f"{path.name}: PEP 604 annotations without the __future__ import"
    strict_zips = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                   and getattr(n.func, "id", None) == "zip"
                   and any(k.arg == "strict" for k in n.keywords)]
    assert not strict_zips, f"{path.name}: zip(strict=) is Python 3.10+ (lines {strict_zips})"


def test_version_is_written_in_one_place():
    """pyproject.toml takes the version from fastmlp/__init__.py (scikit-build-core's regex
    provider): the installed metadata and fastmlp.__version__ agree."""
    assert fastmlp.__version__ == metadata.version("fastmlp")
