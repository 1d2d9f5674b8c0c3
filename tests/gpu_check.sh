#!/usr/bin/env bash
# The GPU check, run on the lent GPU machine in one call (at most GPU_CHECK_SECONDS, default 480; on an
# H200: build 78 s alone, CUDA tests 52-62 s, memcheck 25 s, racecheck 110 s, ncu 30 s,
# gpu_quick.py 10-15 s per build, run.py 33 s without compile; each variant adds a build in the background,
# its tests and a gpu_quick run: four variants left run.py no time at 440 s):
#   1. builds pyext with that machine's own torch (CUDA arch of the visible GPU),
#   2. runs the CUDA tests (none may skip for want of a GPU; CI runs the CPU ones),
#   3. prints the accuracy of the math on the GPU (float32 over every 101st float, 16-bit over every value),
#      runs compute-sanitizer memcheck and racecheck over tests/sanitize_ops.py, and ncu over the BCE
#      forward kernels (ours and torch's),
#   4. runs the quick GPU benchmark (benchmarks/gpu_quick.py), then the benchmarks harness in its quick
#      mode (benchmarks/run.py: float32 and bfloat16 at 2^24 and 2^28, SGD on 540 tensors, the tutorial
#      step eager and in a CUDA graph) in the time left, whose CSV and plots go to $OUT/results/:
#      commit those under benchmarks/results/<card>/; then each GPU target, met or not, from that CSV
#      (benchmarks/targets.py).
# VARIANTS="NAME=1 NAME=2,OTHER=4" also builds one copy per entry (nvcc -DNAME=1; -DNAME=2 -DOTHER=4; in the
# background while the rest runs) and times each with gpu_quick.py beside the main build, which is timed
# again after them (its second run gives the spread): tuning knobs compared on one card in one call, in a
# table printed last. VARIANT_TESTS="EXPR" first runs the CUDA tests that pytest's -k EXPR selects on each
# variant (a knob that changes what a call does, such as PYEXT_CUDA_DOMAIN_FLAG, needs them before it can
# become the default); their failure is printed, and leaves the main build's verdict alone.
# NCU_SECONDS=0 skips ncu; SANITIZERS="memcheck" runs one sanitizer.
# RUN_PROVIDERS="pyext eager compile ..." picks run.py's providers (default: all but compile, whose compiles,
# one per case, take minutes on the GPU machine).
# VARIANT_RUNS=1 also runs run.py and targets.py on each variant's build, after the main build's (its CSV,
# plots and targets.txt under $OUT/variant_*/results/), each run.py given an equal share of the time left
# (RUN_SECONDS, if set, caps each): a variant that wins can become the default with its own harness figures
# from the same call. A warm machine goes back 30 s after a call, so a second call starts a fresh one.
# Logs and results go to $OUT (or ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
SCRATCH=${SCRATCH:-/tmp}  # the variants' copies of the tree, and the archive before it moves to $OUT
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
began=$(date +%s)
deadline=$(( began + ${GPU_CHECK_SECONDS:-480} ))
step() { echo; echo "=== $* ($(( $(date +%s) - began )) s) ==="; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
echo "compiler: ${CXX:-c++} $(${CXX:-c++} --version | head -1)"
# The Python packages the tests and benchmarks use (the machine's image has them; one that is missing can
# travel as a wheel: the device tool's README)
$PY - <<'PY'
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "MISSING"
print("packages:", ", ".join(f"{n} {version(n)}" for n in ("pytest", "hypothesis", "pytest-xdist", "numpy", "matplotlib")))
PY

tag() { echo "variant_${1//[^A-Za-z0-9]/_}"; }
# A variant whose knob no CUDA file reads (a misspelt or renamed macro) would time the default build under
# another name: left out, and said so.
variants=""
for define in ${VARIANTS:-}; do
  unknown=""
  for knob in ${define//,/ }; do
    grep -qx "#ifndef ${knob%%=*}" cuda/*.cu cuda/*.cuh || unknown="$unknown ${knob%%=*}"
  done
  [ -z "$unknown" ] && variants="$variants $define" || echo "VARIANT $define LEFT OUT: no CUDA file reads$unknown"
done
VARIANTS=$variants
for define in ${VARIANTS:-}; do  # copies of the tree, built before ours makes build/
  dir="$SCRATCH/$(tag "$define")"
  rm -rf "$dir" && cp -r . "$dir" && mkdir -p "$OUT/$(tag "$define")"
  (cd "$dir" && NVCC_APPEND_FLAGS="-D${define//,/ -D}" $PY setup.py build_ext --inplace \
     > "$OUT/$(tag "$define")/build.log" 2>&1) &
done

step "build"
start=$(date +%s)
if ! $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "built in $(( $(date +%s) - start )) s"
$PY -c "import pyext; print(pyext.build_info()); assert pyext.build_info()['cuda']"
echo "shared libraries the extension needs: $(readelf -d pyext/_C*.so | grep -o 'NEEDED.*' | tr -s ' ' | tr '\n' ' ')"

step "CUDA tests"
# Only the CUDA tests (CI runs the CPU ones); -v puts each result in the log as it comes, so the names of
# failures survive a stop at TEST_SECONDS. pytest-xdist (when present) keeps going past a crashing test.
xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n 16")
timeout "${TEST_SECONDS:-240}" $PY -m pytest -v -m cuda $xdist --maxfail=20 -p no:cacheprovider --tb=short -rfs tests \
  > "$OUT/pytest.log" 2>&1
test_status=$?
grep -E "FAILED|ERROR|crashed|node down" "$OUT/pytest.log" | grep -v "^E " | sort -u | tail -30
grep -E "^=+ .*(passed|failed)" "$OUT/pytest.log" || echo "pytest stopped (rc=$test_status) before its summary"
[ "$test_status" = 0 ] || status=1
if grep -q "no CUDA GPU" "$OUT/pytest.log"; then echo "CUDA TESTS SKIPPED"; status=1; fi

step "accuracy (benchmarks/check_vector_math.py)"
for dtype in float32 bfloat16 float16; do
  $PY benchmarks/check_vector_math.py --device cuda --dtype $dtype --stride 101 2>&1 | tee -a "$OUT/accuracy.log"
done

for tool in ${SANITIZERS:-memcheck racecheck}; do
  step "compute-sanitizer $tool"
  timeout "${SANITIZER_SECONDS:-150}" compute-sanitizer --tool $tool --error-exitcode 1 $PY tests/sanitize_ops.py > "$OUT/sanitizer_$tool.log" 2>&1
  rc=$?
  tail -3 "$OUT/sanitizer_$tool.log"
  [ "$rc" = 0 ] || { echo "SANITIZER $tool FAILED (rc=$rc)"; status=1; }
done

step "ncu: BCE forward, float32 and bfloat16, 2^24, pyext and torch (hardware counters)"
# Where the BCE kernels' time goes (issue, stalls, occupancy): one call of each, profiled, after a warm-up.
cat > "$SCRATCH/pyext_ncu_bce.py" <<'PY'
import torch, torch.nn.functional as F, pyext.ops as P
inputs = [((torch.rand(2**24, device="cuda") * 0.98 + 0.01).to(d), torch.rand(2**24, device="cuda").to(d))
          for d in (torch.float32, torch.bfloat16)]
calls = [lambda x, y: P.binary_cross_entropy(x, y, reduction="none"),
         lambda x, y: F.binary_cross_entropy(x, y, reduction="none")]
for x, y in inputs:  # warm-up, unprofiled
    for fn in calls:
        fn(x, y)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStart()
for x, y in inputs:
    for fn in calls:
        fn(x, y)
torch.cuda.synchronize()
torch.cuda.cudart().cudaProfilerStop()
PY
if [ "${NCU_SECONDS:-90}" -gt 0 ]; then
  timeout "${NCU_SECONDS:-90}" ncu --clock-control none --profile-from-start off --launch-count 8 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section InstructionStats $PY "$SCRATCH/pyext_ncu_bce.py" > "$OUT/ncu_bce.log" 2>&1
  echo "ncu rc=$? ($(grep -c 'Section: GPU Speed Of Light' "$OUT/ncu_bce.log") kernels profiled): $OUT/ncu_bce.log"
  grep -E "^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy" \
    "$OUT/ncu_bce.log" | head -60
  grep -E "Executed Instructions  |Warp Cycles Per Issued" "$OUT/ncu_bce.log" | head -20
fi

step "benchmark"
wait  # the variants' builds: no timing while they compile (the losses' host sync feels a busy host)
$PY benchmarks/gpu_quick.py --out "$OUT" 2>&1 | tee "$OUT/bench.log" | tail -40
commit=${PYEXT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
for define in ${VARIANTS:-}; do
  step "benchmark, variant $define"
  dir="$SCRATCH/$(tag "$define")"
  if [ -n "${VARIANT_TESTS:-}" ]; then
    (cd "$dir" && PYTHONPATH="$dir:$PYTHONPATH" timeout "${VARIANT_TEST_SECONDS:-90}" $PY -m pytest -q -m cuda $xdist \
       -p no:cacheprovider --tb=short -k "$VARIANT_TESTS" tests) > "$OUT/$(tag "$define")/pytest.log" 2>&1
    rc=$?
    summary=$(tail -1 "$OUT/$(tag "$define")/pytest.log")
    [ "$rc" = 0 ] && echo "variant tests: $summary" || echo "VARIANT TESTS FAILED (rc=$rc): $summary"
  fi
  (cd "$dir" && PYEXT_COMMIT="${commit:-?}+$define" PYTHONPATH="$dir" \
     $PY benchmarks/gpu_quick.py --out "$OUT/$(tag "$define")") 2>&1 | tee "$OUT/$(tag "$define")/bench.log" | tail -40
done

if [ -n "${VARIANTS:-}" ]; then
  step "benchmark, the main build again"
  mkdir -p "$OUT/again"
  $PY benchmarks/gpu_quick.py --out "$OUT/again" 2>&1 | tee "$OUT/again/bench.log" | tail -40
fi

# run.py --quick and targets.py on the build in DIR, results under OUT_DIR/results, in at most SECONDS.
harness() {  # DIR OUT_DIR LABEL COMMIT SECONDS
  local dir=$1 out=$2 label=$3 commit=$4 seconds=$5
  step "benchmarks harness, $label (run.py --device cuda --quick, at most $seconds s)"
  if [ "$seconds" -le 30 ]; then echo "no time left for run.py"; return; fi
  (cd "$dir" && PYEXT_COMMIT="$commit" PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}" timeout "$seconds" \
     $PY benchmarks/run.py --device cuda --quick --dtypes float32 bfloat16 --sizes 16777216 268435456 \
     --providers ${RUN_PROVIDERS:-pyext eager foreach fused graph} --out "$out/results") > "$out/run_py.log" 2>&1
  local rc=$?
  grep -E "copy bandwidth|sgd_|tutorial| (16777216|268435456) " "$out/run_py.log" | tail -90
  [ "$rc" = 0 ] || echo "run.py ended with rc=$rc (124: stopped at its time; the log has what it measured)"
  step "the GPU targets, $label (benchmarks/targets.py, from run.py's CSV)"
  $PY benchmarks/targets.py "$out/results/quick_cuda.csv" | tee "$out/targets.txt"
}
runs=1
[ "${VARIANT_RUNS:-0}" = 1 ] && for define in ${VARIANTS:-}; do runs=$(( runs + 1 )); done
share() {  # the seconds of each run.py still to come (of REMAINING runs)
  local left=$(( deadline - $(date +%s) - 15 ))
  local each=$(( left / $1 ))
  [ -n "${RUN_SECONDS:-}" ] && [ "$RUN_SECONDS" -lt "$each" ] && each=$RUN_SECONDS
  echo "$each"
}
if [ "$runs" -gt 1 ] && [ "$(share "$runs")" -le 30 ]; then
  echo "too little time for the variants' run.py: the main build's alone"
  runs=1 VARIANT_RUNS=0
fi
harness "$PWD" "$OUT" "main build" "${commit:-?}" "$(share "$runs")"
if [ "${VARIANT_RUNS:-0}" = 1 ]; then
  for define in ${VARIANTS:-}; do
    runs=$(( runs - 1 ))
    harness "$SCRATCH/$(tag "$define")" "$OUT/$(tag "$define")" "variant $define" "${commit:-?}+$define" "$(share "$runs")"
  done
  step "the GPU targets of each build (targets.py's last line)"
  echo "main: $(tail -1 "$OUT/targets.txt" 2>/dev/null)"
  for define in ${VARIANTS:-}; do
    echo "$define: $(tail -1 "$OUT/$(tag "$define")/targets.txt" 2>/dev/null)"
  done
fi

if [ -n "${VARIANTS:-}" ]; then
  step "the variants side by side (ms; benchmarks/compare_variants.py)"
  $PY benchmarks/compare_variants.py "$OUT" | tee "$OUT/variants.txt"
fi

step "result"
# Everything in one archive: the device tool brings back only a few files from $OUT.
tar czf "$SCRATCH/gpu_check.tgz" -C "$OUT" . && rm -rf "${OUT:?}"/* && mv "$SCRATCH/gpu_check.tgz" "$OUT/"
[ "$status" = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit $status
