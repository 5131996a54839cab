#!/usr/bin/env bash
# Side-by-side benchmark: `mobilenet bench` and the PyTorch peer on the same network,
# alternating per row, printed as one table (ms/batch, images/s, GFLOP/s, ours/peer).
# Needs the release binary's dependencies (scripts/setup.sh) and PyTorch for $PYTHON
# (default python3; `pip install torch`). Usage: benches/compare.sh [ITERS] [ROUNDS]
# Each row alternates ours and the peer ROUNDS times (default 3) and keeps each side's
# median round: on a shared machine one process can run a third slower than the next.
# DATA=DIR adds the data-loader table: `bench --mode data` against torchvision's ImageFolder
# + DataLoader with the same transforms and workers (benches/peers/torchvision_loader.py) on
# a class folder such as benches/make_imagenet_like.py writes; ONLY_DATA=1 skips the network.
# OURS=PATH measures that binary of ours instead of building this checkout.
# INT8=1 adds the int8 inference table: ours int8 (bench --mode infer --int8) against ours
# f32, PyTorch f32 and onnxruntime int8 (quantize_static, benches/peers/onnxruntime_mobilenet.py;
# needs `pip install onnx onnxruntime` for $PYTHON) at 224 batch 1 and 8 and 32 batch 32;
# ONLY_INT8=1 runs that table alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ITERS=${1:-10}
ROUNDS=${2:-3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "compare.sh: PyTorch is missing for $PYTHON; install it (pip install torch) or set PYTHON" >&2
    exit 1
fi
# OURS=PATH runs another build of ours (say, the commit before a change) instead of this one.
if [[ -n ${OURS:-} ]]; then
    ours=$OURS
else
    cargo build --release --quiet
    ours=target/release/mobilenet
fi
# The CPU as `mobilenet devices` names a software adapter's host: model name with x86's
# family and model numbers, which tell apart CPUs sold under one name ("AMD EPYC" is Zen 3
# or Zen 4), since every ratio here depends on it.
machine_line() {
    local info=/proc/cpuinfo
    local name family model
    name=$(grep -m1 '^model name' "$info" | cut -d: -f2- | xargs)
    family=$(grep -m1 '^cpu family' "$info" | cut -d: -f2- | xargs)
    model=$(grep -m1 '^model[[:space:]]*:' "$info" | cut -d: -f2- | xargs)
    echo "machine: $(nproc) cores, ${name:-unknown CPU} (family ${family:-?} model ${model:-?}), $(date -u +%F)"
}
field() { "$PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
# The JSON report (one per line on stdin) with the median images/s.
median_round() {
    "$PYTHON" -c "import json,sys; r=sorted((json.loads(l) for l in sys.stdin if l.strip()), key=lambda d: d['images_per_sec']); print(json.dumps(r[len(r)//2]))"
}

data_table() {
    echo
    printf '| %-9s | %7s | %-20s | %9s | %-40s | %9s | %9s |\n' transform workers ours img/s peer img/s "ours/peer"
    printf '|%s|\n' "-----------|---------|----------------------|-----------|------------------------------------------|-----------|-----------"
    for row in "train 1" "train 2" "eval 1" "eval 2"; do
        read -r transform workers <<<"$row"
        flag=()
        if [[ $transform == eval ]]; then flag=(--eval); fi
        a_runs=""
        b_runs=""
        for _ in $(seq "$ROUNDS"); do
            a_runs+=$("$ours" bench --mode data --data "$DATA" --batch 64 --resolution 224 --workers "$workers" --warmup 2 --iters 0 "${flag[@]}" --json)$'\n'
            b_runs+=$("$PYTHON" benches/peers/torchvision_loader.py --data "$DATA" --batch 64 --resolution 224 --workers "$workers" --warmup 2 "${flag[@]}")$'\n'
        done
        a=$(median_round <<<"$a_runs")
        b=$(median_round <<<"$b_runs")
        ratio=$("$PYTHON" -c "print(f'{float(\"$(field "$a" images_per_sec)\") / float(\"$(field "$b" images_per_sec)\"):.2f}x')")
        printf '| %-9s | %7s | %-20s | %9.1f | %-40s | %9.1f | %9s |\n' "$transform" "$workers" \
            "$(field "$a" loader | cut -c1-20)" "$(field "$a" images_per_sec)" \
            "$(field "$b" loader | cut -c1-40)" "$(field "$b" images_per_sec)" "$ratio"
    done
    echo "data: $DATA ($(find "$DATA" -type f | wc -l) files, $(du -sh "$DATA" | cut -f1)), batch 64, 224x224"
}

int8_table() {
    if ! "$PYTHON" -c "import onnxruntime, onnx" 2>/dev/null; then
        echo "compare.sh: INT8 needs onnx and onnxruntime for $PYTHON (pip install onnx onnxruntime)" >&2
        return 1
    fi
    echo
    printf '| %-9s | %14s | %14s | %14s | %14s | %9s | %9s |\n' batch/res "ours f32 ms" "ours int8 ms" "PyTorch f32 ms" "ort int8 ms" "int8/f32" "int8/ort"
    printf '|%s|\n' "-----------|----------------|----------------|----------------|----------------|-----------|-----------"
    for row in "1 224" "8 224" "32 32"; do
        read -r batch res <<<"$row"
        common=(--batch "$batch" --resolution "$res" --warmup 3 --iters "$ITERS")
        # Alternate the four within each round, as the float table does.
        a_runs="" b_runs="" c_runs="" d_runs=""
        for _ in $(seq "$ROUNDS"); do
            a_runs+=$("$ours" bench --mode infer --alpha 1.0 "${common[@]}" --json)$'\n'
            b_runs+=$("$ours" bench --mode infer --int8 --alpha 1.0 "${common[@]}" --json)$'\n'
            c_runs+=$("$PYTHON" benches/peers/pytorch_mobilenet.py --mode infer "${common[@]}")$'\n'
            d_runs+=$("$PYTHON" benches/peers/onnxruntime_mobilenet.py --precision int8 "${common[@]}")$'\n'
        done
        # Wall clock on both of ours (the float plan otherwise reports GPU timestamps, which
        # leave out the host's part of a batch; the int8 plan and the peers time the wall).
        a=$(field "$(median_round <<<"$a_runs")" wall_ms_per_batch)
        b=$(field "$(median_round <<<"$b_runs")" wall_ms_per_batch)
        c=$(field "$(median_round <<<"$c_runs")" ms_per_batch)
        d=$(field "$(median_round <<<"$d_runs")" ms_per_batch)
        "$PYTHON" -c "a,b,c,d=$a,$b,$c,$d; print(f'| {\"$batch/$res\":9} | {a:14.1f} | {b:14.1f} | {c:14.1f} | {d:14.1f} | {a/b:8.2f}x | {d/b:8.2f}x |')"
    done
    echo "int8/f32: ours int8 images/s over ours f32; int8/ort: over onnxruntime int8 (above 1: ours is faster)"
}

if [[ -n ${ONLY_INT8:-} ]]; then
    int8_table
    machine_line
    exit 0
fi
if [[ -n ${ONLY_DATA:-} ]]; then
    if [[ -z ${DATA:-} ]]; then echo "compare.sh: ONLY_DATA needs DATA=DIR" >&2; exit 1; fi
    data_table
    machine_line
    exit 0
fi

printf '| %-5s | %-9s | %-28s | %10s | %9s | %7s | %-30s | %10s | %9s | %7s | %10s |\n' \
    mode "batch/res" ours ms img/s GFLOP/s peer ms img/s GFLOP/s "ours/peer"
printf '|%s|\n' "-------|-----------|------------------------------|------------|-----------|---------|--------------------------------|------------|-----------|---------|------------"
# Each row: mode, batch, resolution, then the network's flags, which both sides take. The
# last is the network of `mobilenet train`'s default job (Fashion-MNIST: width 0.25, one
# channel, stride-1 stem, 10 classes), "job" in the table.
for row in "infer 32 32 --alpha 1.0" "infer 8 224 --alpha 1.0" "train 32 32 --alpha 1.0" \
    "train 8 224 --alpha 1.0" \
    "train 32 28 --alpha 0.25 --in-channels 1 --stem-stride 1 --classes 10"; do
    read -r mode batch res net <<<"$row"
    read -ra net <<<"$net"
    label="$batch/$res"
    if [[ ${net[*]} == *--classes* ]]; then label="$batch/$res job"; fi
    iters=$ITERS
    # A lavapipe training step at 224 takes seconds; fewer repetitions keep the run short.
    if [[ $res -ge 224 && $mode == train ]]; then iters=$(( ITERS < 5 ? ITERS : 5 )); fi
    a_runs=""
    b_runs=""
    for _ in $(seq "$ROUNDS"); do
        a_runs+=$("$ours" bench --mode "$mode" --batch "$batch" --resolution "$res" "${net[@]}" --warmup 3 --iters "$iters" --json)$'\n'
        b_runs+=$("$PYTHON" benches/peers/pytorch_mobilenet.py --mode "$mode" --batch "$batch" --resolution "$res" "${net[@]}" --warmup 3 --iters "$iters")$'\n'
    done
    a=$(median_round <<<"$a_runs")
    b=$(median_round <<<"$b_runs")
    ratio=$("$PYTHON" -c "print(f'{float(\"$(field "$a" images_per_sec)\") / float(\"$(field "$b" images_per_sec)\"):.3f}x')")
    printf '| %-5s | %-9s | %-28s | %10.1f | %9.1f | %7.2f | %-30s | %10.1f | %9.1f | %7.2f | %10s |\n' \
        "$mode" "$label" "$(field "$a" adapter | cut -c1-28)" "$(field "$a" ms_per_batch)" \
        "$(field "$a" images_per_sec)" "$(field "$a" gflops)" "$(field "$b" adapter | cut -c1-30)" \
        "$(field "$b" ms_per_batch)" "$(field "$b" images_per_sec)" "$(field "$b" gflops)" "$ratio"
done
if [[ -n ${DATA:-} ]]; then data_table; fi
if [[ -n ${INT8:-} ]]; then int8_table; fi
echo
machine_line
