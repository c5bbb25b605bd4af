#!/usr/bin/env bash
# The vector write-ahead log benchmark (issue 7, item 7): acknowledged embeddings per second
# through the WAL against synchronous indexing (--index-now), the index worker's catch-up after a
# burst, and search latency and recall while it catches up and after; in one QEMU guest boot.
# Prints a table and writes the "Vector write-ahead log" section of bench/REPORT.md.
#
#   bench/wal.sh [DATA_DIR] [--rounds N] [--import N] [--rows N] [--per N] [--burst N]
#                [--burst-per N] [--during S] [--after N] [--sigma S] [--timeout S] [--no-report]
#
#   DATA_DIR      base.fvecs and query.fvecs (default: ../shared/data/pydocs-minilm beside the
#                 repo, else data/pydocs-minilm/small)
#   --rounds N    rounds of the WAL / --index-now comparison (default 5)
#   --import N    vectors of the one-per-SET test, `vexctl import` (default 1000)
#   --rows N      vectors of the many-per-SET test, `vexctl set --rows` (default 2000)
#   --per N       chunks per SET in that test (default 100)
#   --burst N     embeddings in the burst (default 100000); --burst 20000 for a quick run
#   --burst-per N chunks per SET in the burst (default 100)
#   --during S    search for at most S seconds while the worker catches up (default 120)
#   --after N     search passes after it caught up (default 3)
#   --sigma S     per-component noise of the burst's perturbed copies (default 0.015)
#   --timeout S   guest wall-clock limit (default 5400)
#   --no-report   print the table only; leave bench/REPORT.md alone
#
# The burst is made from real vectors: base.fvecs repeated (copy 0 unchanged, later copies with
# Gaussian noise of standard deviation S per component, then scaled back to unit length;
# `wal-tool gen`, seeded, deterministic) into $VEXFS_CACHE/bench-wal/share/burst.fvecs, never
# into the repo; its ground truth is exact (`wal-tool gt`). The round tests use the first rows of
# base.fvecs. Host side: builds bench/wal-tool.c (natively, and static for the guest), makes the
# data, a sparse disk image, and measures the TSC's rate (the guest times everything with the
# host's TSC: bench/wal-tool.c says why); guest side: bench/wal-run.sh (it formats the disk with mkfs.vexfs
# before every measurement); then fsck.vexfs -n of the burst's image and bench/wal.py report.
# Needs scripts/setup to have run (kernel, module, tools). Work files and the console log:
# $VEXFS_CACHE/bench-wal. Time: dominated by the worker's catch-up after the burst (about 60 to
# 90 vectors linked/s on a quiet host, 30 with other guests running): about 35 minutes with the
# defaults on a quiet host (an estimate: not completed yet), 10 with --burst 20000 (21 measured
# with the host's load at 8-12 from other guests).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

DATA=$VEXFS_ROOT/../shared/data/pydocs-minilm
[ -f "$DATA/base.fvecs" ] || DATA=$VEXFS_ROOT/data/pydocs-minilm/small
ROUNDS=5 N_IMPORT=1000 N_ROWS=2000 PER=100 BURST=100000 BURST_PER=100 DURING=120 AFTER=3 SIGMA=0.015
K=10 EF=64 TIMEOUT=5400 REPORT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --import) N_IMPORT=$2; shift 2 ;;
        --rows) N_ROWS=$2; shift 2 ;;
        --per) PER=$2; shift 2 ;;
        --burst) BURST=$2; shift 2 ;;
        --burst-per) BURST_PER=$2; shift 2 ;;
        --during) DURING=$2; shift 2 ;;
        --after) AFTER=$2; shift 2 ;;
        --sigma) SIGMA=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) sed -n '2,24s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "bench/wal.sh: unknown option $1 (see --help)" ;;
        *) DATA=$1; shift ;;
    esac
done
for v in "$ROUNDS" "$N_IMPORT" "$N_ROWS" "$PER" "$BURST" "$BURST_PER" "$DURING" "$AFTER" "$TIMEOUT"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "bench/wal.sh: not a positive count: $v"
done
[[ $SIGMA =~ ^0?\.[0-9]+$|^0$ ]] || die "bench/wal.sh: --sigma must be a number in [0, 1): $SIGMA"
[ "$PER" -le 1020 ] && [ "$BURST_PER" -le 1020 ] || die "bench/wal.sh: at most 1,020 chunks per SET"
DATA=$(realpath "$DATA")
for f in base.fvecs query.fvecs; do
    [ -f "$DATA/$f" ] || die "no $DATA/$f"
done
[ -x "$VEXFS_HOST_BIN/fsck.vexfs" ] || die "no $VEXFS_HOST_BIN/fsck.vexfs: run scripts/setup"

WORK=$VEXFS_CACHE/bench-wal
SHARE=$WORK/share
LOG=$WORK/console.log
rm -rf "$WORK"
mkdir -p "$SHARE"

log "wal bench: building wal-tool (host, and static for the guest)"
cc -O2 -march=native -std=gnu11 -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/wal-tool.c" -o "$WORK/wal-tool" -lm
cc -static -O2 -std=gnu11 -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/wal-tool.c" -o "$SHARE/wal-tool" -lm

# The guest reads the host's TSC (QEMU TCG): its rate, for every time the guest measures.
"$WORK/wal-tool" tsc-mhz > "$SHARE/tsc-mhz"

dim=$(od -An -t d4 -N4 "$DATA/base.fvecs" | tr -d ' ')
row=$((4 + 4 * dim))
rows=$(($(stat -c %s "$DATA/base.fvecs") / row))
for n in "$N_IMPORT" "$N_ROWS"; do
    [ "$rows" -ge "$n" ] || die "$DATA/base.fvecs has $rows rows, fewer than $n"
