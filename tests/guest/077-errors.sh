#!/usr/bin/env bash
# Corruption found while mounted, the errors= mount option and the superblock's errors bit
# (docs/DURABILITY.md, kmod/errors.rs). A directory block's checksum is overwritten on the host
# (not an inode: a read-write mount reads every inode in use, looking for orphans); then:
# - options: an unknown option and a bad errors= value are refused (EINVAL, logged); errors= is
#   shown in /proc/mounts when not the default and a remount changes it;
# - errors=remount-ro (the default): reading a file of the directory fails with EUCLEAN and a log
#   line naming the
#   device; the mount becomes read-only (a new file and a write to a file opened before both
#   fail); within a commit interval the errors bit is on disk while still mounted; then a power
#   cut (QEMU killed): the bit survives, and the next mount's replay keeps it;
# - errors=continue: EUCLEAN again, the mount stays writable; the corruption lines are
#   rate-limited (100 failing reads log at most 10 lines per 5 s window, then the count of those
#   left out); a remount to errors=remount-ro and
#   the error again make it read-only, and its umount is clean with the bit set;
# - fsck.vexfs -n reports the bit; -y keeps it while the block is still corrupt and clears it
#   once the block is made good again;
# - errors=panic: the machine panics with vexfs's message, and the bit was written first.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 32M --dim 16 --metric l2)
# The state line, read by the host's vexctl.
state() { "$VEXCTL" inspect "$1" | sed -n 's/^State: *//p'; }
incompat() { "$VEXCTL" inspect --json "$1" | tr ',' '\n' | grep '"feature_incompat"' | tr -dc '0-9'; }

setup=$(guest_script setup.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mkdir -p /mnt
section "mount options"
if mount -t vexfs -o bogus /dev/vda /mnt 2>/dev/null; then fail "an unknown option was accepted"; fi
dmesg | grep -q "vexfs: unknown mount option 'bogus'" || fail "no log line for the unknown option"
if mount -t vexfs -o errors=sometimes /dev/vda /mnt 2>/dev/null; then fail "errors=sometimes was accepted"; fi
dmesg | grep -q "vexfs: Bad value for 'errors'" || fail "no log line for the bad errors= value"
mount_vexfs /dev/vda /mnt
grep " /mnt vexfs " /proc/mounts | grep -q "errors=" && fail "the default errors= is shown: $(grep /mnt /proc/mounts)"
must mount -o remount,errors=continue /mnt
grep " /mnt vexfs " /proc/mounts | grep -q ",errors=continue" || fail "remount to errors=continue: $(grep /mnt /proc/mounts)"
must mount -o remount,errors=remount-ro /mnt
grep " /mnt vexfs " /proc/mounts | grep -q "errors=" && fail "remount back to the default: $(grep /mnt /proc/mounts)"
must mkdir /mnt/d
echo victim > /mnt/d/victim || fail "write victim"
echo keep > /mnt/keep || fail "write keep"
echo "DIR_INO=$(stat -c %i /mnt/d)"
must umount /mnt
GUEST
)
run_guest --disk "$img" --timeout 180 "$setup" > "$T/setup.out" 2>&1 || { cat "$T/setup.out"; fail "setup boot"; }
ino=$(sed -n 's/^DIR_INO=\([0-9]*\).*/\1/p' "$T/setup.out" | head -n 1)
[ -n "$ino" ] || { cat "$T/setup.out"; fail "no inode number from the setup boot"; }
check_fsck "$img"
# The directory's block: the one block of the image with the directory magic "VDIR" and owner
# $ino (docs/FORMAT.md: magic at 0, checksum at 4, owner at 16). Its checksum is saved and
# overwritten.
blk=$(python3 - "$img" "$ino" <<'PY'
import struct, sys
found = []
with open(sys.argv[1], "rb") as f:
    n = 0
    while True:
        b = f.read(4096)
        if len(b) < 4096:
            break
        if b[:4] == b"VDIR" and struct.unpack_from("<Q", b, 16)[0] == int(sys.argv[2]):
            found.append(n)
        n += 1
print(" ".join(map(str, found)))
PY
)
case "$blk" in ''|*' '*) fail "expected one block of directory $ino, found '$blk'" ;; esac
off=$(( blk * 4096 + 4 ))
dd if="$img" of="$T/csum" bs=1 skip="$off" count=4 status=none
printf '\336\255\276\357' | dd of="$img" bs=1 seek="$off" conv=notrunc status=none
cmp -s "$T/csum" <(printf '\336\255\276\357') && fail "the checksum already had the bytes written over it"
echo "directory $ino: block $blk corrupted at byte $off"

