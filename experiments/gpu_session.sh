#!/usr/bin/env bash
# Everything this project measures on a GPU, in one call of about 8 minutes. It installs nothing: the
# caller puts ml_collections on PYTHONPATH first where it is missing (the lent GPU box has jax, flax,
# optax, orbax, pytest, matplotlib; the device tool's README says how to carry a wheel).
#
#   EXTREMEQ_MNIST=path/to/mnist.npz experiments/gpu_session.sh OUTDIR
#
# Phase 1, side by side on the one GPU (timings of this phase are shared-GPU wall times):
#   - three lanes, one per seed: the BinaryNet MLP 3x4096 (configs/sweeps/binarynet_mnist_mlp_gpu.py);
#   - three lanes, one per seed: the BinaryConnect MLP table (binaryconnect_mnist_mlp_gpu.py), then
#     the TWN-paper LeNet-5 table (twn_mnist_lenet5_gpu.py);
#   - in the foreground, tests/kernels on the GPU (compiled Triton kernels, every tile config checked
#     for exact results on its own).
# Phase 2, the GPU otherwise idle: one CIFAR-10 epoch of ResNet-20 per method
# (experiments/bench_train.py --epoch), then experiments/bench_kernels.py.
# Writes OUTDIR/{env.txt, summary.txt, tests.txt, bench_kernels.md, bench_train.md, runs.tar.gz,
# logs.tar.gz}; the run directories (metrics.jsonl, final.json, results.md; no checkpoints) are in
# runs.tar.gz, so `python -m extremeq.sweep --config <sweep> --workdir <dir>` rebuilds the tables here
# (each lane writes its sweep's results.md for its own seed only; the rebuild covers all seeds).
set -u
OUT=${1:?usage: experiments/gpu_session.sh OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)   # absolute: the script changes directory below
PY=${PYTHON:-python3}
T_LANES=${T_LANES:-280}      # phase 1 budget (s); lanes are killed after it, their finished epochs stay
T_TESTS=${T_TESTS:-200}
T_BENCH=${T_BENCH:-100}
T_EPOCH=${T_EPOCH:-130}
EPOCH_ARGS=${EPOCH_ARGS:-"--epoch --epochs 3 --methods fp,xnor,ttq,bwn,twn"}
BENCH_ARGS=${BENCH_ARGS:-}
SWEEP_ARGS=${SWEEP_ARGS:-}   # e.g. a shorter run for a dry run on a CPU host
RUNS=${RUNS:-/tmp/extremeq_gpu_runs}
BNN_SWEEPS=${BNN_SWEEPS-binarynet_mnist_mlp_gpu}   # one lane per sweep and seed
BC_METHODS=${BC_METHODS-fp,bc,bc_stochastic}       # empty: no BinaryConnect runs
LENET=${LENET:-1}
EPOCH=${EPOCH:-1}
PYTEST_ARGS=${PYTEST_ARGS:-"-q -n 4 --durations=15"}
LOGS=${LOGS:-/tmp/extremeq_gpu_logs}
mkdir -p "$OUT" "$RUNS" "$LOGS"
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several processes share the GPU
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/extremeq_jax_cache}
export PYTHONUNBUFFERED=1
t0=$(date +%s)

{
  date -Iseconds
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  $PY -c "import jax, jaxlib, flax, optax, numpy, sys; print('python', sys.version.split()[0]); print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__); print(jax.devices())"
  git rev-parse HEAD 2>/dev/null || true
  echo "EXTREMEQ_MNIST=${EXTREMEQ_MNIST:-unset}"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

sweep() {  # sweep <name> <seed> [more extremeq.sweep flags]
  $PY -m extremeq.sweep --config "configs/sweeps/$1.py" --workdir "$RUNS/$1" --seeds "$2" "${@:3}" $SWEEP_ARGS \
    > "$LOGS/$1_seed$2.log" 2>&1
  echo "$1 seed $2: rc=$? at $(( $(date +%s) - t0 )) s" >> "$LOGS/lanes.txt"
}
pids=()
for s in 0 1 2; do
  for b in $BNN_SWEEPS; do
    ( sweep "$b" $s ) &
    pids+=($!)
  done
  ( [ -n "$BC_METHODS" ] && sweep binaryconnect_mnist_mlp_gpu $s --methods "$BC_METHODS"
    [ "$LENET" = 1 ] && sweep twn_mnist_lenet5_gpu $s ) &
  pids+=($!)
done

timeout "$T_TESTS" $PY -m pytest tests/kernels -p no:cacheprovider $PYTEST_ARGS --junitxml="$OUT/tests.xml" \
  > "$OUT/tests.txt" 2>&1
test_rc=$?
tail -n 15 "$OUT/tests.txt"

# Wait for the lanes until the phase-1 budget is spent, then stop what is left.
while [ $(( $(date +%s) - t0 )) -lt "$T_LANES" ] && jobs -r | grep -q .; do sleep 2; done
lanes_left=$(jobs -r | wc -l)
kids=""   # the lanes' training processes (only this script's); SIGTERM saves a checkpoint and exits
for p in "${pids[@]}"; do kids="$kids $(pgrep -P "$p" | tr '\n' ' ')"; done
[ -n "${kids// /}" ] && kill -TERM $kids 2>/dev/null
kill "${pids[@]}" 2>/dev/null
sleep 3
[ -n "${kids// /}" ] && kill -KILL $kids 2>/dev/null
t1=$(date +%s)

epoch_rc=skipped
if [ "$EPOCH" = 1 ]; then
  timeout "$T_EPOCH" $PY experiments/bench_train.py $EPOCH_ARGS --out "$OUT/bench_train.md" \
    > "$LOGS/bench_train.log" 2>&1
  epoch_rc=$?
fi
t2=$(date +%s)
timeout "$T_BENCH" $PY experiments/bench_kernels.py --repeats 20 $BENCH_ARGS --out "$OUT/bench_kernels.md" \
  > "$LOGS/bench_kernels.log" 2>&1
bench_rc=$?
t3=$(date +%s)
cat "$OUT/bench_train.md" 2>/dev/null

tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude=checkpoints . 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" . 2>/dev/null
{
  echo "kernel tests: rc=$test_rc (${T_TESTS}s timeout; 124 = cut)"
  echo "phase 1 (lanes + tests): $((t1 - t0)) s; lanes still running at the cut: $lanes_left"
  cat "$LOGS/lanes.txt" 2>/dev/null
  echo "bench_train --epoch: rc=$epoch_rc ($((t2 - t1)) s)"
  echo "bench_kernels: rc=$bench_rc ($((t3 - t2)) s)"
  grep -c "WRONG" "$OUT/bench_kernels.md" 2>/dev/null | sed 's/^/bench rows with WRONG results: /'
  tail -n 25 "$OUT/tests.txt"
  for f in "$RUNS"/*/*/seed*/metrics.jsonl; do
    [ -f "$f" ] && echo "$f: $(wc -l < "$f") epochs, last: $(tail -n 1 "$f" | cut -c1-200)"
  done
} | tee "$OUT/summary.txt"