done
dd if="$DATA/base.fvecs" of="$SHARE/import.fvecs" bs="$row" count="$N_IMPORT" status=none
dd if="$DATA/base.fvecs" of="$SHARE/rows.fvecs" bs="$row" count="$N_ROWS" status=none
cp "$DATA/query.fvecs" "$SHARE/query.fvecs"
nq=$(($(stat -c %s "$SHARE/query.fvecs") / row))
log "wal bench: the burst ($BURST vectors from $rows real ones, sigma $SIGMA) and its ground truth"
"$WORK/wal-tool" gen "$DATA/base.fvecs" "$BURST" "$SIGMA" 1 "$SHARE/burst.fvecs" > "$WORK/burst.json"
"$WORK/wal-tool" gt "$SHARE/burst.fvecs" "$SHARE/query.fvecs" "$K" "$SHARE/burst-gt.ivecs"

# One set of mkfs parameters for every measurement: room for the burst (about 1.7 KiB of vector
# and graph per 384-d slot), a fixed HNSW seed, and a 128 MiB journal (32,768 blocks, given: the
# largest default before af01868, which grew it to 256 MiB): a SET with --index-now is one transaction, which may take a quarter of the
# journal, and a graph insert may change about 75 blocks per chunk (7,503 for 100 chunks: more
# than a quarter of the default journal of a 1 GiB filesystem).
VECTORS=$((BURST + 1024))
SIZE_MIB=$(( (VECTORS * (4 * dim + 512) * 5 / 4 + (1 << 20) - 1) / (1 << 20) + 512 ))
[ "$SIZE_MIB" -ge 1024 ] || SIZE_MIB=1024
MKFS=(--dim "$dim" --metric l2 --seed 1 --vectors "$VECTORS" --journal-blocks 32768 -N $((N_ROWS / PER + BURST / BURST_PER + N_IMPORT + 4096)))
IMG=$WORK/vexfs.img
truncate -s "${SIZE_MIB}M" "$IMG"
"$VEXFS_HOST_BIN/mkfs.vexfs" -n "${MKFS[@]}" "$IMG" > "$WORK/layout.txt"

log "wal bench: booting the guest ($ROUNDS rounds, a burst of $BURST; TCG, tens of minutes; timeout ${TIMEOUT}s)"
# Other guests on the host (other tests may run meanwhile): every 20 s, the time, the load
# average and the QEMU processes other than ours, for the report's caveats.
qemu_before=$(pgrep -c qemu-system || true)
(
    while sleep 20; do
        others=$(($(pgrep -c qemu-system || true) - 1))
        echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg) $((others < 0 ? 0 : others))"
    done
) > "$WORK/host-load.txt" &
loadmon=$!
start=$SECONDS
status=0
VEXFS_GUEST_LOG=$LOG "$VEXFS_ROOT/qemu/run-guest" --disk "$IMG" --share "$SHARE" --mem 2048 \
    --timeout "$TIMEOUT" "$VEXFS_ROOT/bench/wal-run.sh" "$ROUNDS" "$N_IMPORT" "$N_ROWS" "$PER" \
    "$BURST" "$BURST_PER" "$DURING" "$AFTER" "$K" "$EF" "${MKFS[@]}" > "$WORK/run-guest.out" 2>&1 || status=$?
if [ $status -ne 0 ]; then
    kill "$loadmon" 2> /dev/null || true
    tail -n 40 "$WORK/run-guest.out" >&2
    die "wal bench: guest failed (run-guest status $status); console log $LOG"
fi
secs=$((SECONDS - start))
kill "$loadmon" 2> /dev/null || true
wait "$loadmon" 2> /dev/null || true
qemu_after=$(pgrep -c qemu-system || true)

fsck_status=0
"$VEXFS_HOST_BIN/fsck.vexfs" -n "$IMG" > "$WORK/fsck.out" 2>&1 || fsck_status=$?
commit=$(git -C "$VEXFS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
git -C "$VEXFS_ROOT" diff --quiet HEAD -- kmod core 2>/dev/null || dirty=" (kmod/ or core/ modified)"
RES=$WORK/results.jsonl
{
    tr -d '\r' < "$LOG" | sed -n 's/^BENCH //p'
    cat <<EOF
{"tool": "run", "wall_secs": $secs, "rounds": $ROUNDS, "import": $N_IMPORT, "rows": $N_ROWS, "per": $PER, "burst": $BURST, "burst_per": $BURST_PER, "during": $DURING, "after": $AFTER, "k": $K, "ef": $EF, "queries": $nq, "dim": $dim, "data": "$DATA", "image_mib": $SIZE_MIB, "mkfs": "${MKFS[*]}", "layout": $(python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))' < "$WORK/layout.txt"), "commit": "$commit$dirty", "fsck_vexfs": $fsck_status, "tsc_mhz": $(cat "$SHARE/tsc-mhz"), "host_qemu_other": [${qemu_before:-0}, ${qemu_after:-0}], "burst_data": $(cat "$WORK/burst.json")}
EOF
    python3 -c 'import json, sys
print(json.dumps({"tool": "host-load", "samples": [[int(t), float(l), int(o)] for t, l, o in (x.split() for x in sys.stdin if x.strip())]}))' < "$WORK/host-load.txt"
} > "$RES"
log "wal bench: guest done in ${secs}s; fsck.vexfs -n: $fsck_status"

REPORT_ARGS=()
[ $REPORT = 1 ] && REPORT_ARGS=(--report "$VEXFS_ROOT/bench/REPORT.md")
python3 "$VEXFS_ROOT/bench/wal.py" "$RES" "${REPORT_ARGS[@]}"
[ "$fsck_status" -eq 0 ] || die "fsck.vexfs -n found problems after the run (status $fsck_status): $WORK/fsck.out"
