#!/usr/bin/env bash
# Crash points of a mixed workload, replayed one by one (issue 7, item 6): in the guest,
# dm-log-writes records every write that reaches the vexfs disk while a workload runs (files
# created, overwritten, appended and truncated, renames within and across directories and over a
# target, hard links, unlinks, mkdir/rmdir/rename of directories, embeddings set on one chunk and
# on several, replaced and removed). Right after each acknowledgement returns (fsync, fdatasync,
# fsync of a directory, syncfs, or `vexctl set` itself) the workload places a mark in the log and
# records what is acknowledged: a model of the tree (the same operations applied to a tmpfs copy)
# and of the embeddings. After unmount, testkit's replay_log walks the log: at every FLUSH/FUA
# entry and every mark (or CRASH_POINTS of them, spread evenly; CRASH_POINTS=all for every one)
# it copies the replayed disk to a scratch disk, where:
#   - fsck.vexfs -n must find it clean (complaints about the journal alone are counted apart and
#     tolerated, until fsck replays the journal);
#   - it must mount;
#   - every file and directory acknowledged at the last mark must be there with its content,
#     every acknowledged embedding found by a search for its own vector at distance 0, and
#     nothing else visible;
#   - the one operation in flight (between the last mark and the next) must show wholly or not at
#     all (a rename under exactly one name, a SET of several chunks all or none); only file
#     contents being written may be anything meanwhile.
# It ends with the figures: crash points replayed, acknowledged files and embeddings lost,
# half-done or stray states, fsck failures, mount failures, kernel warnings; any non-zero one
# fails the test (a kernel warning fails the run itself: qemu/run-guest exit 125).
# Knobs: CRASH_POINTS (default 100, or "all"), CRASH_SMALL_FILES (default 24; more makes a longer
# log), CRASH_QUANT (none, or pq: PQ codes in node records, as 072-crash-replay-pq.sh runs). The seed picks the mkfs seed. A check of the check: CRASH_FS=ext4 runs the same workload
# and checks on ext4 (data=ordered; no embeddings, no fsck), which must pass. Takes about 1.5 min
# with the defaults (2 cores, TCG; the replay of 100 points 35-80 s of it).
# The workload, its model and the check are tests/guest/crash-guest.sh (shared with
# scripts/power-cut). Needs the host's dmsetup (Debian package dmsetup): it runs in the guest
# through its own ld-linux with the libraries ldd lists (../shared/KERNEL-NOTES.md, last section).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/crash-lib.sh"

POINTS=${CRASH_POINTS:-100}
FS=${CRASH_FS:-vexfs}
SMALL=${CRASH_SMALL_FILES:-24}
[[ $FS == vexfs || $FS == ext4 ]] || fail "CRASH_FS must be vexfs or ext4, not '$FS'"
[[ $POINTS == all || $POINTS =~ ^[1-9][0-9]*$ ]] || fail "CRASH_POINTS must be a count or 'all', not '$POINTS'"
[[ $SMALL =~ ^[0-9]+$ ]] && [ "$SMALL" -le 1000 ] || fail "CRASH_SMALL_FILES must be 0..1000, not '$SMALL'"
DMSETUP=$(command -v dmsetup || true)
[ -n "$DMSETUP" ] || fail "no dmsetup on the host: install the Debian package dmsetup"
[ -x "$VEXFS_MUSL_BIN/replay_log" ] || fail "missing $VEXFS_MUSL_BIN/replay_log: run scripts/setup tools"

img=$(crash_image "$FS")
log_disk=$(mkraw 96M)
scratch=$(mkraw 16M)
share="$T/share"
crash_share "$share" "$FS" "$SMALL"
# dmsetup and what it links, beside the dynamic loader that starts it.
mkdir -p "$share/dm"
cp -L "$DMSETUP" "$share/dm/dmsetup"
ldd "$DMSETUP" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
    cp -L "$lib" "$share/dm/$(basename "$lib")"
done
[ -f "$share/dm/ld-linux-x86-64.so.2" ] || fail "ldd $DMSETUP lists no ld-linux-x86-64.so.2"

# The check run by replay_log at each crash point, on the state it copied to /dev/vdc.
cat > "$share/check.sh" <<'CHECK'
. /lib/vexfs/guest-lib.sh
. /share/crash-guest.sh
sm=$ACK/${REPLAY_MARK:-init}
[ -f "$sm" ] || { echo "check: no state for mark '$REPLAY_MARK'"; exit 2; }
sn=$sm
data=/dev/null
if [ -n "$REPLAY_NEXT_MARK" ] && [ -f "$ACK/$REPLAY_NEXT_MARK" ]; then
    sn=$ACK/$REPLAY_NEXT_MARK
    data=$ACK/$REPLAY_NEXT_MARK.data
