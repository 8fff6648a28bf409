#!/usr/bin/env bash
# Every accelerator figure the benchmarks define, in one run of at most 8 minutes on one GPU, into one JSON file.
#
#   bash benchmarks/gpu_suite.sh OUT.json            # on a machine with a GPU: the only thing to run there
#   bash benchmarks/gpu_suite.sh --dry-run OUT.json  # every part at its smoke size on the CPU (about a minute)
#   bash benchmarks/gpu_suite.sh --only retrieval,predict OUT.json   # some parts only
#
# Parts, each under its own time cap (415 s in all, 440 s with each part's 5 s grace period before a kill):
#   training       bench_training.py: batch 256, 10-100 regions, bf16, package layer against the plain reference
#   retrieval      bench_retrieval_ranking.py: exact pair scoring per second (bf16) and projected COCO 1K/5K times
#   data_wait      bench_data_wait.py: share of a training step spent waiting for data
#   predict        bench_predict.py: one-query latency and batched throughput
#   cpu_inference  bench_cpu_inference.py: one-query latency
# A part whose script is missing is recorded as skipped, one that fails or runs past its cap as such; the others
# still run. gpu_suite_merge.py merges the parts' JSON files, exit statuses, times and log tails into OUT.json.
# PYTHON names the interpreter (default: python); the checkout's src/ comes first on PYTHONPATH.
set -u

usage() { echo "usage: bash benchmarks/gpu_suite.sh [--dry-run] [--only PART[,PART...]] OUT.json"; }

DRY_RUN=0
ONLY=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --only)
            [ $# -ge 2 ] || { usage >&2; exit 2; }
            ONLY=",$2,"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; exit 2 ;;
        *) OUT="$1" ;;
    esac
    shift
done
if [ -z "$OUT" ]; then
    usage >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PARTS="$WORK/parts.tsv"
: >"$PARTS"

if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu
else
    DEVICE=cuda
fi

# run_part NAME CAP_SECONDS SCRIPT ARGS...: runs benchmarks/SCRIPT with ARGS and --json NAME.json under a cap.
run_part() {
    local name="$1" cap="$2" script="$3"
    shift 3
    local json="$WORK/$name.json" log="$WORK/$name.log" rc start seconds
    if [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]]; then
        return
    fi
    if [ ! -f "$HERE/$script" ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "skipped" "0" "$script" "-" "-" >>"$PARTS"
        echo "[$name] skipped: benchmarks/$script is missing"
        return
    fi
    echo "[$name] $script $* (cap ${cap}s)"
    start=$(date +%s.%N)
    timeout --signal=TERM --kill-after=5 "$cap" "$PYTHON" "$HERE/$script" "$@" --json "$json" >"$log" 2>&1
    rc=$?
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$script $*" "$json" "$log" >>"$PARTS"
    echo "[$name] exit $rc after ${seconds}s"
}

if [ "$DRY_RUN" = 1 ]; then
    run_part training 120 bench_training.py --smoke --device cpu
    run_part retrieval 60 bench_retrieval_ranking.py --smoke --device cpu
    run_part data_wait 60 bench_data_wait.py --smoke --device cpu
    run_part predict 60 bench_predict.py --smoke --device cpu
    run_part cpu_inference 60 bench_cpu_inference.py --smoke --device cpu
else
    run_part training 140 bench_training.py --device cuda --batch-size 256 --bf16 --min-regions 10 --regions 100 \
        --images 400 --steps 3 --warmup 1
    run_part retrieval 110 bench_retrieval_ranking.py --device cuda --dtype bf16 --images 64 --captions 1000 \
        --batch-size 4096 --reference-images 4 --rounds 3
    run_part data_wait 55 bench_data_wait.py --device cuda --preset paper --batch-size 256 --images 2000 --updates 30 \
        --rounds 2 --features-on-device --bf16
    run_part predict 55 bench_predict.py --device cuda --batch-size 256
    run_part cpu_inference 55 bench_cpu_inference.py --device cpu --no-compile
fi

MODE=gpu
[ "$DRY_RUN" = 1 ] && MODE=dry-run
"$PYTHON" "$HERE/gpu_suite_merge.py" "$PARTS" "$OUT" --mode "$MODE" --device "$DEVICE"
