#!/usr/bin/env bash
# Where the kernel's time goes in one POSIX benchmark phase: boots the QEMU guest on a fresh
# vexfs image and runs the phase under bench/kprof.c (cpu-clock sampling of the kernel with call
# chains: the guest has no perf), then prints kprof's tables (self, self by caller, inclusive)
# after the phase's own "TIME SECONDS COUNT" line. For finding the costs behind a row of
# bench/posix.sh; the figures are sample counts (TCG), only their ratios mean anything.
#
#   bench/profile.sh PHASE [N]
#
#   dir N       create N empty files in one directory (default 30000), then, caches dropped,
#               readdir (untimed) and fstatat of every entry: two profiles
#   seq N       one file of N MiB written in 1 MiB writes, then fsync (default 256); then,
#               the file removed and synced, a second one: two profiles
#   par N       4 processes at once, each writing a file of N MiB (default 64)
#   ingest N    the first N rows (default 2000) of the repo's pydocs sample imported (vexctl
#               import: SETs through the vector write-ahead log), then the index worker linking
#               them (vexctl wait-indexed): two profiles
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
    -h|--help|"") sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "bench/profile.sh: unknown phase $PHASE (dir, seq, par, ingest)" ;;
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
else
    "$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim 8 --metric l2 --seed 1 --vectors 64 -N $((N + 1024)) \
        --journal-blocks 16384 "$WORK/vexfs.img" 1500M
fi
VEXFS_GUEST_LOG=$WORK/console.log "$VEXFS_ROOT/qemu/run-guest" --disk "$WORK/vexfs.img" \
    --share "$SHARE" --timeout 3000 "$VEXFS_ROOT/bench/profile-run.sh" "$PHASE" "$N" \
    > "$WORK/run-guest.out" 2>&1 || { tail -n 40 "$WORK/run-guest.out" >&2; die "profile: guest failed"; }
sed -n '/^PROFILE /,/^PROFILE-END/p' "$WORK/run-guest.out" | grep -v '^PROFILE-END'
