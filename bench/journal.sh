#!/usr/bin/env bash
# The journal benchmark (issue 7, item 7): file operations and durable embeddings on vexfs against
# ext4 (data=ordered, its default), in one QEMU guest boot; prints a table and writes the
# "Journal" section of bench/REPORT.md.
#
#   bench/journal.sh [DATA_DIR] [--reps N] [--files N] [--renames N] [--cycles N] [--big-dir N]
#                    [--tree-files N] [--vectors N] [--passes N] [--timeout S] [--no-report]
#
#   DATA_DIR       base.fvecs (default: data/pydocs-minilm/small, the sample in the repo)
#   --reps N       rounds, each running every test on both filesystems (default 7)
#   --files N      create + write 4 KiB + fsync of N files (default 500)
#   --renames N    files of the rename storm (default 500), each renamed once per cycle
#   --cycles N     cycles of the rename storm (default 10)
#   --big-dir N    renames out of a directory of N files, one each (default 5000)
#   --tree-files N files in the untarred tree (default 3000)
#   --vectors N    embeddings set per round (default 1000)
#   --passes N     `vexctl search --all` passes per round (default 3)
#   --timeout S    guest wall-clock limit (default 1200)
#   --no-report    print the table only; leave bench/REPORT.md alone
#
# Host side: builds bench/guest-fsops.c (static), makes the tarball (bench/journal.py tree:
# generated, deterministic), the vector files (the first N rows of base.fvecs; the queries are
# the next rows, up to 1,000, held out of the index, or query.fvecs when there are too few),
# a vexfs image and an ext4 image of the same size and journal size (ext4 made by mkfs.ext4 as
# tests/guest/080-ext4-oracle.sh does). Guest side: bench/journal-run.sh. Then fsck.vexfs -n and
# e2fsck -fn of the images, and bench/journal.py report. Needs scripts/setup to have run (kernel,
# module, tools). Work files and the console log: $VEXFS_CACHE/bench-journal. Takes about
# 8 minutes with the defaults.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

DATA=$VEXFS_ROOT/data/pydocs-minilm/small
REPS=7 FILES=500 RENAMES=500 CYCLES=10 BIG_DIR=5000 TREE_FILES=3000 VECTORS=1000 PASSES=3 TIMEOUT=1200 REPORT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --renames) RENAMES=$2; shift 2 ;;
        --cycles) CYCLES=$2; shift 2 ;;
        --big-dir) BIG_DIR=$2; shift 2 ;;
        --tree-files) TREE_FILES=$2; shift 2 ;;
        --vectors) VECTORS=$2; shift 2 ;;
        --passes) PASSES=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "bench/journal.sh: unknown option $1 (see --help)" ;;
        *) DATA=$1; shift ;;
    esac
done
for v in "$REPS" "$FILES" "$RENAMES" "$CYCLES" "$BIG_DIR" "$TREE_FILES" "$VECTORS" "$PASSES" "$TIMEOUT"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "bench/journal.sh: not a positive count: $v"
done
DATA=$(realpath "$DATA")
[ -f "$DATA/base.fvecs" ] || die "no $DATA/base.fvecs"
command -v mkfs.ext4 > /dev/null || die "mkfs.ext4 missing: scripts/setup deps installs e2fsprogs"
[ -x "$VEXFS_HOST_BIN/mkfs.vexfs" ] || die "no $VEXFS_HOST_BIN/mkfs.vexfs: run scripts/setup"

WORK=$VEXFS_CACHE/bench-journal
SHARE=$WORK/share
LOG=$WORK/console.log
rm -rf "$WORK"
mkdir -p "$SHARE"

log "journal bench: building guest-fsops (static), the tree and the vectors"
cc -static -O2 -std=gnu11 -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/guest-fsops.c" -o "$SHARE/guest-fsops"
python3 "$VEXFS_ROOT/bench/journal.py" tree --files "$TREE_FILES" --out "$SHARE/tree.tar" \
    > "$WORK/tree.json"

dim=$(od -An -t d4 -N4 "$DATA/base.fvecs" | tr -d ' ')
row=$((4 + 4 * dim))
rows=$(($(stat -c %s "$DATA/base.fvecs") / row))
[ "$rows" -ge "$VECTORS" ] || die "$DATA/base.fvecs has $rows rows, fewer than --vectors $VECTORS"
dd if="$DATA/base.fvecs" of="$SHARE/vecs.fvecs" bs="$row" count="$VECTORS" status=none
held=$((rows - VECTORS))
[ "$held" -le 1000 ] || held=1000
if [ "$held" -ge 100 ]; then
    dd if="$DATA/base.fvecs" of="$SHARE/queries.fvecs" bs="$row" skip="$VECTORS" count="$held" status=none
    QUERIES="rows $VECTORS..$((VECTORS + held - 1)) of base.fvecs, held out of the index"
