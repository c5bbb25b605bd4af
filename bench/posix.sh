#!/usr/bin/env bash
# The POSIX benchmark (issue 11, item 7): vexfs against ext4 (data=ordered, its default) in one
# QEMU guest boot, as ratios; prints a table and writes the section "POSIX: vexfs against ext4
# (issue 11)" of bench/REPORT.md.
#
#   bench/posix.sh [--rounds N] [--files N] [--mib N] [--par-mib N] [--dir N] [--dir-cap S]
#                  [--stat-cap S] [--rand N] [--timeout S] [--no-report]
#
#   --rounds N    rounds, each running every phase on both filesystems (default 2)
#   --files N     create + write 4 KiB + fsync of N small files (default 10000)
#   --mib N       the sequential file, MiB: written + fsync, read after dropping caches (256)
#   --par-mib N   each of the 4 files written at once by 4 processes, MiB (default 64)
#   --dir N       entries of each big directory, one made per round on each filesystem (default
#                 100000)
#   --dir-cap S   stop making the big directory after S seconds (default 3000): the row then says
#                 how many entries were made, and readdir and stat run over those
#   --stat-cap S  stop a round's stat of every entry after S seconds (default 150; the entries
#                 are stated in a random order, so the rate of a stopped run is the directory's)
#   --rand N      random 4 KiB reads of the sequential file, caches dropped first (default 20000)
#   --timeout S   guest wall-clock limit (default 5400)
#   --no-report   print the table only; leave bench/REPORT.md alone
#
# Host side: builds bench/guest-fsops.c (static) and measures the TSC's rate with it (the guest
# times every phase with the host's TSC: bench/guest-fsops.c says why), makes a vexfs image and an
# ext4 image of the same size, inode count and journal size (ext4 made by mkfs.ext4 as
# tests/guest/080-ext4-oracle.sh does, inode tables and journal written at mkfs), counts the
# other QEMU guests on the host before and after. Guest side: bench/posix-run.sh. Then
# fsck.vexfs -n and e2fsck -fn of the images, and bench/posix.py report. Needs scripts/setup to
# have run (kernel, module, tools). Work files and the console log: $VEXFS_CACHE/bench-posix.
# Takes about 5 minutes with the defaults (4.9 min on 2026-12-01; an hour while vexfs directories
# were linear, 48 min of it making the 100,000-entry directory).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

ROUNDS=2 FILES=10000 MIB=256 PAR_MIB=64 DIR_N=100000 DIR_CAP=3000 STAT_CAP=150 RAND_N=20000
TIMEOUT=5400 REPORT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --mib) MIB=$2; shift 2 ;;
        --par-mib) PAR_MIB=$2; shift 2 ;;
        --dir) DIR_N=$2; shift 2 ;;
        --dir-cap) DIR_CAP=$2; shift 2 ;;
        --stat-cap) STAT_CAP=$2; shift 2 ;;
        --rand) RAND_N=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        -h|--help) sed -n '2,30s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "bench/posix.sh: unknown argument $1 (see --help)" ;;
    esac
done
for v in "$ROUNDS" "$FILES" "$MIB" "$PAR_MIB" "$DIR_N" "$DIR_CAP" "$STAT_CAP" "$RAND_N" "$TIMEOUT"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "bench/posix.sh: not a positive count: $v"
done
[ "$RAND_N" -le $((MIB * 256)) ] || die "bench/posix.sh: --rand $RAND_N is more than the $((MIB * 256)) blocks of the file"
command -v mkfs.ext4 > /dev/null || die "mkfs.ext4 missing: scripts/setup deps installs e2fsprogs"
[ -x "$VEXFS_HOST_BIN/mkfs.vexfs" ] || die "no $VEXFS_HOST_BIN/mkfs.vexfs: run scripts/setup"

WORK=$VEXFS_CACHE/bench-posix
SHARE=$WORK/share
LOG=$WORK/console.log
rm -rf "$WORK"
mkdir -p "$SHARE"