# errors=remount-ro (the default), then a power cut while mounted.
ro=$(guest_script remount-ro.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt
exec 3>> /mnt/keep
if out=$(cat /mnt/d/victim 2>&1); then fail "reading a file of the corrupt directory succeeded: $out"; fi
echo "$out" | grep -q "Structure needs cleaning" || fail "reading a file of the corrupt directory: $out (expected EUCLEAN)"
dmesg | grep -q "vexfs (vda): directory block: checksum mismatch" || { dmesg | tail; fail "no log line naming the device and what was found"; }
dmesg | grep -q "vexfs (vda): errors=remount-ro: the filesystem is now read-only" || fail "no log line for the remount"
grep " /mnt vexfs " /proc/mounts | grep -q " ro," || fail "not read-only after the error: $(grep /mnt /proc/mounts)"
if out=$(echo new 2>&1 > /mnt/new); then fail "a new file after remount-ro"; fi
if echo more >&3 2>/dev/null; then fail "a write through a file opened before the error succeeded"; fi
assert_eq "$(cat /mnt/keep)" "keep" "a good file after remount-ro"
expect_fail mount -o remount,rw /mnt
# The commit ticker writes the bit within its interval (5 s).
sleep 7
vexctl inspect /dev/vda | grep "^State:" | grep -q "errors" || fail "errors bit not written while mounted: $(vexctl inspect /dev/vda | grep State)"
echo "POWER-CUT-READY"
sleep 1000
GUEST
)
rc=0
run_guest --disk "$img" --timeout 60 "$ro" > "$T/ro.out" 2>&1 || rc=$?
grep -q POWER-CUT-READY "$T/ro.out" || { tail -40 "$T/ro.out"; fail "the remount-ro boot did not reach the power cut"; }
[ "$rc" = "$GUEST_TIMEOUT" ] || fail "the remount-ro boot should have been killed (exit $GUEST_TIMEOUT), got $rc"
state "$img" | grep -q errors || fail "errors bit lost by the power cut: state $(state "$img")"
[ $(( $(incompat "$img") & 1 )) = 1 ] || fail "RECOVER not set after the power cut"