else
    [ -f "$DATA/query.fvecs" ] || die "too few rows left for queries and no $DATA/query.fvecs"
    cp "$DATA/query.fvecs" "$SHARE/queries.fvecs"
    QUERIES="query.fvecs"
fi
nq=$(($(stat -c %s "$SHARE/queries.fvecs") / row))

# Both images: the same size and the same journal size (vexfs's floor for these parameters,
# core::embed::min_journal_blocks: 10,521 blocks, rounded up to 42 MiB).
SIZE_MIB=512
JOURNAL_MIB=42
VIMG=$WORK/vexfs.img
EIMG=$WORK/ext4.img
# Slots and inodes for every round, so that no round depends on reusing what an earlier one freed.
"$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim "$dim" --metric l2 --seed 1 \
    --vectors $((2 * VECTORS * REPS + 64)) -N $((REPS * (FILES + RENAMES + BIG_DIR + TREE_FILES + 2 * VECTORS + 512) + 1024)) \
    --journal-blocks $((JOURNAL_MIB * 256)) "$VIMG" "${SIZE_MIB}M"
truncate -s "${SIZE_MIB}M" "$EIMG"
# 4 KiB blocks as vexfs; inode tables and journal written now, so no lazy-init thread writes
# behind the benchmark.
mkfs.ext4 -q -F -b 4096 -I 256 -J size=$JOURNAL_MIB -E lazy_itable_init=0,lazy_journal_init=0 "$EIMG"

log "journal bench: booting the guest ($REPS rounds; TCG, several minutes; timeout ${TIMEOUT}s)"
start=$SECONDS
status=0
VEXFS_GUEST_LOG=$LOG "$VEXFS_ROOT/qemu/run-guest" --disk "$VIMG" --disk "$EIMG" --share "$SHARE" \
    --timeout "$TIMEOUT" "$VEXFS_ROOT/bench/journal-run.sh" "$FILES" "$RENAMES" "$CYCLES" "$BIG_DIR" \
    "$VECTORS" "$REPS" "$PASSES" > "$WORK/run-guest.out" 2>&1 || status=$?
if [ $status -ne 0 ]; then
    tail -n 40 "$WORK/run-guest.out" >&2
    die "journal bench: guest failed (run-guest status $status); console log $LOG"
fi
secs=$((SECONDS - start))

fsck_status=0
"$VEXFS_HOST_BIN/fsck.vexfs" -n "$VIMG" > "$WORK/fsck.out" 2>&1 || fsck_status=$?
e2fsck_status=0
e2fsck -fn "$EIMG" > "$WORK/e2fsck.out" 2>&1 || e2fsck_status=$?
commit=$(git -C "$VEXFS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
git -C "$VEXFS_ROOT" diff --quiet HEAD -- kmod core 2>/dev/null || dirty=" (kmod/ or core/ modified)"
RES=$WORK/results.jsonl
{
    tr -d '\r' < "$LOG" | sed -n 's/^BENCH //p'
    cat <<EOF
{"test": "run", "wall_secs": $secs, "reps": $REPS, "files": $FILES, "renames": $RENAMES, "cycles": $CYCLES, "big_dir": $BIG_DIR, "vectors": $VECTORS, "passes": $PASSES, "queries": $nq, "queries_from": "$QUERIES", "dim": $dim, "data": "$DATA", "image_mib": $SIZE_MIB, "journal_mib": $JOURNAL_MIB, "commit": "$commit$dirty", "fsck_vexfs": $fsck_status, "e2fsck": $e2fsck_status, "tree": $(cat "$WORK/tree.json")}
EOF
} > "$RES"
log "journal bench: guest done in ${secs}s; fsck.vexfs -n: $fsck_status, e2fsck -fn: $e2fsck_status"

REPORT_ARGS=()
[ $REPORT = 1 ] && REPORT_ARGS=(--report "$VEXFS_ROOT/bench/REPORT.md")
python3 "$VEXFS_ROOT/bench/journal.py" report "$RES" "${REPORT_ARGS[@]}"
[ "$fsck_status" -eq 0 ] || die "fsck.vexfs -n found problems after the run (status $fsck_status): $WORK/fsck.out"
[ "$e2fsck_status" -eq 0 ] || die "e2fsck -fn found problems after the run (status $e2fsck_status): $WORK/e2fsck.out"
