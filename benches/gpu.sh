#!/usr/bin/env bash
# One-command GPU benchmark: `mobilenet bench` (MobileNet V1 1.0, inference and training) on
# whatever adapter wgpu picks (WGPU_BACKEND / WGPU_ADAPTER_NAME as usual), beside the PyTorch
# peer on CUDA when PyTorch sees a CUDA device, printed as one table headed by the adapter.
#
#   benches/gpu.sh                     rows: 224 at batch 64 and 256, 32 at batch 256
#   BATCHES_224="8 16" BATCHES_32=64 benches/gpu.sh     smaller batches (lavapipe: 128 MiB bindings)
#   ITERS=20 WARMUP=5 benches/gpu.sh
#
# Needs a release build's dependencies (scripts/setup.sh) and, for the peer column, PyTorch for
# $PYTHON (default python3). Each side reports the median of its timed batches (GPU timestamps
# where the adapter has them); ours/peer compares images per second. JSON lines of every run
# are kept in $RESULTS (default benches/gpu-results.jsonl) for the README table.
# The GEMM kernels are tuned for the adapter first (`mobilenet tune`, cached per adapter and
# driver; the line "tuning: ..." says how long it took), so the rows time the tuned kernels;
# MOBILENET_TUNE=off benches/gpu.sh times the fixed defaults instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
BATCHES_224=${BATCHES_224:-"64 256"}
BATCHES_32=${BATCHES_32:-"256"}
RESULTS=${RESULTS:-benches/gpu-results.jsonl}
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

cargo build --release --quiet
ours=target/release/mobilenet
peer=""
if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    peer=cuda
fi
field() { "$PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

"$ours" devices
: >"$RESULTS"
tuning=()
if [[ ${MOBILENET_TUNE:-on} != off ]]; then
    for res in 224 32; do
        batches=$BATCHES_224
        if [[ $res == 32 ]]; then batches=$BATCHES_32; fi
        t=$("$ours" tune --alpha 1.0 --resolution "$res" --batch "${batches// /,}" --json)
        tuning+=("$res: $("$PYTHON" -c "import json,sys; t=json.loads(sys.argv[1])['tuning']; print(f\"{t['timed_shapes']} shapes timed in {t['seconds']:.1f} s, {t['cached_shapes']} reused\")" "$t")")
    done
fi
rows=()
for res in 224 32; do
    batches=$BATCHES_224
    if [[ $res == 32 ]]; then batches=$BATCHES_32; fi
    for batch in $batches; do
        for mode in infer train; do
            rows+=("$mode $batch $res")
        done
    done
done

adapter=""
table=()
for row in "${rows[@]}"; do
    read -r mode batch res <<<"$row"
    # A refusal (a batch past the adapter's limits) is a row of its own, not the end of the run.
    if a=$(RUST_BACKTRACE=0 "$ours" bench --mode "$mode" --batch "$batch" --resolution "$res" \
        --alpha 1.0 --warmup "$WARMUP" --iters "$ITERS" --json 2>/tmp/gpu-bench-error); then
        echo "$a" >>"$RESULTS"
        adapter=$(field "$a" adapter)
        ours_ms=$(field "$a" ms_per_batch)
        ours_ips=$(field "$a" images_per_sec)
        ours_cell=$(printf '%10.2f | %9.1f' "$ours_ms" "$ours_ips")
    else
        ours_ips=""
        echo "$mode $batch/$res: $(tr -s '\n ' ' ' </tmp/gpu-bench-error)" >&2
        ours_cell=$(printf '%-22s' "refused (see above)")
    fi
    peer_cell=$(printf '%10s | %9s' - -)
    ratio=-
    if [[ -n $peer ]]; then
        b=$("$PYTHON" benches/peers/pytorch_mobilenet.py --device cuda --mode "$mode" --batch "$batch" \
            --resolution "$res" --warmup "$WARMUP" --iters "$ITERS")
        echo "$b" >>"$RESULTS"
        peer_cell=$(printf '%10.2f | %9.1f' "$(field "$b" ms_per_batch)" "$(field "$b" images_per_sec)")
        if [[ -n $ours_ips ]]; then
            ratio=$("$PYTHON" -c "print(f'{$ours_ips / $(field "$b" images_per_sec):.2f}x')")
        fi
    fi
    table+=("$(printf '| %-5s | %5s | %3s | %s | %s | %9s |' "$mode" "$batch" "$res" "$ours_cell" "$peer_cell" "$ratio")")
done

echo
echo "adapter: ${adapter:-unknown}; peer: ${peer:+PyTorch CUDA}${peer:-none (no CUDA for $PYTHON)}; MobileNet V1 1.0; $(date -u +%F)"
printf '| %-5s | %5s | %3s | %10s | %9s | %10s | %9s | %9s |\n' mode batch res "ours ms" "img/s" "peer ms" "img/s" "ours/peer"
printf '|%s|\n' "-------|-------|-----|------------|-----------|------------|-----------|-----------"
printf '%s\n' "${table[@]}"
if [[ ${#tuning[@]} -gt 0 ]]; then printf "tuning: %s\n" "$(printf "%s; " "${tuning[@]}" | sed "s/; $//")"; fi
echo "JSON of every run: $RESULTS"
