#!/usr/bin/env bash
# A crash during journal replay is recovered by the next mount (issue 7, "Done when"). In the
# guest:
#   1. the crash workload of 070 (tests/guest/crash-guest.sh, CRASH_SMALL_FILES small files,
#      default 12), then workload_tail (operations acknowledged by fsync or SET only, so that
#      their blocks are committed but not yet home) run on vexfs under dm-log-writes, a mark
#      after each acknowledgement; the crashed image is the disk as it was at the last mark whose
#      journal still holds committed transactions (vexctl inspect --log: "to replay" >= 1; none
#      among the last 8 marks fails the test, which would otherwise prove nothing);
#   2. that image is mounted under a second dm-log-writes, which records every write of the
#      mount's journal replay, of the rest of the mount and of the unmount; the mount must have
#      replayed (dmesg), show exactly what was acknowledged at that mark, and its replay must have
#      rewritten at least 4 blocks that were not yet home (else the crash points below test a
#      replay with nothing to do);
#   3. at every flush/FUA point of that second log, and at torn states between them (up to
#      REPLAY_CRASH_TORN prefixes, default 8, of each stretch of unflushed writes: testkit's
#      replay_log iterate --torn), "crashed image + the recovery's writes up to the point" is
#      copied to a scratch disk and checked as 070 checks a crash point: fsck.vexfs -n, the mount
#      (which replays again), every file and embedding acknowledged at the mark present (each
#      embedding found by a search for its own vector at distance 0) and nothing else, then
#      fsck.vexfs -n after the unmount must exit 0.
# Figures: replay-crash points tried (torn ones, those taken during the replay of the crashed
# image's transactions, those with any transaction to replay), acknowledged files and embeddings
# lost, fsck and mount failures, kernel warnings. Fails if any failure figure is non-zero (fsck
# complaints about the journal included), if fewer than 5 points were tried, or if fewer than 2
# were taken during the replay of the crashed image's transactions.
# Takes 45 s with the defaults (2 cores, TCG; 80 s on a busy host). Needs the host's dmsetup.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/crash-lib.sh"

SMALL=${CRASH_SMALL_FILES:-12}
TORN=${REPLAY_CRASH_TORN:-8}
[[ $SMALL =~ ^[0-9]+$ ]] && [ "$SMALL" -le 200 ] || fail "CRASH_SMALL_FILES must be 0..200, not '$SMALL'"
[[ $TORN =~ ^[0-9]+$ ]] && [ "$TORN" -le 100 ] || fail "REPLAY_CRASH_TORN must be 0..100, not '$TORN'"
[ -x "$VEXFS_MUSL_BIN/replay_log" ] || fail "missing $VEXFS_MUSL_BIN/replay_log: run scripts/setup tools"

img=$(crash_image vexfs)
workload_log=$(mkraw 96M)
crashed=$(mkraw 16M)
recovery_log=$(mkraw 32M)
scratch=$(mkraw 16M)
share="$T/share"
crash_share "$share" vexfs "$SMALL"
crash_share_dmsetup "$share"

# The check run by replay_log at each point of the recovery's log, on the state copied to /dev/vde.
cat > "$share/check.sh" <<'CHECK'
. /lib/vexfs/guest-lib.sh
. /share/crash-guest.sh
kind=flush
[ "$REPLAY_TORN" = 1 ] && kind=torn
pending=$(to_replay /dev/vde)
echo "$REPLAY_ENTRY $kind ${pending:-?}" >> /tmp/pending
where="point $REPLAY_POINT/$REPLAY_POINTS (entry $REPLAY_ENTRY $REPLAY_FLAGS, $kind, ${pending:-?} transactions to replay)"
echo "$where"
CHECK_FSCK_AFTER=1 check_state /dev/vde "$REPLAY_ENTRY" "$where" "$ACK/$CRASH_MARK" "$ACK/$CRASH_MARK" /dev/null ""
CHECK

