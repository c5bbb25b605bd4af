#!/usr/bin/env bash
# The journal's state and contract (docs/DURABILITY.md), in the kernel: while mounted read-write
# the superblock has the RECOVER feature (incompat bit 0) and the journal is not clean; after
# umount both are clean again; `mount -o remount,ro` and back are refused; mkfs refuses a journal
# too small for the filesystem's largest transaction step; a synchronous SET (--index-now) too
# large for one transaction of a small journal is refused with ENOSPC, the same SET through the
# vector write-ahead log fits, and the filesystem stays usable; after a
# power cut (QEMU killed with the filesystem mounted) the next mount replays the journal, frees
# the orphan (an unlinked file kept open), and shows every synced change; fsck.vexfs finds it clean.
. "$(dirname "$0")/lib.sh"

# The default vector capacity of 32 MiB needs a larger journal than 64 blocks: refused.
small=$(mkraw 32M)
if out=$("$MKFS" --dim 16 --metric l2 --journal-blocks 64 "$small" 2>&1); then
    fail "mkfs accepted a journal below the floor: $out"
fi
echo "$out" | grep -q "is too small" || fail "mkfs's refusal does not say why: $out"
# 64 slots: the largest step is a removal of 24 blocks (core::embed::min_journal_blocks 43).
img=$(mkimg 32M --dim 16 --metric l2 --vectors 64 --journal-blocks 64)
# Three vectors of dimension 16, as .fvecs (a little-endian dimension, then the floats).
mkdir "$T/share"
python3 - "$T/share/v.fvecs" <<'PY'
import struct, sys
with open(sys.argv[1], "wb") as f:
    for r in range(3):
        f.write(struct.pack("<i", 16) + struct.pack("<16f", *[(r * 16 + i) / 7.0 for i in range(16)]))
PY
script=$(guest_script journal.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
incompat() { vexctl inspect --json "$1" | tr ',' '\n' | grep '"feature_incompat"' | tr -dc '0-9'; }
# The RECOVER bit (bit 0) of the incompat features (DIR_INDEX, bit 1, may be set too).
recover() { echo $(( $(incompat "$1") & 1 )); }
jstate() { vexctl inspect --json "$1" | tr ',{}' '\n\n\n' | grep -m1 '"state":' | cut -d'"' -f4; }

section "RECOVER while mounted"
assert_eq "$(recover /dev/vda)" 0 "RECOVER before mount"
mount_vexfs /dev/vda /mnt
assert_eq "$(recover /dev/vda)" 1 "RECOVER while mounted read-write"
expect_fail mount -o remount,ro /mnt
echo hello > /mnt/a || fail "write after a refused remount"

section "a SET larger than a transaction may take"
# 64 journal blocks: three quarters of the log are 45 blocks, less than the log records of one
# synchronously linked chunk's bound (dim 16, m 16: its 4m neighbours' records), more than a
# pending one's.
echo doc > /mnt/doc
if out=$(vexctl set --index-now /mnt/doc --fvecs /share/v.fvecs --row 0 2>&1); then
    fail "SET past the journal's share succeeded: $out"
fi
echo "$out" | grep -q "No space left on device" || fail "SET past the journal's share: $out"
dmesg | grep -q "more than one transaction may take" || fail "no log line for the refused SET"
echo still > /mnt/b || fail "write after a refused SET"
must vexctl set /mnt/doc --fvecs /share/v.fvecs --row 0
vexctl search /mnt --fvecs /share/v.fvecs --row 0 -k 1 | grep -q doc || fail "the pending SET is not found"
must vexctl wait-indexed -q /mnt --timeout 60
must umount /mnt
assert_eq "$(recover /dev/vda)" 0 "RECOVER cleared by umount"
GUEST
)
run_guest --disk "$img" --share "$T/share" --timeout 180 "$script"
check_fsck "$img"

# A power cut: boot 1 writes, sets embeddings, renames, unlinks a file it keeps open (an
# orphan), syncs, then sleeps until QEMU is killed (run-guest's timeout: exit 124), with the
# filesystem still mounted. Boot 2 must replay the journal, free the orphan, and show every
# synced change; fsck.vexfs must find the image clean after it.
img2=$(mkimg 64M --dim 16 --metric l2)
boot1=$(guest_script power-cut.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt
mkdir /mnt/d
i=0
while [ $i -lt 20 ]; do
    echo "file $i" > /mnt/d/f$i
    i=$((i + 1))
done
must vexctl set /mnt/d/f3 --fvecs /share/v.fvecs --rows 0..2
mv /mnt/d/f4 /mnt/d/g4
exec 3< /mnt/d/f5
rm /mnt/d/f5
sync
echo "POWER-CUT-READY"
sleep 1000
GUEST
)
rc=0
run_guest --disk "$img2" --share "$T/share" --timeout 90 "$boot1" > "$T/boot1.out" 2>&1 || rc=$?
grep -q POWER-CUT-READY "$T/boot1.out" || { tail -20 "$T/boot1.out"; fail "boot 1 did not reach the power cut"; }
[ "$rc" = "$GUEST_TIMEOUT" ] || fail "boot 1 should have been killed (exit $GUEST_TIMEOUT), got $rc"
[ $(( $("$VEXCTL" inspect --json "$img2" | tr ',' '\n' | grep '"feature_incompat"' | tr -dc '0-9') & 1 )) = 1 ] \
    || fail "after a power cut the superblock should still ask for recovery"
# fsck reads the crashed image as recovery would, and finds the orphan a note, not a problem.
"$FSCK" -n "$img2" > "$T/fsck1.out" 2>&1 || { cat "$T/fsck1.out"; fail "fsck.vexfs -n of the crashed image"; }
grep -q "orphan (no link)" "$T/fsck1.out" || { cat "$T/fsck1.out"; fail "fsck did not note the orphan"; }
boot2=$(guest_script replay.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt
dmesg | grep -q "journal replayed" || fail "no journal replay at mount"
dmesg | grep -q "1 unlinked inode(s) freed after the crash" || fail "the orphan was not freed"
i=0
while [ $i -lt 20 ]; do
    case $i in
        4) f=/mnt/d/g4 ;;
        5) i=$((i + 1)); continue ;;
        *) f=/mnt/d/f$i ;;
    esac
    assert_eq "$(cat $f)" "file $i" "$f after replay"
    i=$((i + 1))
done
[ ! -e /mnt/d/f4 ] || fail "the renamed file has two names"
[ ! -e /mnt/d/f5 ] || fail "the unlinked file is back"
vexctl get /mnt/d/f3 | head -n 1 | grep -q ": 2 chunks of dimension 16" || fail "the returned SET is lost"
must umount /mnt
GUEST
)
run_guest --disk "$img2" --share "$T/share" --timeout 180 "$boot2"
check_fsck "$img2"
echo "075-journal-state: PASS"
