"""SciPy's BLAS for the engine's "blas" kernel path (csrc/blas.c).

`scipy.linalg.cython_blas` exports the Fortran `sgemm`/`dgemm` of the BLAS SciPy was built
against as capsules (what scikit-learn uses too); the engine calls them through those
pointers, so fastmlp links no BLAS of its own and needs SciPy only for this path. To hold
the BLAS to one thread while the engine's threads call it, the OpenBLAS that SciPy's wheels
ship is asked for its `openblas_get/set_num_threads` (SciPy's build prefixes them
`scipy_`), looked up among the libraries `cython_blas` loaded.
"""

from __future__ import annotations

import ctypes
from typing import Any

# Names of OpenBLAS's thread-count functions in the builds SciPy ships or links: SciPy's
# wheels (scipy-openblas32: prefix "scipy_"), a plain OpenBLAS, a 64-bit-integer build.
_PREFIXES = ("scipy_", "")
_SUFFIXES = ("", "64_")


def openblas_thread_functions(library: str) -> tuple[int, int]:
    """Addresses of OpenBLAS's get/set-thread-count functions visible from `library`.

    Parameters
    ----------
    library : str
        Path of a loaded shared object; its own symbols and those of the libraries it
        depends on are searched.

    Returns
    -------
    (int, int)
        Addresses of ``openblas_get_num_threads`` and ``openblas_set_num_threads`` (under
        any of the known prefixes and suffixes), or ``(0, 0)`` when there are none (another
        BLAS, or the library cannot be opened).
    """
    try:
        lib = ctypes.CDLL(library)
    except OSError:
        return 0, 0
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            try:
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
                set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
            except AttributeError:
                continue
            return (ctypes.cast(get, ctypes.c_void_p).value or 0,
                    ctypes.cast(set_, ctypes.c_void_p).value or 0)
    return 0, 0


def scipy_blas() -> tuple[Any, Any, int, int] | None:
    """SciPy's BLAS as the engine registers it.

    Returns
    -------
    tuple or None
        ``(sgemm, dgemm, get_threads, set_threads)``: the capsules of
        ``scipy.linalg.cython_blas`` and the addresses of OpenBLAS's thread-count
        functions (0 where the BLAS is not OpenBLAS); None without SciPy.
    """
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None
    capi = cython_blas.__pyx_capi__
    get, set_ = openblas_thread_functions(cython_blas.__file__)
    return capi["sgemm"], capi["dgemm"], get, set_
