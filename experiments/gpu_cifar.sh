#!/usr/bin/env bash
# The CIFAR-10 ResNet-20 table (configs/sweeps/cifar10_resnet20.py: FP, BWN, TWN, TTQ fine-tuned
# from that FP, XNOR) on one GPU in one command of at most ~9.5 minutes, resumable.
#
#   experiments/gpu_cifar.sh OUTDIR              # on the GPU machine (one H100/H200, 16 cores)
#   experiments/gpu_cifar.sh --dry-run OUTDIR    # anywhere (CPU): tiny archive, 2 epochs, same path
#
# Lanes, side by side on the one GPU (each an `extremeq.sweep` process with --methods):
#   A: resnet20:fp, then resnet20:ttq (init_from = that FP run: the TTQ paper's protocol)
#   B: resnet20:bwn    C: resnet20:twn    D: resnet20:xnor
# At BUDGET_S seconds after the start the lanes get SIGTERM: training saves a checkpoint and stops.
# Then OUTDIR gets results.md (experiments/cifar.py table: accuracy, our FP, gap, paper gap, epochs
# done, wall time; unfinished runs marked), env.txt, summary.txt, logs.tar.gz, and state.tar.gz (the
# run directories with their latest checkpoints).
#
# Resuming a cut run: on the same (still warm) machine, rerun the same command: finished runs are
# skipped and cut ones continue from their checkpoints in $RUNS. On a fresh machine, first restore
# the state here: `mkdir -p runs/gpu_cifar && tar -xzf <files_at>/state.tar.gz -C runs/gpu_cifar`,
# then rerun carrying runs/gpu_cifar (and .data, .whl as below).
#
# Data and packages (only the checkout travels; ../shared does not):
#   mkdir -p .data && cp ../shared/data/cifar10_jpeg.tar.gz .data/    # 19 MB; .data/ is git-ignored
#   pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0   # the box lacks it
# and carry [".data", ".whl"] (plus "runs/gpu_cifar" when resuming). Nothing is installed: a pure
# Python wheel is importable from PYTHONPATH as it is. TFDS and grain are not needed.
#
# Environment: EXTREMEQ_CIFAR10 (default .data/cifar10_jpeg.tar.gz), BUDGET_S (default 540),
# RUNS (default runs/gpu_cifar), LANES (default "fp,ttq bwn twn xnor": one lane per word, methods
# comma-separated, resnet20: implied), PYTHON (default python3), SEED (default 0).
set -u
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:?usage: experiments/gpu_cifar.sh [--dry-run] OUTDIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
SEED=${SEED:-0}
LANES=${LANES:-"fp,ttq bwn twn xnor"}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several processes share the GPU
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/extremeq_jax_cache}
t0=$(date +%s)

if ! $PY -c "import ml_collections" 2>/dev/null; then
  whl=$(ls "$REPO"/.whl/ml_collections-*.whl 2>/dev/null | head -n 1)
  if [ -z "$whl" ]; then
    echo "ml_collections is not importable and no .whl/ml_collections-*.whl is in the checkout; run" \
         "'pip download --no-deps --only-binary=:all: -d .whl ml-collections==1.1.0' and carry .whl" >&2
    exit 2
  fi
  export PYTHONPATH=$PYTHONPATH:$whl
fi

SWEEP=configs/sweeps/cifar10_resnet20.py
if [ "$DRY" = 1 ]; then
  RUNS=${RUNS:-$OUT/runs}
  BUDGET_S=${BUDGET_S:-900}
  VARIANT=dry
  # A tiny archive: 10 train + 5 test images per class, from the real archive when there is one,
  # else synthetic PNGs with CIFAR-10's class names.
  REAL=${EXTREMEQ_CIFAR10:-}
  export EXTREMEQ_CIFAR10="$OUT/tiny_cifar10.tar.gz"
  export EXTREMEQ_CACHE=${EXTREMEQ_CACHE:-$OUT/cache}
  EXTREMEQ_CIFAR10=$REAL $PY - "$OUT/tiny_cifar10.tar.gz" <<'EOF' || exit 1
import io, sys, tarfile
import numpy as np
from PIL import Image
from extremeq.data.image_folder import CIFAR10_CLASSES, default_cifar10_path

