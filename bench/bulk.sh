#!/usr/bin/env bash
# The bulk-build benchmark (issue 10, item 5): `mkfs.vexfs --import -j T` against hnswlib's and
# faiss's builds with the same thread count on the same vectors, recall@10 of each build, in one
# run; prints a table and writes the "Bulk build" section of bench/REPORT.md (bench/bulk.py).
#
#   bench/bulk.sh [DATA_DIR] [--threads 1,2]
#                 [--libs vexfs,vexfs-float,vexfs-build-sq8,vexfs-sq8,vexfs-pq,hnswlib,faiss]
#                 [--rounds R] [--efs 16,32,64] [--no-report]
#
#   DATA_DIR     base.fvecs, query.fvecs, groundtruth.ivecs (default: the repo's sample,
#                data/pydocs-minilm/small; the sets at scale: `scripts/data scale` prints
#                pydocs-1m's directory, pydocs-100k is beside it)
#   --threads    thread counts, each built by every library (default 1,2)
#   --libs       the builders (default vexfs,hnswlib,faiss): vexfs is mkfs.vexfs's default
#                (`--build-on auto`: the graph on transient SQ8 codes or on the floats, as a
#                sample of the rows decides), vexfs-float `--build-on float`, vexfs-build-sq8
#                `--build-on sq8`, vexfs-sq8 `--quant sq8` (the graph built on the codes it
#                keeps), vexfs-pq `--quant pq` (node records, m 32, trained on the rows); the
#                report compares each with hnswlib
#   --rounds R   rounds (default 1); the table keeps each one's fastest build
#   --efs        ef values of the recall@10 sweep (default 16,32,64)
#   --no-report  print the table only; leave bench/REPORT.md alone
#
# Builds the host tools first (cargo build --release: mkfs-vexfs, vexctl, fsck-vexfs). The
# images are made in $VEXFS_CACHE/bench-bulk and removed after their searches; raw results in
# $VEXFS_CACHE/bench-results/bulk.json. pydocs-1m takes about 5 GB of disk for an image and
# 3-4 GB of RAM in each builder; machines here are noisy, so stop other work for the run.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

DATA=$VEXFS_ROOT/data/pydocs-minilm/small
THREADS=1,2 LIBS=vexfs,hnswlib,faiss ROUNDS=1 EFS=16,32,64 REPORT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS=$2; shift 2 ;;
        --libs) LIBS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --efs) EFS=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) sed -n '2,27s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "bench/bulk.sh: unknown option $1 (see --help)" ;;
        *) DATA=$1; shift ;;
    esac
done
[[ $THREADS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "bench/bulk.sh: --threads takes counts like 1,2"
[[ $EFS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "bench/bulk.sh: --efs takes values like 16,32,64"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "bench/bulk.sh: not a positive count: $ROUNDS"
L='(vexfs|vexfs-float|vexfs-build-sq8|vexfs-sq8|vexfs-pq|hnswlib|faiss)'
[[ $LIBS =~ ^$L(,$L)*$ ]] || die "bench/bulk.sh: --libs takes vexfs,vexfs-float,vexfs-build-sq8,vexfs-sq8,vexfs-pq,hnswlib,faiss"
DATA=$(realpath "$DATA")
for f in base.fvecs query.fvecs groundtruth.ivecs; do
    [ -f "$DATA/$f" ] || die "no $DATA/$f"
done
(cd "$VEXFS_ROOT" && cargo build --release --quiet -p mkfs-vexfs -p vexctl -p fsck-vexfs)

PY=$(bench_python)
RES=$VEXFS_CACHE/bench-results
mkdir -p "$RES"
start=$(date +%s)
"$PY" "$VEXFS_ROOT/bench/bulk.py" run --data "$DATA" --mkfs "$VEXFS_HOST_BIN/mkfs-vexfs" \
    --fsck "$VEXFS_HOST_BIN/fsck-vexfs" --vexctl "$VEXFS_HOST_BIN/vexctl" --work "$VEXFS_CACHE/bench-bulk" \
    --out "$RES/bulk.json" --threads "$THREADS" --libs "$LIBS" --rounds "$ROUNDS" --efs "$EFS"
log "bench/bulk.sh: the run took $(( ($(date +%s) - start) / 60 )) min"
if [ "$REPORT" = 1 ]; then
    "$PY" "$VEXFS_ROOT/bench/bulk.py" report "$RES/bulk.json" --report "$VEXFS_ROOT/bench/REPORT.md"
else
    "$PY" "$VEXFS_ROOT/bench/bulk.py" report "$RES/bulk.json"
fi
