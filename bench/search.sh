#!/usr/bin/env bash
# The host search benchmark (issue 9, item 4, host rows): the kernel's search code (core::vindex,
# as `vexctl search-image`) over a float32 image, an SQ8 one (`mkfs.vexfs --quant sq8`) and a PQ
# one (`--quant pq`), all bulk-loaded from the same rows and seed, against hnswlib and faiss on the same data, in one
# run: QPS at recall@10 0.90/0.95/0.99 with one thread and with every CPU issuing queries;
# prints the tables and writes the data set's "Host search" section of bench/REPORT.md
# (bench/search.py).
#
#   bench/search.sh [DATA_DIR] [--rounds R] [--passes P] [--threads T] [--no-report]
#
#   DATA_DIR     base.fvecs, query.fvecs, groundtruth.ivecs (default: ../shared's pydocs-minilm
#                beside the repo if present, else the repo's sample; the second data set:
#                `scripts/data glove` prints glove-100's directory)
#   --rounds R   rounds (default 3); each table keeps the best QPS of all of them
#   --passes P   passes over the queries per ef and round (default 2)
#   --threads T  threads of the concurrent rows (default: the CPUs)
#   --no-report  print the tables only; leave bench/REPORT.md alone
#
# The images are made in $VEXFS_CACHE/bench-search (mkfs.vexfs --import -j CPUs) and kept;
# raw results in $VEXFS_CACHE/bench-results/search-NAME.json. Machines here are noisy: stop
# other work for the run.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

DATA=$VEXFS_ROOT/../shared/data/pydocs-minilm
[ -f "$DATA/base.fvecs" ] || DATA=$VEXFS_ROOT/data/pydocs-minilm/small
ROUNDS=3 PASSES=2 THREADS=$(nproc) REPORT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --passes) PASSES=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "bench/search.sh: unknown option $1 (see --help)" ;;
        *) DATA=$1; shift ;;
    esac
done
for v in "$ROUNDS" "$PASSES" "$THREADS"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "bench/search.sh: not a positive count: $v"
done
DATA=$(realpath "$DATA")
NAME=$(basename "$DATA")
for f in base.fvecs query.fvecs groundtruth.ivecs; do
    [ -f "$DATA/$f" ] || die "no $DATA/$f"
done
(cd "$VEXFS_ROOT" && cargo build --release --quiet -p mkfs-vexfs -p fsck-vexfs &&
    cargo build --release --quiet -p vexfs-image --example bench_search)

PY=$(bench_python)
RES=$VEXFS_CACHE/bench-results
WORK=$VEXFS_CACHE/bench-search
mkdir -p "$RES" "$WORK"
start=$(date +%s)
size="$(( $(stat -c %s "$DATA/base.fvecs") / 1048576 * 3 + 256 ))M"
for q in f32 sq8 pq; do
    img=$WORK/$NAME-$q.img
    quant=none
    [ $q = f32 ] || quant=$q
    # float32: its graph built on the floats, as hnswlib's and faiss's (not --build-on auto's codes).
    build=()
    [ $quant != none ] || build=(--build-on float)
    log "bench/search.sh: bulk-loading $img (--quant $quant)"
    rm -f "$img"
    "$VEXFS_HOST_BIN/mkfs-vexfs" -q -f --import "$DATA/base.fvecs" --import-dir docs --metric l2 --seed 1 \
        -j "$(nproc)" --quant $quant "${build[@]}" "$img" "$size"
    "$VEXFS_HOST_BIN/fsck-vexfs" -n "$img" > /dev/null || die "fsck.vexfs -n $img is not clean"
done
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$PY" "$VEXFS_ROOT/bench/search.py" run --data "$DATA" \
    --image "f32=$WORK/$NAME-f32.img" --image "sq8=$WORK/$NAME-sq8.img" --image "pq=$WORK/$NAME-pq.img" \
    --bench-search "$VEXFS_ROOT/target/release/examples/bench_search" --out "$RES/search-$NAME.json" \
    --rounds "$ROUNDS" --passes "$PASSES" --threads "$THREADS"
log "bench/search.sh: the run took $(( ($(date +%s) - start) / 60 )) min"
if [ "$REPORT" = 1 ]; then
    "$PY" "$VEXFS_ROOT/bench/search.py" report "$RES/search-$NAME.json" --report "$VEXFS_ROOT/bench/REPORT.md"
else
    "$PY" "$VEXFS_ROOT/bench/search.py" report "$RES/search-$NAME.json"
fi