fi
op=$(grep "^$REPLAY_NEXT_MARK " $ACK/ops 2> /dev/null | cut -d' ' -f2-)
where="point $REPLAY_POINT/$REPLAY_POINTS (entry $REPLAY_ENTRY $REPLAY_FLAGS, after ${REPLAY_MARK:-the start})"
check_state /dev/vdc "$REPLAY_ENTRY" "$where" "$sm" "$sn" "$data" "$op"
CHECK

script=$(guest_script crash.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/crash-guest.sh
POINTS=$1
DM="/share/dm/ld-linux-x86-64.so.2 --library-path /share/dm /share/dm/dmsetup"

section "dm-log-writes over /dev/vda (log on /dev/vdb)"
# The replay starts from the disk as it is now.
must dd if=/dev/vda of=/tmp/replay.img bs=1M 2> /dev/null
sectors=$(cat /sys/block/vda/size)
must $DM create lw --table "0 $sectors log-writes /dev/vda /dev/vdb"
lw=""
for d in /sys/block/dm-*; do
    [ "$(cat "$d/dm/name")" = lw ] && lw=/dev/${d##*/}
done
[ -n "$lw" ] || fail "no dm device named lw in /sys/block"
if [ ! -b "$lw" ]; then
    majmin=$(cat "/sys/block/${lw##*/}/dev")
    must mknod "$lw" b "${majmin%%:*}" "${majmin##*:}"
fi
must mount -t "$FS" "$lw" /mnt

section "workload ($FS)"
# Each acknowledgement is a mark in the log, named after the operation.
ack_done() { must $DM message lw 0 mark "$1"; }
WORKLOAD_LIVE=1
workload
echo "$WORKLOAD_OPS operations acknowledged"
# What the mounted filesystem shows now must be the model (a check of the check).
{ observe_tree /mnt; observe_embeddings /mnt || fail "vexctl search: $(cat /tmp/search.err)"; } | sort > /tmp/live
cmp -s /tmp/live $ACK/$WORKLOAD_LAST || { diff $ACK/$WORKLOAD_LAST /tmp/live; fail "the live filesystem differs from the model"; }
must umount /mnt
# The target logs "dm-log-writes-end" when removed: the state of the last acknowledgement.
cp $ACK/$WORKLOAD_LAST $ACK/dm-log-writes-end
: > $ACK/dm-log-writes-end.data
status=$($DM status lw) || fail "dmsetup status lw"
echo "log-writes status: $status"
case $status in *logging_disabled*) fail "dm-log-writes stopped logging (log device full?)" ;; esac
must $DM remove lw

section "replay the crash points"
replay_log list /dev/vdb --points > /tmp/list || fail "replay_log list"
head -n 1 /tmp/list
: > /tmp/results
start=$(cut -d' ' -f1 /proc/uptime)
replay_log iterate /dev/vdb /tmp/replay.img --marks --points "$POINTS" --copy-to /dev/vdc \
    --exec "/bin/sh /share/check.sh" --keep-going
rc=$?
[ $rc -le 1 ] || fail "replay_log iterate failed (status $rc)"
end=$(cut -d' ' -f1 /proc/uptime)
# A check of the replay itself: the last point is the whole log, so the replayed image must be
# what the workload left on /dev/vda (read past its page cache, filled by the first copy).
must blockdev --flushbufs /dev/vda
cmp -s /tmp/replay.img /dev/vda || fail "the whole log replayed differs from /dev/vda: replay_log is wrong"
echo "the whole log replayed equals /dev/vda"

section "figures"
print_figures "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%d", b - a }')" "crash points replayed"
GUEST
)

# About 55 s with the defaults (100 points); a longer run (CRASH_POINTS=all, more files) gets more.
timeout=600
[ "$POINTS" != all ] && [ "$POINTS" -le 200 ] && [ "$SMALL" -le 24 ] || timeout=5000
run_guest --disk "$img" --disk "$log_disk" --disk "$scratch" --share "$share" --timeout "$timeout" \
    "$script" "$POINTS"
echo "070-crash-replay${CRASH_QUANT:+ (CRASH_QUANT=$CRASH_QUANT)}: PASS"
