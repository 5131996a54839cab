#!/usr/bin/env bash
# Side-by-side benchmark: `mobilenet bench` and the PyTorch peer on the same network,
# alternating per row, printed as one table (ms/batch, images/s, GFLOP/s, ours/peer).
# Needs the release binary's dependencies (scripts/setup.sh) and PyTorch for $PYTHON
# (default python3; `pip install torch`). Usage: benches/compare.sh [ITERS]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ITERS=${1:-10}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "compare.sh: PyTorch is missing for $PYTHON; install it (pip install torch) or set PYTHON" >&2
    exit 1
fi
cargo build --release --quiet
ours=target/release/mobilenet
field() { "$PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

printf '| %-5s | %-9s | %-28s | %10s | %9s | %7s | %-30s | %10s | %9s | %7s | %10s |\n' \
    mode "batch/res" ours ms img/s GFLOP/s peer ms img/s GFLOP/s "ours/peer"
printf '|%s|\n' "-------|-----------|------------------------------|------------|-----------|---------|--------------------------------|------------|-----------|---------|------------"
for row in "infer 32 32" "infer 8 224" "train 32 32" "train 8 224"; do
    read -r mode batch res <<<"$row"
    iters=$ITERS
    # A lavapipe training step at 224 takes seconds; fewer repetitions keep the run short.
    if [[ $res -ge 224 && $mode == train ]]; then iters=$(( ITERS < 5 ? ITERS : 5 )); fi
    a=$("$ours" bench --mode "$mode" --batch "$batch" --resolution "$res" --alpha 1.0 --warmup 2 --iters "$iters" --json)
    b=$("$PYTHON" benches/peers/pytorch_mobilenet.py --mode "$mode" --batch "$batch" --resolution "$res" --warmup 2 --iters "$iters")
    ratio=$("$PYTHON" -c "print(f'{float(\"$(field "$a" images_per_sec)\") / float(\"$(field "$b" images_per_sec)\"):.3f}x')")
    printf '| %-5s | %-9s | %-28s | %10.1f | %9.1f | %7.2f | %-30s | %10.1f | %9.1f | %7.2f | %10s |\n' \
        "$mode" "$batch/$res" "$(field "$a" adapter | cut -c1-28)" "$(field "$a" ms_per_batch)" \
        "$(field "$a" images_per_sec)" "$(field "$a" gflops)" "$(field "$b" adapter | cut -c1-30)" \
        "$(field "$b" ms_per_batch)" "$(field "$b" images_per_sec)" "$(field "$b" gflops)" "$ratio"
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(date -u +%F)"
