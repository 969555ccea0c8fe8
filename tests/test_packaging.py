"""What the package ships and declares."""

from __future__ import annotations

from importlib.metadata import version

import fastmlp


def test_version_is_written_in_one_place():
    """pyproject.toml takes the version from fastmlp/__init__.py (scikit-build-core's regex
    provider): the installed metadata and fastmlp.__version__ agree."""
    assert fastmlp.__version__ == version("fastmlp")
