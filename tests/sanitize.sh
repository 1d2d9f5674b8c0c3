#!/usr/bin/env bash
# The CPU test suite against a build of pyext's C++ with AddressSanitizer and UndefinedBehaviorSanitizer.
# Builds into a separate folder (the normal build is untouched), preloads the sanitizer runtimes into
# Python, and fails on the first report. Usage: bash tests/sanitize.sh [python [test file ...]]
# (default: .venv's python, every test file but the slow ones). PYEXT_CPU_VEC=avx2 (setup.py) builds for that
# vector ISA instead of this CPU's widest, into a folder of its own: CI tests the AVX2 math so on an AVX-512
# machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"  # absolute, keeping the venv link
shift $(( $# > 0 ? 1 : 0 ))
TESTS=("${@/#/../../}")  # the test files, from the build folder
[ $# -gt 0 ] || TESTS=(../../tests --ignore=../../tests/test_large.py --ignore=../../tests/test_train.py)
OUT=$PWD/build/sanitize${PYEXT_CPU_VEC:+_$PYEXT_CPU_VEC}
rm -rf "$OUT" && mkdir -p "$OUT"
PYEXT_CPU_ONLY=1 PYEXT_SANITIZE=address,undefined "$PY" setup.py build_ext --build-lib "$OUT" \
  --build-temp "$OUT/tmp" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
cp -r pyext/*.py pyext/train "$OUT/pyext/"
runtimes="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
# Python and torch allocate for the process's lifetime: leak reports would be theirs, not ours. An
# allocation that cannot be met returns null, as malloc does, rather than aborting: torch then raises its
# out-of-memory error, which tests/test_reliability.py checks.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$OUT"
LD_PRELOAD="$runtimes" PYTHONPATH="$PWD" "$PY" -c "import pyext; assert pyext.__file__.startswith('$PWD'), pyext.__file__
assert '${PYEXT_CPU_VEC:-}' in ('', pyext.build_info()['cpu_vec']), pyext.build_info()"
LD_PRELOAD="$runtimes" PYTHONPATH="$PWD" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" -x \
  -W ignore::DeprecationWarning
