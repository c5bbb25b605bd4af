#!/usr/bin/env bash
# The guest half of scripts/bench: in-kernel k-NN search (VEXFS_IOC_SEARCH) against the same core
# code in userspace, in one QEMU guest, on one image.
#
#   bench/guest.sh DATA_DIR OUT.jsonl [--efs 16,32,64] [--passes 2] [--rounds 2] [--k 10]
#                  [--timeout 5400] [--conc-ef EF | --no-concurrent] [--quant none|sq8]
#
# DATA_DIR holds base.fvecs, query.fvecs and groundtruth.ivecs. On the host: build the two tools
# (bench/guest-search.c, static; image/examples/bench_search.rs, static musl), stage them with the
# data in $VEXFS_CACHE/bench-guest/share, and format $VEXFS_CACHE/bench-guest/vexfs.img sized for
# the data (--vectors = the base rows; with --quant sq8, SQ8 codes at the scale trained on the
# base rows, mkfs.vexfs --train). In the guest (bench/guest-run.sh): vexctl import, the same
# rows built in userspace twice (core's MemIndex; and mkfs.vexfs --import -j 1, whose links
# phase runs the kernel's insert code on an image of the same kind), then kernel and userspace
# searches at each EF. Then, unless --no-concurrent, searches during an
# import, on a second image ($VEXFS_CACHE/bench-guest/conc.img, /dev/vdb, sized for twice the
# rows): the base set imported into /mnt/docs alone, then the negated base set (every component's
# sign flipped: the same norms and spread, the same insert work, in the opposite direction from
# the queries) imported into /mnt/neg while guest-search runs again and again at one ef (--conc-ef,
# default the largest of --efs), one thread and one per vCPU; before and after it, the same
# searches on the idle index. OUT.jsonl gets the guest's "BENCH" records, then the image's
# superblock (vexctl inspect --json) and fsck.vexfs's verdict on both images, one JSON object per
# line.
# Needs scripts/setup to have run (kernel, module, tools). The console log is kept in
# $VEXFS_CACHE/bench-guest/console.log.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

[ $# -ge 2 ] || { sed -n '5,6s/^# \{0,1\}//p' "$0" >&2; exit 2; }
DATA=$(realpath "$1")
OUT=$2
shift 2
EFS=16,32,64 PASSES=2 ROUNDS=2 K=10 TIMEOUT=5400 CONC_EF= QUANT=none
while [ $# -gt 0 ]; do
    case "$1" in
        --no-concurrent) CONC_EF=0; shift; continue ;;
        --conc-ef) CONC_EF=$2 ;;
        --efs) EFS=$2 ;;
        --passes) PASSES=$2 ;;
        --rounds) ROUNDS=$2 ;;
        --k) K=$2 ;;
        --timeout) TIMEOUT=$2 ;;
        --quant) QUANT=$2 ;;
        *) die "bench/guest.sh: unknown option $1" ;;
    esac
    shift 2
done
for f in base.fvecs query.fvecs groundtruth.ivecs; do
    [ -f "$DATA/$f" ] || die "no $DATA/$f"
done
case "$QUANT" in
    none) QUANT_ARGS=() ;;
    sq8) QUANT_ARGS=(--quant sq8 --train "$DATA/base.fvecs") ;;
    *) die "bench/guest.sh: --quant takes none or sq8" ;;
esac
# The concurrent phase's ef: the largest of the list unless given.
[ -n "$CONC_EF" ] || CONC_EF=$(echo "$EFS" | tr ',' '\n' | sort -n | tail -n 1)
[[ $CONC_EF =~ ^[0-9]+$ ]] || die "bench/guest.sh: bad --conc-ef $CONC_EF"

WORK=$VEXFS_CACHE/bench-guest
SHARE=$WORK/share
IMG=$WORK/vexfs.img
CIMG=$WORK/conc.img
LOG=$WORK/console.log
rm -rf "$SHARE"
mkdir -p "$SHARE"

log "guest bench: building guest-search, bench_search and bench_core (static)"
cc -static -O2 -std=gnu11 -pthread -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/guest-search.c" -o "$SHARE/guest-search"
(cd "$VEXFS_ROOT" && cargo build --release --quiet --target "$VEXFS_MUSL" -p vexfs-image --example bench_search)
cp "$VEXFS_ROOT/target/$VEXFS_MUSL/release/examples/bench_search" "$SHARE/"
(cd "$VEXFS_ROOT" && cargo build --release --quiet --target "$VEXFS_MUSL" -p vexfs-core --features std \
    --example bench_core)