# errors=continue: the replay keeps the bit, the mount stays writable.
cont=$(guest_script continue.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt errors=continue
dmesg | grep -q "mounting a filesystem with errors" || fail "the bit was not seen at mount"
grep " /mnt vexfs " /proc/mounts | grep -q ",errors=continue" || fail "errors=continue not shown: $(grep /mnt /proc/mounts)"
if out=$(cat /mnt/d/victim 2>&1); then fail "reading a file of the corrupt directory succeeded: $out"; fi
echo "$out" | grep -q "Structure needs cleaning" || fail "reading a file of the corrupt directory: $out (expected EUCLEAN)"
dmesg | grep -q "the filesystem is now read-only" && fail "errors=continue made the filesystem read-only"
# The corruption lines are rate-limited per mount (kmod/errors.rs: 10 per 5 s): 100 reads that
# each meet the corrupt block log at most 10 per window begun, and the next line after a quiet
# window says how many were left out.
dmesg -c > /dev/null
t0=$(cut -d. -f1 /proc/uptime)
i=0
while [ $i -lt 100 ]; do cat /mnt/d/victim > /dev/null 2>&1 && fail "read $i of the corrupt directory succeeded"; i=$((i + 1)); done
t1=$(cut -d. -f1 /proc/uptime)
n=$(dmesg | grep -c 'vexfs (vda)')
allowed=$((10 * ((t1 - t0) / 5 + 2)))
echo "100 reads in $((t1 - t0)) s logged $n lines (at most $allowed allowed)"
[ "$n" -ge 1 ] || fail "100 reads of the corrupt directory logged nothing"
[ "$n" -le "$allowed" ] || fail "100 reads of the corrupt directory logged $n lines in $((t1 - t0)) s: not rate-limited"
sleep 6
cat /mnt/d/victim > /dev/null 2>&1
dmesg | grep -q 'corruption message(s) suppressed' || fail "no count of the suppressed lines: $(dmesg | tail -n 3)"
grep " /mnt vexfs " /proc/mounts | grep -q " rw," || fail "not read-write: $(grep /mnt /proc/mounts)"
echo after > /mnt/after || fail "write after an error with errors=continue"
sync
assert_eq "$(cat /mnt/after)" "after" "file written after the error"
must mount -o remount,errors=remount-ro /mnt
expect_fail cat /mnt/d/victim
grep " /mnt vexfs " /proc/mounts | grep -q " ro," || fail "not read-only after the error: $(grep /mnt /proc/mounts)"
must umount /mnt
vexctl inspect /dev/vda | grep "^State:" | grep -q "errors" || fail "errors bit not kept by the umount"
GUEST
)
run_guest --disk "$img" --timeout 180 "$cont"
state "$img" | grep -q "errors" || fail "errors bit after umount: state $(state "$img")"
state "$img" | grep -q "^clean" || fail "not clean after umount: state $(state "$img")"
[ $(( $(incompat "$img") & 1 )) = 0 ] || fail "RECOVER set after umount"

# fsck: -n reports the bit; -y keeps it while the block is corrupt, clears it once it is good.
rc=0
"$FSCK" -n "$img" > "$T/fsck1.out" 2>&1 || rc=$?
[ "$rc" = 4 ] || { cat "$T/fsck1.out"; fail "fsck -n: status $rc, expected 4"; }
grep -q "marked as having errors" "$T/fsck1.out" || { cat "$T/fsck1.out"; fail "fsck -n does not report the bit"; }
rc=0
"$FSCK" -y "$img" > "$T/fsck2.out" 2>&1 || rc=$?
[ "$rc" = 4 ] || { cat "$T/fsck2.out"; fail "fsck -y with the block corrupt: status $rc, expected 4"; }
state "$img" | grep -q errors || fail "fsck -y cleared the bit with the block still corrupt"
dd if="$T/csum" of="$img" bs=1 seek="$off" conv=notrunc status=none
rc=0
"$FSCK" -y "$img" > "$T/fsck3.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$T/fsck3.out"; fail "fsck -y with only the bit: status $rc, expected 1"; }
state "$img" | grep -q errors && fail "fsck -y left the bit: state $(state "$img")"
check_fsck "$img"

# errors=panic: the bit is written, then the machine stops (the harness sees the panic: 125).
printf '\336\255\276\357' | dd of="$img" bs=1 seek="$off" conv=notrunc status=none
panic=$(guest_script panic.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt errors=panic
cat /mnt/d/victim
echo "STILL-RUNNING"
GUEST
)
rc=0
run_guest --disk "$img" --timeout 120 "$panic" > "$T/panic.out" 2>&1 || rc=$?
[ "$rc" = "$GUEST_KERNEL_ERROR" ] || { tail -30 "$T/panic.out"; fail "errors=panic: run-guest status $rc, expected $GUEST_KERNEL_ERROR"; }
grep -q "vexfs (vda): panic forced after an error (errors=panic)" "$T"/guest-*.log "$T/panic.out" \
    || { tail -30 "$T/panic.out"; fail "no panic message from vexfs"; }
grep -q STILL-RUNNING "$T/panic.out" && fail "the guest ran on after errors=panic"
state "$img" | grep -q errors || fail "errors=panic did not write the bit: state $(state "$img")"
echo "077-errors: PASS"
