#!/usr/bin/env bash
# Where the kernel's time goes in one POSIX benchmark phase: boots the QEMU guest on a fresh
# vexfs image and runs the phase under bench/kprof.c (cpu-clock sampling of the kernel with call
# chains: the guest has no perf), then prints kprof's tables (self, self by caller, inclusive)
# after the phase's own "TIME SECONDS COUNT" line. For finding the costs behind a row of
# bench/posix.sh; the figures are sample counts (TCG), only their ratios mean anything.
#
#   bench/profile.sh PHASE [N] [DATA_DIR [QUANT]]
#
#   dir N       create N empty files in one directory (default 30000), then, caches dropped,
#               readdir (untimed) and fstatat of every entry: two profiles
#   seq N       one file of N MiB written in 1 MiB writes, then fsync (default 256); then,
#               the file removed and synced, a second one: two profiles
#   par N       4 processes at once, each writing a file of N MiB (default 64)
#   ingest N    the first N rows (default 2000) of the repo's pydocs sample imported (vexctl
#               import: SETs through the vector write-ahead log), then the index worker linking
#               them (vexctl wait-indexed): two profiles
#   search EF   k-NN searches at ef EF (default 16), k 10, one thread: DATA_DIR's base rows
#               (default the repo's pydocs sample) bulk-built on the host (mkfs.vexfs --import
#               --quant QUANT: sq8 by default, as bench/guest.sh's SQ8 images; none: float32
#               vectors, links built on them), then 20 passes over its queries
#               through VEXFS_IOC_SEARCH (bench/guest-search), and 20 with the same code in
#               userspace (image/examples/bench_search, linked at fixed addresses so that kprof
#               -u names its functions): two profiles, user mode sampled too
#
# Needs scripts/setup to have run (kernel, module, tools). Work files and the console log:
# $VEXFS_CACHE/bench-profile.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

PHASE=${1:-}
case "$PHASE" in
    dir) N=${2:-30000} ;;
    seq) N=${2:-256} ;;
    par) N=${2:-64} ;;
    ingest) N=${2:-2000} ;;
    search) N=${2:-16}; DATA=${3:-$VEXFS_ROOT/data/pydocs-minilm/small}; QUANT=${4:-sq8} ;;
    -h|--help|"") sed -n '2,25s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "bench/profile.sh: unknown phase $PHASE (dir, seq, par, ingest, search)" ;;
esac
[[ $N =~ ^[1-9][0-9]*$ ]] || die "bench/profile.sh: not a positive count: $N"
[ -x "$VEXFS_HOST_BIN/mkfs.vexfs" ] || die "no $VEXFS_HOST_BIN/mkfs.vexfs: run scripts/setup"

WORK=$VEXFS_CACHE/bench-profile
SHARE=$WORK/share
rm -rf "$WORK"
mkdir -p "$SHARE"
cc -static -O2 -Wall -Wextra -Werror "$VEXFS_ROOT/bench/kprof.c" -o "$SHARE/kprof"
cc -static -O2 -std=gnu11 -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/guest-fsops.c" -o "$SHARE/guest-fsops"
"$SHARE/guest-fsops" tsc-mhz > "$SHARE/tsc-mhz"
if [ "$PHASE" = ingest ]; then
    # The sample's first N rows, for vexctl import in the guest.
    python3 - "$VEXFS_ROOT/data/pydocs-minilm/small/base.fvecs" "$SHARE/base.fvecs" "$N" <<'PY'
import struct, sys
raw = open(sys.argv[1], "rb").read(); d = struct.unpack_from("<i", raw)[0]; row = 4 + 4 * d
open(sys.argv[2], "wb").write(raw[:int(sys.argv[3]) * row])
PY
    "$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim 384 --metric l2 --seed 1 --vectors $((N + 64)) \
        -N $((N + 1024)) --journal-blocks 16384 "$WORK/vexfs.img" 1500M
elif [ "$PHASE" = search ]; then
    for f in base.fvecs query.fvecs groundtruth.ivecs; do
        [ -f "$DATA/$f" ] || die "bench/profile.sh: no $DATA/$f"
    done
    cp "$DATA/query.fvecs" "$DATA/groundtruth.ivecs" "$SHARE/"
    cc -static -O2 -std=gnu11 -Wall -Wextra -Werror -pthread -I "$VEXFS_ROOT/include" \
        "$VEXFS_ROOT/bench/guest-search.c" -o "$SHARE/guest-search"
    case "$QUANT" in
        sq8) qargs=(--quant sq8) ;;
        none) qargs=(--quant none --build-on float) ;;
        *) die "bench/profile.sh: QUANT is sq8 or none, not $QUANT" ;;
    esac
    "$VEXFS_HOST_BIN/mkfs.vexfs" -q --import "$DATA/base.fvecs" --import-dir docs --metric l2 \
        --seed 1 "${qargs[@]}" -j 2 "$WORK/vexfs.img" 1500M
    # The userspace side, static and not PIE (its own target dir: other flags than the tools').
    (cd "$VEXFS_ROOT" && RUSTFLAGS="-C relocation-model=static -C target-feature=+crt-static" \
        cargo build --release --quiet --target "$VEXFS_MUSL" --target-dir "$VEXFS_CACHE/bench-profile-target" \
        -p vexfs-image --example bench_search)
    cp "$VEXFS_CACHE/bench-profile-target/$VEXFS_MUSL/release/examples/bench_search" "$SHARE/"
    nm -n "$SHARE/bench_search" > "$SHARE/bench_search.syms"
else
    "$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim 8 --metric l2 --seed 1 --vectors 64 -N $((N + 1024)) \
        --journal-blocks 16384 "$WORK/vexfs.img" 1500M
fi
VEXFS_GUEST_LOG=$WORK/console.log "$VEXFS_ROOT/qemu/run-guest" --disk "$WORK/vexfs.img" \
    --share "$SHARE" --timeout 3000 "$VEXFS_ROOT/bench/profile-run.sh" "$PHASE" "$N" \
    > "$WORK/run-guest.out" 2>&1 || { tail -n 40 "$WORK/run-guest.out" >&2; die "profile: guest failed"; }
sed -n '/^PROFILE /,/^PROFILE-END/p' "$WORK/run-guest.out" | grep -v '^PROFILE-END'