script=$(guest_script replay-crash.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/crash-guest.sh
TORN=$1

section "workload under dm-log-writes (vexfs on /dev/vda, log on /dev/vdb)"
must dd if=/dev/vda of=/tmp/base.img bs=1M 2> /dev/null
dm_create lw "0 $(cat /sys/block/vda/size) log-writes /dev/vda /dev/vdb"
must mount -t vexfs "$DM_DEV" /mnt
ack_done() { must $DM message lw 0 mark "$1"; }
WORKLOAD_LIVE=1
workload
echo "$WORKLOAD_OPS operations acknowledged (the workload of 070)"
workload_tail
echo "$WORKLOAD_OPS operations acknowledged (workload_tail: no syncfs)"
must umount /mnt
must $DM remove lw

section "the crashed image: the last acknowledgement with transactions to replay"
CRASH_MARK=""
for m in $(cut -d' ' -f1 $ACK/ops | sort -r | head -n 8); do
    must cp /tmp/base.img /tmp/crash.img
    must replay_log replay /dev/vdb /tmp/crash.img --mark "$m" > /dev/null
    n=$(to_replay /tmp/crash.img)
    echo "at mark $m ($(grep "^$m " $ACK/ops | cut -d' ' -f2-)): ${n:-?} transactions to replay"
    if [ -n "$n" ] && [ "$n" -ge 1 ]; then
        CRASH_MARK=$m
        break
    fi
done
[ -n "$CRASH_MARK" ] || fail "no state among the last 8 marks has a transaction to replay: the test would prove nothing"
CRASH_TXNS=$n
vexctl inspect --log /tmp/crash.img | sed -n '/^Journal:/,/^Torn tail:/p'
fsck.vexfs -n /tmp/crash.img > /tmp/fsck.out 2>&1 || fail "fsck.vexfs -n of the crashed image: $(cat /tmp/fsck.out)"

section "its recovery, recorded (the crashed image on /dev/vdc under dm-log-writes, log on /dev/vdd)"
must dd if=/tmp/crash.img of=/dev/vdc bs=1M conv=fsync 2> /dev/null
before=$(dmesg | grep -c 'journal replayed')
dm_create lw2 "0 $(cat /sys/block/vdc/size) log-writes /dev/vdc /dev/vdd"
must mount -t vexfs "$DM_DEV" /mnt
line=$(dmesg | grep 'journal replayed' | tail -n 1)
[ "$(dmesg | grep -c 'journal replayed')" -gt "$before" ] || fail "the mount of the crashed image replayed nothing"
echo "mount: ${line#*] }"
# A check of the check: the recovered filesystem is the model at the mark.
{ observe_tree /mnt; observe_embeddings /mnt || fail "vexctl search: $(cat /tmp/search.err)"; } | sort > /tmp/live
cmp -s /tmp/live "$ACK/$CRASH_MARK" || { diff "$ACK/$CRASH_MARK" /tmp/live; fail "the recovered filesystem differs from the model at $CRASH_MARK"; }
echo "the recovered filesystem is the model at $CRASH_MARK: $(grep -c '^P:' /tmp/live) paths, $(grep -c '^E:' /tmp/live) embeddings"
must umount /mnt
must $DM remove lw2
# What the replay had to do: the home blocks it changed (the crashed image against the state at
# the recovery's first flush). A replay that rewrites what is already home would prove little.
must cp /tmp/crash.img /tmp/home.img
must replay_log replay /dev/vdd /tmp/home.img --flush 1 > /dev/null
stale=$(cmp -l /tmp/crash.img /tmp/home.img | awk '{ b = int(($1 - 1) / 4096); if (!(b in seen)) { seen[b] = 1; n++ } } END { print n + 0 }')
echo "the replay rewrote $stale blocks that were not yet home"
[ "$stale" -ge 4 ] || fail "the replay rewrote only $stale blocks that were not yet home (at least 4 wanted)"

section "crashes during that recovery: every flush/FUA point of its log, and torn states"
replay_log list /dev/vdd --points || fail "replay_log list"
must cp /tmp/crash.img /tmp/replay.img
: > /tmp/results
: > /tmp/pending
export CRASH_MARK
start=$(cut -d' ' -f1 /proc/uptime)
replay_log iterate /dev/vdd /tmp/replay.img --torn "$TORN" --copy-to /dev/vde \
    --exec "/bin/sh /share/check.sh" --keep-going
rc=$?
[ $rc -le 1 ] || fail "replay_log iterate failed (status $rc)"
end=$(cut -d' ' -f1 /proc/uptime)
# A check of the replay: the whole log replayed is what the recording mount left on /dev/vdc.
must blockdev --flushbufs /dev/vdc
cmp -s /tmp/replay.img /dev/vdc || fail "the whole recovery log replayed differs from /dev/vdc: replay_log is wrong"
echo "the whole recovery log replayed equals /dev/vdc"

section "figures"
points=$(wc -l < /tmp/results)
torn=$(awk '$2 == "torn"' /tmp/pending | wc -l)
# Taken while the crashed image's own transactions were still to replay (not yet marked clean).
during=$(awk -v n="$CRASH_TXNS" '$3 ~ /^[0-9]+$/ && $3 >= n' /tmp/pending | wc -l)
pending=$(awk '$3 ~ /^[0-9]+$/ && $3 > 0' /tmp/pending | wc -l)
journal_only=$(awk '$2 == "journal"' /tmp/results | wc -l)
echo "crashed image: the state at $CRASH_MARK ($(grep "^$CRASH_MARK " $ACK/ops | cut -d' ' -f2-)), $CRASH_TXNS transactions to replay"
echo "replay-crash points: $points tried, $torn of them torn; $during during the replay of those $CRASH_TXNS transactions, $pending with any transaction to replay"
figures=0
print_figures "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%d", b - a }')" "replay-crash points tried" || figures=1
[ "$figures" = 0 ] || fail "a crash during the journal's replay was not recovered (figures above)"
[ "$points" -ge 5 ] || fail "only $points replay-crash points tried (at least 5 wanted)"
[ "$during" -ge 2 ] || fail "only $during points during the replay of the crashed image's journal (at least 2 wanted)"
[ "$journal_only" = 0 ] || fail "fsck.vexfs -n complained about the journal at $journal_only points"
GUEST
)

run_guest --disk "$img" --disk "$workload_log" --disk "$crashed" --disk "$recovery_log" --disk "$scratch" \
    --share "$share" --timeout 600 "$script" "$TORN"
echo "071-replay-crash: PASS"