cp "$VEXFS_ROOT/target/$VEXFS_MUSL/release/examples/bench_core" "$SHARE/"
cp "$DATA/base.fvecs" "$DATA/query.fvecs" "$DATA/groundtruth.ivecs" "$SHARE/"

# Rows and dimension of the base set.
dim=$(od -An -t d4 -N4 "$DATA/base.fvecs" | tr -d ' ')
bytes=$(stat -c %s "$DATA/base.fvecs")
n=$((bytes / (4 + 4 * dim)))
# Sized for the data: the vector regions (~1.7 KiB per 384-d slot, more for larger dims), one
# inode (256 B) per file, the journal (1/64) and room for the directory, with a quarter spare.
size_mib=$(( (n * (4 * dim + 512 + 256) * 5 / 4 + (1 << 20) - 1) / (1 << 20) + 48 ))
log "guest bench: $n vectors of dim $dim; image ${size_mib} MiB, --vectors $n, -N $((n + 1024))"
rm -f "$IMG"
"$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim "$dim" --metric l2 --vectors "$n" -N $((n + 1024)) \
    ${QUANT_ARGS[@]+"${QUANT_ARGS[@]}"} "$IMG" "${size_mib}M"

DISKS=(--disk "$IMG")
rm -f "$CIMG"
if [ "$CONC_EF" -gt 0 ]; then
    log "guest bench: second image for the searches during an import (--vectors $((2 * n))), negated base set"
    "$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim "$dim" --metric l2 --vectors $((2 * n)) -N $((2 * n + 2048)) \
        ${QUANT_ARGS[@]+"${QUANT_ARGS[@]}"} "$CIMG" "$((2 * size_mib))M"
    DISKS+=(--disk "$CIMG")
    # Row i of neg.fvecs is -(row i of base.fvecs): the sign bit of every float flipped, the
    # leading dimension word of each row kept.
    python3 - "$DATA/base.fvecs" "$SHARE/neg.fvecs" "$dim" <<'EOF'
import array, sys
src, dst, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
words = array.array("I")
with open(src, "rb") as f:
    words.frombytes(f.read())
width = dim + 1
neg = array.array("I", (x if i % width == 0 else x ^ 0x80000000 for i, x in enumerate(words)))
with open(dst, "wb") as f:
    neg.tofile(f)
EOF
fi

log "guest bench: booting the guest (TCG; import and searches take minutes; timeout ${TIMEOUT}s)"
start=$SECONDS
status=0
VEXFS_GUEST_LOG=$LOG "$VEXFS_ROOT/qemu/run-guest" "${DISKS[@]}" --share "$SHARE" --timeout "$TIMEOUT" \
    "$VEXFS_ROOT/bench/guest-run.sh" "$EFS" "$PASSES" "$ROUNDS" "$K" "$CONC_EF" "$QUANT" "$size_mib" \
    > "$WORK/run-guest.out" 2>&1 || status=$?
if [ $status -ne 0 ]; then
    tail -n 40 "$WORK/run-guest.out" >&2
    die "guest bench failed (run-guest status $status); console log $LOG"
fi
secs=$((SECONDS - start))
grep -E '^(== |imported |first differing|[0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9a-f]{8}\|)' "$LOG" >&2 || true
{
    tr -d '\r' < "$LOG" | sed -n 's/^BENCH //p'
    echo "{\"side\": \"guest-run\", \"wall_secs\": $secs, \"image_mib\": $size_mib, \"vectors\": $n, \"dim\": $dim}"
    echo "{\"side\": \"inspect\", \"superblock\": $("$VEXFS_HOST_BIN/vexctl" inspect --json "$IMG" | tr -d '\n')}"
    if [ ${#QUANT_ARGS[@]} -gt 0 ]; then
        # The same format without codes: the on-disk cost of the float32 layout alone (the
        # regions are laid out whole at mkfs, so an empty image measures what a full one holds).
        F32=$WORK/f32-layout.img
        rm -f "$F32"
        "$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim "$dim" --metric l2 --vectors "$n" -N $((n + 1024)) "$F32" "${size_mib}M"
        echo "{\"side\": \"inspect-f32\", \"superblock\": $("$VEXFS_HOST_BIN/vexctl" inspect --json "$F32" | tr -d '\n')}"
        rm -f "$F32"
    fi
    for side in fsck fsck-conc; do
        img=$IMG
        [ $side = fsck ] || img=$CIMG
        [ -f "$img" ] || continue
        fsck_status=0
        "$VEXFS_HOST_BIN/fsck.vexfs" -n "$img" > "$WORK/$side.out" 2>&1 || fsck_status=$?
        echo "{\"side\": \"$side\", \"status\": $fsck_status}"
    done
} > "$OUT"
log "guest bench: done in ${secs}s; records in $OUT"
