#!/usr/bin/env bash
# The prepared device check: one script, at most 8 minutes, JSON lines on stdout.
#
#   benchmarks/gpu_check.sh [--quick] [DATA_DIR]      (DATA_DIR default ../shared/data)
#
# On a machine with an NVIDIA GPU (jax[cuda] installed; this script installs nothing): prints the
# device, runs the train-step benchmarks (BPR-MF, LightGCN, DVR with the reward every step), the
# full-ranking evaluation benchmark, all on Gowalla, and then trains LightGCN-3 on Gowalla for the
# rest of the budget (one JSON line per evaluation: test Recall@20 by epoch, seconds per epoch).
# `--quick` is the CPU smoke version (LastFM, tiny windows, a few seconds of LightGCN): it checks
# that every step of the script runs, not the numbers. GPU_CHECK_SECONDS overrides the budget (480).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
DATA="${1:-../shared/data}"
BUDGET="${GPU_CHECK_SECONDS:-480}"
START=$(date +%s)
if [ "$QUICK" = 1 ]; then
  DATASET=lastfm; LIGHTGCN=lastfm-lightgcn; TIMING=(--warmup 1 --window 2 --windows 1); EVAL=(--repeats 1)
  BUDGET="${GPU_CHECK_SECONDS:-150}"
else
  DATASET=gowalla; LIGHTGCN=gowalla; TIMING=(--warmup 3 --window 20 --windows 3); EVAL=(--repeats 3)
fi
last_line() {  # runs a benchmark; its last line (one JSON object) goes to stdout, the rest to stderr
  python "$@" > /tmp/gpu_check.$$ || { echo "{\"check\": \"failed\", \"command\": \"$*\"}"; return 1; }
  head -n -1 /tmp/gpu_check.$$ >&2
  tail -n 1 /tmp/gpu_check.$$
}
python -c 'import jax, json; print(json.dumps({"check": "device", "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()], "jax": jax.__version__}))' || exit 1
status=0
last_line benchmarks/bench_train_step.py --dataset "$DATASET" --data-dir "$DATA" --backbone mf --method bpr --batch-size 5000 "${TIMING[@]}" || status=1
last_line benchmarks/bench_train_step.py --dataset "$DATASET" --data-dir "$DATA" --backbone lightgcn --method bpr --batch-size 5000 "${TIMING[@]}" || status=1
last_line benchmarks/bench_train_step.py --dataset "$DATASET" --data-dir "$DATA" --backbone mf --method dvr --reward recall --batch-size 5000 "${TIMING[@]}" || status=1
last_line benchmarks/bench_eval.py --dataset "$DATASET" --data-dir "$DATA" "${EVAL[@]}" || status=1
LEFT=$(( BUDGET - ($(date +%s) - START) - 30 ))  # 30 s for loading, compiling and the last evaluation
if [ "$LEFT" -lt 10 ]; then LEFT=10; fi
EVERY=10; if [ "$QUICK" = 1 ]; then EVERY=5; fi
python benchmarks/repro_lightgcn_gowalla.py --dataset "$LIGHTGCN" --data-dir "$DATA" --eval-every "$EVERY" \
  --time-budget "$LEFT" --jsonl || status=1
rm -f /tmp/gpu_check.$$
exit $status
