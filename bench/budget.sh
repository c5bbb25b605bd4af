#!/usr/bin/env bash
# The memory-budget benchmark (issue 10, items 3 and 5): the index searched through the kernel
# with all of it in memory, and with an index_mem= budget a tenth of it (or --ratio), in one QEMU
# guest (1 GiB of RAM), on bulk-built images; prints a table and writes the "Index within a
# memory budget" section of bench/REPORT.md (bench/budget.py).
#
#   bench/budget.sh [DATA_DIR] [--quant none,sq8,pq] [--efs 16,32,64,128] [--ratio 10]
#                   [--budgets none,ratio,raw35,f32x10] [--passes 1] [--timeout 5400] [--no-report]
#                   [--keep] [--section NAME]
#
#   DATA_DIR   base.fvecs, query.fvecs, groundtruth.ivecs (default: pydocs-100k, which
#              `scripts/data scale` makes, if present; else the repo's sample)
#   --quant    the images, one per value: float32 vectors only, with SQ8 codes (the scale
#              trained on the base rows), sq8-codes: an SQ8 image searched by the codes'
#              distances (VEXFS_SEARCH_CODE_DISTANCES: no float32 vector read; a copy of the
#              sq8 image when sq8 comes first in the list), with PQ codes (mkfs's default m,
#              the codebook trained on the base rows; in node records, mkfs's default layout),
#              pq-split: the same with `--pq-layout split` (vectors and level-0 links in
#              their own regions)
#   --ratio R  the budget is the vector and index regions' bytes / R (at least 256 KiB)
#   --budgets  the mounts, in this order: none (no budget), ratio (the regions / R), raw35
#              (0.35 x the raw float32 vectors), f32x10 (a tenth of the float32 index: rows x
#              (vector stride + level-0 record) bytes, the PQ target's budget whatever the
#              image's layout); default none,ratio,raw35
#   --passes P timed passes per ef (after one warm-up pass at the largest ef)
#   --keep     keep the images (in $VEXFS_CACHE/bench-budget) and use them again next time,
#              when they are newer than DATA_DIR's base.fvecs
#   --section NAME  the report goes to the section <!-- bench/budget.sh NAME: begin --> of
#              bench/REPORT.md (another data set's run beside the default one), not the default
#              section <!-- bench/budget.sh: begin -->
#
# On the host: `mkfs.vexfs --import base.fvecs --import-dir docs -j 2` per image (mkfs's
# default m: 16, 32 in node records; ef_construction 200, l2), fsck.vexfs -n. In the guest
# (bench/budget-run.sh): each image is mounted without a budget, then with index_mem=BYTES/R,
# then with 0.35 x the raw float32 vectors (the SQ8 target's memory); bench/guest-search.c runs
# every query through VEXFS_IOC_SEARCH at each ef and reports recall@10, p50/p99 latency (TCG: compare
# within the run only) and, from VEXFS_IOC_INDEX_MEM around the timed passes, 4 KiB block reads
# per query, the cache's hit rate and the bytes it holds. Block reads are counted, not timed:
# they compare across machines. Each mount starts cold (the device's page cache goes with the
# last close). Raw records: $VEXFS_CACHE/bench-results/budget.jsonl.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

DATA=$VEXFS_CACHE/data/pydocs-100k
[ -f "$DATA/base.fvecs" ] || DATA=$VEXFS_ROOT/data/pydocs-minilm/small
QUANTS=none,sq8 EFS=16,32,64,128 RATIO=10 PASSES=1 TIMEOUT=5400 REPORT=1 KEEP=0
BUDGETS=none,ratio,raw35 SECTION=
while [ $# -gt 0 ]; do
    case "$1" in
        --quant) QUANTS=$2; shift 2 ;;
        --efs) EFS=$2; shift 2 ;;
        --ratio) RATIO=$2; shift 2 ;;
        --budgets) BUDGETS=$2; shift 2 ;;
        --section) SECTION=$2; shift 2 ;;
        --passes) PASSES=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,31s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see bench/budget.sh --help)" ;;
        *) DATA=$1; shift ;;
    esac
done
DATA=$(realpath "$DATA")
for f in base.fvecs query.fvecs groundtruth.ivecs; do
    [ -f "$DATA/$f" ] || die "no $DATA/$f"
done
[[ $RATIO =~ ^[0-9]+$ && $RATIO -ge 1 ]] || die "bad --ratio $RATIO"
[[ $BUDGETS =~ ^(none|ratio|raw35|f32x10)(,(none|ratio|raw35|f32x10))*$ ]] || die "bad --budgets $BUDGETS"
[[ -z $SECTION || $SECTION =~ ^[A-Za-z0-9._-]+$ ]] || die "bad --section $SECTION"

