#!/usr/bin/env bash
# One short call on a lent GPU machine: every MedPLIB GPU row in stages, each with its own time
# limit, so that a failure in one stage still leaves the others' tables.
#   1. the reduced model on CUDA in bf16 (graph capture, grouped MoE GEMM; ~1 min), then in fp32
#      (dense MoE kernel in the graphs; greedy ids must equal the reference loop's exactly)
#   2. the full-size model (random weights, bf16) assigned straight onto the GPU: every row
#   3. the full-size model written as a released-layout checkpoint and loaded through the real
#      loader: write time, load time, host and GPU peaks
# It runs under the machine's own python3 (PyTorch and transformers are there) and writes
# logs and JSON under $OUT (or ./gpu-out). Usage: [STAGES="reduced reduced-fp32 full load"] bash bench/medplib_gpu_lease.sh
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
BENCH=bench/medplib_gpu.py

STAGES=" ${STAGES:-reduced reduced-fp32 full load} "

stage() {  # stage NAME SECONDS ARGS...
  local name=$1 limit=$2
  shift 2
  [[ $STAGES == *" $name "* ]] || return 0
  echo "== $name (limit ${limit} s) =="
  local t0=$SECONDS
  timeout "$limit" "$PY" "$BENCH" --save "$OUT/$name.json" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "rc=$rc after $((SECONDS - t0)) s"
  tail -n 25 "$OUT/$name.log"
  return $rc
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  df -h /tmp | tail -1
} 2>&1 | tee "$OUT/env.txt"

stage reduced 50 --size reduced --device cuda --decode-tokens 64 --repeats 2 --streams 4
stage reduced-fp32 50 --size reduced --device cuda --dtype fp32 --decode-tokens 64 --repeats 2 --streams 4
stage full 240 --size full --in-memory --decode-tokens 128 --repeats 3
stage load 180 --size full --load-only --workdir /tmp/medplib-ckpt
rm -rf /tmp/medplib-ckpt
