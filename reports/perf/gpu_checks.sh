#!/usr/bin/env bash
# The GPU checks as one command on one GPU machine, run from the repo root, in this order:
#   1. the GPU-marked tests (CUDA graph replays, fused network on CUDA, steps without host syncs)
#   2. `lt-bench bench --device cuda` (the product loop in the reference configuration, alone, packed K = 4, 8, 16,
#      a heterogeneous pack of 16, and with compile) -> $OUT/bench.json
#   3. the real-data anchor: suite cifar10_anchor (CIFAR-10-LT r100, 9 methods + 2 CE controls, 200 epochs,
#      3 seeds, heterogeneous packs) on the shared JPEG copy of CIFAR-10 (data.format=jpeg_npz, data.root=$DATA);
#      it needs more than one call: rerun with PHASES=anchor and the same $OUT results folder to continue
#      -> $OUT/results.tgz (records without weights, and the report)
#   (older runs also had perf_equivalence: PHASES=equiv runs it)
# Everything else goes to stdout; $OUT holds at most 7 files.
# Inputs: DATA (default .devdata) holding train.npz / test.npz of the JPEG copy of CIFAR-10, decoded here into
# torchvision's layout; optional .whl/ with wheels the machine lacks. TINY=1 runs a seconds-long CPU version
# (to check the script itself on a machine without a GPU).
set -u
OUT=${OUT:-/tmp/gpu_checks}
DATA=${DATA:-.devdata}
PY=${PY:-python3}
TINY=${TINY:-0}
PHASES=${PHASES:-"tests bench anchor"}  # a subset reruns only those checks
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ] && ! $PY -c "import pydantic" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
WORK=$(mktemp -d)
export LTBENCH_DATA=$WORK/data
RES=${RES:-$WORK/results}  # a kept folder lets a rerun resume the anchor where the last call stopped
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
  $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} | tee "$OUT/env.txt"

if [ "$TINY" = 1 ]; then
  DEV=cpu; BENCH=(--steps 2 --ks 1,2); RUN=(--smoke --seeds 0,1 --set train.device=cpu); TEST_T=300; ANCHOR_T=300
else
  DEV=cuda; BENCH=(); RUN=(); TEST_T=90; ANCHOR_T=560
fi

if [[ $PHASES == *tests* ]]; then
echo "== 1. GPU tests"
t0=$(date +%s)
timeout -k 5 $TEST_T $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_step.py tests/test_fused.py \
  tests/test_bench.py 2>&1 | tail -n 30
echo "gpu tests: $(( $(date +%s) - t0 )) s"
fi

if [[ $PHASES == *equiv* ]]; then
echo "== decode CIFAR-10 (background)"
$PY -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; from conftest import decode_cifar10_jpeg; \
decode_cifar10_jpeg(Path('$DATA'), Path('$LTBENCH_DATA'))" >"$OUT/decode.log" 2>&1 &
DECODE=$!
fi

if [[ $PHASES == *bench* ]]; then
echo "== 2. bench"
t0=$(date +%s)
timeout -k 5 330 $PY -m benchmark bench --device $DEV --out "$OUT/bench.json" "${BENCH[@]}" 2>&1
echo "bench: $(( $(date +%s) - t0 )) s"
fi

if [[ $PHASES == *equiv* ]]; then
echo "== perf_equivalence"
wait $DECODE || { echo "decode failed"; cat "$OUT/decode.log"; }
t0=$(date +%s)
timeout -k 5 270 $PY -m benchmark run suite perf_equivalence "${RUN[@]}" --rows "CE (fast),CE + CMO (fast)" \
  --tracker none --results-dir "$RES" >"$OUT/equiv_fast.log" 2>&1 &
FAST=$!
timeout -k 5 270 $PY -m benchmark run suite perf_equivalence "${RUN[@]}" \
  --rows "CE (reference),CE + CMO (reference)" --executor local --gpus 1 --runs-per-gpu 6 --set train.workers=2 \
  --tracker none --results-dir "$RES" >"$OUT/equiv_reference.log" 2>&1
wait $FAST
echo "perf_equivalence: $(( $(date +%s) - t0 )) s"
tail -n 15 "$OUT/equiv_fast.log" "$OUT/equiv_reference.log"
$PY -m benchmark report perf_equivalence "${RUN[@]}" --results-dir "$RES" --out-dir "$RES/_report" 2>&1 | tail -n 20
tar czf "$OUT/results.tgz" -C "$RES" --exclude='*.pt' --exclude='*.ckpt' --exclude='*.lock' .  # records + report
fi

if [[ $PHASES == *anchor* ]]; then
echo "== 3. cifar10_anchor (200 epochs, 3 seeds, packed; read from the JPEG copy in \$DATA; resumes when rerun)"
t0=$(date +%s)
timeout -k 5 $ANCHOR_T $PY -m benchmark run suite cifar10_anchor "${RUN[@]}" --set data.format=jpeg_npz \
  --set "data.root=$DATA" --set data.download=false --tracker none --results-dir "$RES" 2>&1 | tail -n 20
echo "cifar10_anchor: $(( $(date +%s) - t0 )) s"
$PY -m benchmark report cifar10_anchor "${RUN[@]}" --set data.format=jpeg_npz --set "data.root=$DATA" \
  --set data.download=false --results-dir "$RES" --out-dir "$RES/_report" 2>&1 | tail -n 20
tar czf "$OUT/results.tgz" -C "$RES" --exclude='*.pt' --exclude='*.ckpt' --exclude='*.lock' .  # records + report
fi

rm -rf "$WORK"
