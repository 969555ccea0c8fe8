#!/usr/bin/env bash
# Build the engine with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# FASTMLP_SANITIZE, gcc) into .venv-asan and run the tests that drive the engine under it.
# The first memory error or undefined behaviour ends the run with a report on stderr and a
# non-zero status. Extra arguments go to pytest (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv-asan
# install.strip=false: keep the debug information, for function names and lines in reports
.venv-asan/bin/pip install '.[test]' -Cbuild-dir=build/asan -Ccmake.define.FASTMLP_SANITIZE=ON \
    -Cinstall.strip=false

# Python is not instrumented, so the ASan runtime the extension links must be loaded before
# anything else (the UBSan runtime comes in as the extension's own dependency). Finding none
# means a plain build, which would pass silently.
engine=$(find .venv-asan/lib -path '*/fastmlp/_engine*.so')
asan=$(ldd "$engine" | awk '/libasan/ {print $3}')
if [[ -z $asan ]]; then
    echo "sanitize.sh: $engine is not an ASan build" >&2
    exit 1
fi

tests=(tests/test_kernels.py tests/test_layout.py tests/test_engine_vs_reference.py
       tests/test_validation.py tests/test_sparse_input.py tests/test_heads.py
       tests/test_ties.py tests/test_blas_path.py tests/test_blocking.py tests/test_vmath.py
       tests/test_transpose.py tests/test_losses.py tests/test_fused_update.py)
for optional in tests/test_concurrency.py tests/test_loader_fuzz.py tests/test_memmap.py; do
    [[ -e $optional ]] && tests+=("$optional")
done

# detect_leaks=0: CPython keeps objects alive until exit by design. PYTHONMALLOC=malloc: every
# Python object gets its own allocation and red zones, so the instrumented Cython module's
# accesses to them are checked too. --capture=sys: the sanitizers write to file descriptor 2,
# which pytest's default capture would discard with the dying process.
LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 PYTHONMALLOC=malloc \
    .venv-asan/bin/python -m pytest --capture=sys "${tests[@]}" "$@"
