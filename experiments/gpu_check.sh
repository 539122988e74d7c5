#!/usr/bin/env bash
# GPU check of the bit-packed kernels, in about 7 minutes, installing nothing (pytest-xdist is there).
#
#   experiments/gpu_check.sh OUTDIR
#
# Runs from the checkout with PYTHONPATH=. and imports only extremeq.kernels / extremeq.packing
# (the GPU box has jax, numpy, pytest, hypothesis; no ml_collections/tfds/grain).
#  1. tests/kernels on the GPU: every test that runs the Pallas kernel uses the compiled
#     Triton backend there (not the interpreter), and tests/kernels/test_kernel_lowering.py
#     checks each GPU tile configuration for exact results on its own (an int8 tile was
#     silently wrong on an H100 in an earlier session).
#  2. experiments/int8_dot_padding.py: where XLA's int8 dot is exact (raw, K padded to 32/64,
#     M/N padded to 16) on a grid of small odd shapes, time-boxed (STUDY_SECONDS).
#  3. experiments/bench_kernels.py at full sizes with the tile sweep on the first shape, caches
#     kept cold by buffer rotation (>= 256 MB per variant); the table is rewritten after every
#     row, so a stage cut by its timeout still leaves what it measured.
# Every stage has its own timeout; the defaults sum to under 10 minutes (300 + 75 + 200 s).
# Writes OUTDIR/{env.txt, tests.txt, tests.xml, int8_dot_padding.md, bench_kernels.md, bench.log,
# summary.txt}.
set -u
OUT=${1:?usage: experiments/gpu_check.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)   # absolute: the script changes directory below
PY=${PYTHON:-python3}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}   # 129 tests took over 240 s with 8 workers on an H100 host (2026-11-27)
BENCH_TIMEOUT=${BENCH_TIMEOUT:-200}
STUDY_SECONDS=${STUDY_SECONDS:-60}   # the study stops itself; its timeout adds 15 s for start-up
BENCH_ARGS=${BENCH_ARGS:-}   # e.g. --quick for a dry run on a CPU host
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}

{
  date -Iseconds
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  $PY -c "import jax, jaxlib, numpy, sys; print('python', sys.version.split()[0]); print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'numpy', numpy.__version__); print(jax.devices())"
  git rev-parse HEAD 2>/dev/null || true
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

start=$(date +%s)
# -vv: one line per test as it finishes, so a run cut by the timeout still names its failures.
timeout "$TEST_TIMEOUT" $PY -m pytest tests/kernels -vv --tb=short -rfE -n "${WORKERS:-8}" -p no:cacheprovider \
  --durations=15 --junitxml="$OUT/tests.xml" > "$OUT/tests.txt" 2>&1
test_rc=$?
tail -n 30 "$OUT/tests.txt"
mid=$(date +%s)

timeout $((STUDY_SECONDS + 15)) $PY experiments/int8_dot_padding.py --seconds "$STUDY_SECONDS" \
  --out "$OUT/int8_dot_padding.md" > "$OUT/study.log" 2>&1
study_rc=$?
tail -n 8 "$OUT/int8_dot_padding.md" 2>/dev/null
mid2=$(date +%s)

timeout "$BENCH_TIMEOUT" $PY experiments/bench_kernels.py --repeats 20 $BENCH_ARGS --out "$OUT/bench_kernels.md" \
  > "$OUT/bench.log" 2>&1
bench_rc=$?
end=$(date +%s)
cat "$OUT/bench_kernels.md" 2>/dev/null

{
  echo "tests: rc=$test_rc ($((mid - start)) s; 124 = cut by the ${TEST_TIMEOUT}s timeout)"
  echo "int8 dot study: rc=$study_rc ($((mid2 - mid)) s)"
  echo "bench: rc=$bench_rc ($((end - mid2)) s; 124 = cut by the ${BENCH_TIMEOUT}s timeout, table is partial)"
  grep -c "WRONG" "$OUT/bench_kernels.md" 2>/dev/null | sed 's/^/bench rows with WRONG results: /'
} | tee "$OUT/summary.txt"
[ "$test_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