"$VEXFS_ROOT/scripts/setup"
WORK=$VEXFS_CACHE/bench-budget
SHARE=$WORK/share
RES=$VEXFS_CACHE/bench-results
rm -rf "$SHARE"
[ $KEEP = 1 ] || rm -f "$WORK"/*.img
mkdir -p "$SHARE" "$RES"
cc -static -O2 -std=gnu11 -pthread -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/guest-search.c" -o "$SHARE/guest-search"
cp "$DATA/query.fvecs" "$DATA/groundtruth.ivecs" "$SHARE/"

dim=$(od -An -t d4 -N4 "$DATA/base.fvecs" | tr -d ' ')
n=$(( $(stat -c %s "$DATA/base.fvecs") / (4 + 4 * dim) ))
# Room for the vector regions (~1.7 KiB per 384-d slot with codes, more for larger dims), the
# files' blocks and the journal.
size_mib=$(( n * (dim * 6 + 1024) / 1048576 + 256 ))
# The float32 index of these rows at m 16: each vector (4 x dim rounded up to 32 bytes) and
# its level-0 record (8 + 8 x 16 bytes).
f32_bytes=$(( n * ((dim * 4 + 31) / 32 * 32 + 136) ))
DISKS=() LABELS=()
for q in ${QUANTS//,/ }; do
    case "$q" in
        # The float32 graph built on the floats, as in the runs before --build-on auto.
        none) qargs=(--build-on float) ;;
        sq8) qargs=(--quant sq8 --train "$DATA/base.fvecs") ;;
        pq) qargs=(--quant pq --train "$DATA/base.fvecs") ;;
        pq-split) qargs=(--quant pq --pq-layout split --train "$DATA/base.fvecs") ;;
        sq8-codes) qargs=(--quant sq8 --train "$DATA/base.fvecs") ;;
        *) die "--quant takes none, sq8, sq8-codes, pq and/or pq-split" ;;
    esac
    img=$WORK/$q.img
    DISKS+=(--disk "$img")
    LABELS+=("$q")
    # sq8-codes after sq8: a copy of this run's sq8 image (made or kept just before).
    if [ "$q" = sq8-codes ] && [[ ,$QUANTS, == *,sq8,*sq8-codes* ]]; then
        cp --reflink=auto "$WORK/sq8.img" "$img"
        cp "$WORK/fsck-sq8.out" "$WORK/fsck-$q.out"
        continue
    fi
    if [ $KEEP = 1 ] && [ "$img" -nt "$DATA/base.fvecs" ]; then
        log "budget bench: using $img again (--keep)"
        continue
    fi
    log "budget bench: bulk-building $img ($n x $dim, --quant $q, -j 2)"
    "$VEXFS_HOST_BIN/mkfs.vexfs" -q --import "$DATA/base.fvecs" --import-dir docs --metric l2 --seed 1 \
        -j 2 "${qargs[@]}" "$img" "${size_mib}M"
    "$VEXFS_HOST_BIN/fsck.vexfs" -n "$img" > "$WORK/fsck-$q.out" 2>&1 || die "fsck.vexfs -n $img failed"
done
# Each image's HNSW m, and whether it is laid out in node records (mkfs.vexfs --quant pq's
# default): its rows say so.
TAGS=()
for i in "${!LABELS[@]}"; do
    info=$("$VEXFS_HOST_BIN/vexctl" inspect --json "$WORK/${LABELS[$i]}.img")
    m=$(tr ',' '\n' <<<"$info" | awk -F: '/"hnsw_m"/ && !n++ { gsub(/[^0-9]/, "", $2); print $2 }')
    [[ $m =~ ^[0-9]+$ ]] || die "no hnsw_m in vexctl inspect --json of ${LABELS[$i]}.img"
    tag="\"hnsw_m\": $m, "
    if grep -q '"node_record_bytes"' <<<"$info"; then
        tag+="\"node_records\": true, "
    fi
    TAGS+=("$tag")
done

log "budget bench: booting the guest (TCG; timeout ${TIMEOUT}s)"
start=$SECONDS
status=0
VEXFS_GUEST_LOG=$WORK/console.log "$VEXFS_ROOT/qemu/run-guest" "${DISKS[@]}" --share "$SHARE" \
    --timeout "$TIMEOUT" "$VEXFS_ROOT/bench/budget-run.sh" "$EFS" "$PASSES" "$RATIO" $((n * dim * 4)) "$f32_bytes" "$BUDGETS" "${LABELS[@]}" \
    > "$WORK/run-guest.out" 2>&1 || status=$?
if [ $status -ne 0 ]; then
    tail -n 40 "$WORK/run-guest.out" >&2
    die "budget bench failed (run-guest status $status); console log $WORK/console.log"
fi
{
    tr -d '\r' < "$WORK/console.log" | sed -n 's/^BENCH //p' | while IFS= read -r line; do
        for i in "${!LABELS[@]}"; do
            r=${LABELS[$i]}
            line=${line/#\{\"image\": \"$r\", /\{\"image\": \"$r\", ${TAGS[$i]}}
        done
        printf '%s\n' "$line"
    done
    echo "{\"side\": \"run\", \"wall_secs\": $((SECONDS - start)), \"vectors\": $n, \"dim\": $dim, \"data\": \"$DATA\", \"ratio\": $RATIO, \"budgets\": \"$BUDGETS\"}"
} > "$RES/budget.jsonl"
ARGS=()
[ $REPORT = 1 ] && ARGS=(--report "$VEXFS_ROOT/bench/REPORT.md")
[ -z "$SECTION" ] || ARGS+=(--section "$SECTION")
python3 "$VEXFS_ROOT/bench/budget.py" "$RES/budget.jsonl" "${ARGS[@]}"
[ $KEEP = 1 ] || rm -f "$WORK"/*.img