log "posix bench: building guest-fsops (static), measuring the TSC"
cc -static -O2 -std=gnu11 -Wall -Wextra -Werror -I "$VEXFS_ROOT/include" \
    "$VEXFS_ROOT/bench/guest-fsops.c" -o "$SHARE/guest-fsops"
"$SHARE/guest-fsops" tsc-mhz > "$SHARE/tsc-mhz"

# Both images: the same size, inode count and journal size. Room for what one round holds at
# once (the sequential file, or the 4 parallel ones), the small files and the big directories
# (one per round, 512 bytes per entry allowed); inodes for those. vexfs gets a small vector region (64 slots of
# dimension 8): no embeddings here.
SIZE_MIB=$(( (MIB > 4 * PAR_MIB ? MIB : 4 * PAR_MIB) + FILES * 4 / 1024 + ROUNDS * DIR_N / 2048 + 1024 ))
INODES=$(( ROUNDS * DIR_N + FILES + 1024 ))
JOURNAL_MIB=64
VIMG=$WORK/vexfs.img
EIMG=$WORK/ext4.img
"$VEXFS_HOST_BIN/mkfs.vexfs" -q --dim 8 --metric l2 --seed 1 --vectors 64 -N "$INODES" \
    --journal-blocks $((JOURNAL_MIB * 256)) "$VIMG" "${SIZE_MIB}M"
truncate -s "${SIZE_MIB}M" "$EIMG"
mkfs.ext4 -q -F -b 4096 -I 256 -N "$INODES" -J size=$JOURNAL_MIB \
    -E lazy_itable_init=0,lazy_journal_init=0 "$EIMG"

qemu_before=$(pgrep -c qemu-system || true)
log "posix bench: booting the guest ($ROUNDS rounds; TCG; timeout ${TIMEOUT}s; other QEMU guests now: $qemu_before)"
start=$SECONDS
status=0
VEXFS_GUEST_LOG=$LOG "$VEXFS_ROOT/qemu/run-guest" --disk "$VIMG" --disk "$EIMG" --share "$SHARE" \
    --timeout "$TIMEOUT" "$VEXFS_ROOT/bench/posix-run.sh" "$ROUNDS" "$FILES" "$MIB" "$PAR_MIB" \
    "$DIR_N" "$DIR_CAP" "$STAT_CAP" "$RAND_N" > "$WORK/run-guest.out" 2>&1 || status=$?
secs=$((SECONDS - start))
qemu_after=$(pgrep -c qemu-system || true)
if [ $status -ne 0 ]; then
    tail -n 40 "$WORK/run-guest.out" >&2
    die "posix bench: guest failed (run-guest status $status) after ${secs}s; console log $LOG"
fi

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
    grep -a 'stopped at the' "$LOG" | tr -d '\r' | sed 's/.*/{"test": "note", "text": "&"}/' || true
    cat <<EOF
{"test": "run", "wall_secs": $secs, "rounds": $ROUNDS, "files": $FILES, "mib": $MIB, "par_mib": $PAR_MIB, "dir_n": $DIR_N, "dir_cap": $DIR_CAP, "stat_cap": $STAT_CAP, "rand_n": $RAND_N, "image_mib": $SIZE_MIB, "inodes": $INODES, "journal_mib": $JOURNAL_MIB, "commit": "$commit$dirty", "fsck_vexfs": $fsck_status, "e2fsck": $e2fsck_status, "host_qemu_other": [$((qemu_before)), $((qemu_after))]}
EOF
} > "$RES"
log "posix bench: guest done in ${secs}s; fsck.vexfs -n: $fsck_status, e2fsck -fn: $e2fsck_status"

REPORT_ARGS=()
[ $REPORT = 1 ] && REPORT_ARGS=(--report "$VEXFS_ROOT/bench/REPORT.md")
python3 "$VEXFS_ROOT/bench/posix.py" report "$RES" "${REPORT_ARGS[@]}"
[ "$fsck_status" -eq 0 ] || die "fsck.vexfs -n found problems after the run (status $fsck_status): $WORK/fsck.out"
[ "$e2fsck_status" -eq 0 ] || die "e2fsck -fn found problems after the run (status $e2fsck_status): $WORK/e2fsck.out"