out = tarfile.open(sys.argv[1], "w:gz")
def add(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
per = {"train": 10, "test": 5}
real = default_cifar10_path()  # $EXTREMEQ_CIFAR10 as the caller set it, else ../shared/data
if real.is_file():
    taken = {}
    with tarfile.open(real, "r:gz") as src:
        for m in src:
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and taken.get((parts[0], parts[1]), 0) < per[parts[0]]:
                taken[(parts[0], parts[1])] = taken.get((parts[0], parts[1]), 0) + 1
                add(m.name, src.extractfile(m).read())
else:
    rng = np.random.default_rng(0)
    for split, n in per.items():
        for c, cls in enumerate(CIFAR10_CLASSES):
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
                add(f"{split}/{cls}/{i:04d}.png", buf.getvalue())
out.close()
print(f"dry run: tiny archive {sys.argv[1]} ({'real images' if real.is_file() else 'synthetic'})")
EOF
else
  RUNS=${RUNS:-$REPO/runs/gpu_cifar}
  BUDGET_S=${BUDGET_S:-540}
  VARIANT=""
  export EXTREMEQ_CIFAR10=${EXTREMEQ_CIFAR10:-$REPO/.data/cifar10_jpeg.tar.gz}
  export EXTREMEQ_CACHE=${EXTREMEQ_CACHE:-/tmp/extremeq_cache}
fi
if [ ! -f "$EXTREMEQ_CIFAR10" ]; then
  echo "no CIFAR-10 archive at $EXTREMEQ_CIFAR10: copy ../shared/data/cifar10_jpeg.tar.gz to .data/ and carry .data" >&2
  exit 2
fi
LOGS=$OUT/logs
mkdir -p "$RUNS" "$LOGS"

{
  date -Iseconds
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  $PY -c "import jax, flax, optax, numpy, sys; print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__); print(jax.devices())"
  git rev-parse HEAD 2>/dev/null || true
  echo "archive $EXTREMEQ_CIFAR10 sha256 $(sha256sum "$EXTREMEQ_CIFAR10" | cut -c1-64)"
  echo "budget ${BUDGET_S}s, lanes: $LANES, seed $SEED, runs $RUNS, dry run: $DRY"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# Decode once (parallel Pillow) into the cache, so the lanes only read it.
$PY -c "from extremeq.data.image_folder import load_cifar10; import time; t = time.time(); d = load_cifar10(); print('decoded/cached', d.x_train.shape, d.x_test.shape, f'{time.time() - t:.1f}s')" \
  || exit 1

CONFIG=$SWEEP${VARIANT:+:$VARIANT}
pids=()
for lane in $LANES; do
  methods=$(echo "$lane" | tr ',' '\n' | sed 's/^/resnet20:/' | paste -sd, -)
  log="$LOGS/lane_${lane//,/_}.log"
  $PY -m extremeq.sweep --config "$CONFIG" --workdir "$RUNS" --seeds "$SEED" --methods "$methods" > "$log" 2>&1 &
  pids+=($!)
  echo "lane $methods: pid $! log $log"
done

# Wait until every lane ends or the budget is spent; then SIGTERM (checkpoint saved), then KILL.
while [ $(( $(date +%s) - t0 )) -lt "$BUDGET_S" ] && kill -0 "${pids[@]}" 2>/dev/null; do sleep 2; done
cut_lanes=0
for p in "${pids[@]}"; do
  if kill -0 "$p" 2>/dev/null; then cut_lanes=$((cut_lanes + 1)); kill -TERM "$p"; fi
done
for _ in $(seq 1 15); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 1; done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p"; done
wait 2>/dev/null
t1=$(date +%s)

$PY experiments/cifar.py table --sweep "$SWEEP" ${VARIANT:+--variant $VARIANT} --workdir "$RUNS" --out "$OUT/results.md" \
  > /dev/null
tar -czf "$OUT/state.tar.gz" -C "$RUNS" . 2>/dev/null
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" . 2>/dev/null
{
  echo "lanes: $((t1 - t0)) s of a ${BUDGET_S} s budget; lanes cut by the budget: $cut_lanes" \
       "(rerun the same command to continue them)"
  cat "$OUT/results.md"
  for f in "$RUNS"/*/seed*/metrics.jsonl; do
    [ -f "$f" ] && echo "$f: $(wc -l < "$f") epochs, last: $(tail -n 1 "$f" | cut -c1-160)"
  done
  du -sh "$OUT/state.tar.gz" 2>/dev/null
} | tee "$OUT/summary.txt"
