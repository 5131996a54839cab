#!/usr/bin/env bash
# Side-by-side benchmark: `mobilenet bench` and the PyTorch peer on the same network,
# alternating per row, printed as one table (ms/batch, images/s, GFLOP/s, ours/peer).
# Needs the release binary's dependencies (scripts/setup.sh) and PyTorch for $PYTHON
# (default python3; `pip install torch`). Usage: benches/compare.sh [ITERS] [ROUNDS]
# Each row alternates ours and the peer ROUNDS times (default 3) and keeps each side's
# median round: on a shared machine one process can run a third slower than the next.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ITERS=${1:-10}
ROUNDS=${2:-3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "compare.sh: PyTorch is missing for $PYTHON; install it (pip install torch) or set PYTHON" >&2
    exit 1
fi
cargo build --release --quiet
ours=target/release/mobilenet
field() { "$PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# The JSON report (one per line on stdin) with the median images/s.
median_round() {
    "$PYTHON" -c "import json,sys; r=sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda d: d['images_per_sec']); print(json.dumps(r[len(r)//2]))"
}

printf '| %-5s | %-9s | %-28s | %10s | %9s | %7s | %-30s | %10s | %9s | %7s | %10s |\n' \
    mode "batch/res" ours ms img/s GFLOP/s peer ms img/s GFLOP/s "ours/peer"
printf '|%s|\n' "-------|-----------|------------------------------|------------|-----------|---------|--------------------------------|------------|-----------|---------|------------"
for row in "infer 32 32" "infer 8 224" "train 32 32" "train 8 224"; do
    read -r mode batch res <<<"$row"
    iters=$ITERS
    # A lavapipe training step at 224 takes seconds; fewer repetitions keep the run short.
    if [[ $res -ge 224 && $mode == train ]]; then iters=$(( ITERS < 5 ? ITERS : 5 )); fi
    a_runs=""
    b_runs=""
    for _ in $(seq "$ROUNDS"); do
        a_runs+=$("$ours" bench --mode "$mode" --batch "$batch" --resolution "$res" --alpha 1.0 --warmup 3 --iters "$iters" --json)$'\n'
        b_runs+=$("$PYTHON" benches/peers/pytorch_mobilenet.py --mode "$mode" --batch "$batch" --resolution "$res" --warmup 3 --iters "$iters")$'\n'
    done
    a=$(median_round <<<"$a_runs")
    b=$(median_round <<<"$b_runs")
    ratio=$("$PYTHON" -c "print(f'{float(\"$(field "$a" images_per_sec)\") / float(\"$(field "$b" images_per_sec)\"):.3f}x')")
    printf '| %-5s | %-9s | %-28s | %10.1f | %9.1f | %7.2f | %-30s | %10.1f | %9.1f | %7.2f | %10s |\n' \
        "$mode" "$batch/$res" "$(field "$a" adapter | cut -c1-28)" "$(field "$a" ms_per_batch)" \
        "$(field "$a" images_per_sec)" "$(field "$a" gflops)" "$(field "$b" adapter | cut -c1-30)" \
        "$(field "$b" ms_per_batch)" "$(field "$b" images_per_sec)" "$(field "$b" gflops)" "$ratio"
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(date -u +%F)"
