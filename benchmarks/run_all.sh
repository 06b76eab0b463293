#!/usr/bin/env bash
# Runs every benchmark once, serially, and appends each script's JSON line to $OUT.
# Usage: benchmarks/run_all.sh [DATA_DIR] [OUT]   (defaults: ../shared/data, benchmarks/results.jsonl)
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
OUT="${2:-benchmarks/results.jsonl}"
run() {
  echo "== $*"
  python "$@" > "$OUT.part"
  cat "$OUT.part"
  tail -n 1 "$OUT.part" >> "$OUT"
  rm -f "$OUT.part"
}
run benchmarks/bench_train_step.py --dataset gowalla --backbone mf --method bpr --batch-size 5000 --data-dir "$DATA"
run benchmarks/bench_eval.py --dataset gowalla --data-dir "$DATA"
run benchmarks/bench_valuator.py --batch-size 5000 --hidden 100 --layers 2
run benchmarks/bench_propagation.py
for backbone in lightgcn neumf mgcf; do
  run benchmarks/bench_train_step.py --dataset gowalla --backbone "$backbone" --method bpr --batch-size 5000 --data-dir "$DATA"
done
run benchmarks/bench_train_step.py --dataset gowalla --method dvr --reward recall --batch-size 5000 --data-dir "$DATA" --warmup 3 --window 5 --windows 4
run benchmarks/bench_train_step.py --dataset gowalla --method dvr --reward recall --reward-interval 100 --batch-size 5000 --data-dir "$DATA" --warmup 3 --window 100 --windows 2
for method in aobpr wbpr pris tce rce til-ui til-mi; do
  run benchmarks/bench_train_step.py --dataset gowalla --backbone mf --method "$method" --batch-size 5000 --data-dir "$DATA"
done
