#!/usr/bin/env bash
# Smoke test of the guest: the kernel boots, vexfs.ko is loaded and registered, the tools run,
# arguments, disks (in order, writes reach the host), the shared folder and --mem work.
. "$(dirname "$0")/lib.sh"

# Two disks with a known signature each; the guest checks their order and writes to the second.
disk_a=$(mkraw 8M)
disk_b=$(mkraw 8M)
printf 'vexfs-disk-A-%s' "$SEED" | dd of="$disk_a" conv=notrunc status=none
printf 'vexfs-disk-B-%s' "$SEED" | dd of="$disk_b" conv=notrunc status=none

# A shared folder holding data made on the host: the guest must read the same bytes as its own
# gen_data makes (same generator on both sides).
mkdir "$T/share"
gen_data "$SEED" 300000 > "$T/share/data"

script=$(guest_script boot.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
seed=$1

section "arguments"
assert_eq "$#" 5 "argument count"
assert_eq "$2" "two words" "argument with a blank"
assert_eq "$3" "it's \"quoted\"" "argument with quotes"
assert_eq "$4" '$HOME `x` \n' "argument with shell syntax"
assert_eq "$5" "" "empty argument"

section "system"
assert_eq "$(pwd)" /tmp "working directory"
grep -q ' /tmp tmpfs ' /proc/mounts || fail "/tmp is not a tmpfs"
[ -c /dev/null ] || fail "no /dev/null"
[ -x /sbin/mount ] && [ -x /usr/bin/awk ] || fail "busybox applets missing in /sbin or /usr/bin"
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
# On the debug kernel (run-guest adds kasan_multi_shot) KASAN's shadow (1/8) and lockdep's tables
# come out of MemTotal too.
mem_lo=400000
! grep -qw kasan_multi_shot /proc/cmdline || mem_lo=300000
[ "$mem_kb" -gt "$mem_lo" ] && [ "$mem_kb" -le 524288 ] || fail "MemTotal $mem_kb kB with --mem 512"

section "vexfs module"
grep -qw vexfs /proc/filesystems || fail "vexfs is not in /proc/filesystems"
grep -q '^vexfs ' /proc/modules || fail "vexfs is not in /proc/modules"

section "tools"
for tool in mkfs.vexfs vexctl fsck.vexfs; do
    out=$("$tool" --help 2>&1) || fail "$tool --help failed: $out"
    [ -n "$out" ] || fail "$tool --help printed nothing"
    echo "$tool --help: ok"
done

section "disks"
assert_eq "$(head -c 40 /dev/vda | tr -d '\0')" "vexfs-disk-A-$seed" "signature of /dev/vda"
assert_eq "$(head -c 40 /dev/vdb | tr -d '\0')" "vexfs-disk-B-$seed" "signature of /dev/vdb"
[ ! -e /dev/vdc ] || fail "unexpected /dev/vdc"
assert_eq "$(cat /sys/block/vda/size)" 16384 "size of /dev/vda in sectors"
gen_data "$seed-vdb" 100000 | dd of=/dev/vdb bs=4096 seek=1 conv=fsync 2>/dev/null || fail "write /dev/vdb"

section "shared folder"
grep -q ' /share 9p ' /proc/mounts || fail "/share is not mounted"
check_data /share/data "$seed" 300000
expect_fail touch /share/new-file

echo "boot: all checks passed"
GUEST
)

run_guest --mem 512 --disk "$disk_a" --disk "$disk_b" --share "$T/share" --timeout 120 \
    "$script" "$SEED" "two words" "it's \"quoted\"" '$HOME `x` \n' ""

# The guest's write to /dev/vdb reached the image file.
cmp <(dd if="$disk_b" bs=4096 skip=1 count=25 status=none | head -c 100000) <(gen_data "$SEED-vdb" 100000) \
    || fail "data written by the guest to /dev/vdb is not in the image"
[ ! -e "$T/share/new-file" ] || fail "the guest wrote into the read-only share"
echo "001-boot: PASS"
