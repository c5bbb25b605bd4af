#!/usr/bin/env bash
# Mounting a corrupted superblock fails with its documented errno and a dmesg line naming the
# problem, never a crash or a kernel warning (run-guest fails on those): bad magic (EINVAL),
# bad checksum (EUCLEAN), unknown incompat feature (EINVAL), geometry past the device's end
# (EINVAL), zero block count (EUCLEAN), impossible region table (EUCLEAN), bad vector
# dimension (EUCLEAN). A good image next to them mounts.
. "$(dirname "$0")/lib.sh"

PATCH="$VEXFS_ROOT/tests/tools/sb-patch"
good=$(mkimg 16M --dim 16 --metric cosine)
variant() { # NAME PATCH-ARGS...: a copy of the good image with its superblock patched
    cp "$good" "$T/$1.img"
    "$PATCH" "$T/$1.img" "${@:2}"
    echo "$T/$1.img"
}
disks=(
    "$(variant magic magic=0x12345678)"
    "$(variant csum label0=0x41 --keep-csum)"
    "$(variant incompat feature_incompat=0x80)"
    "$(variant pastend block_count=8192 backup_block=8191)"
    "$(variant zero block_count=0)"
    "$(variant regions backup_block=4000)"
    "$(variant dim vec_dim=0)"
    "$good"
)
args=()
for d in "${disks[@]}"; do args+=(--disk "$d"); done

script=$(guest_script badsb.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mkdir -p /mnt
# try DEV ERRNO-TEXT DMESG-TEXT: mount must fail with that error and log that line.
try() {
    dmesg -c > /dev/null
    if out=$(mount -t vexfs "$1" /mnt 2>&1); then
        umount /mnt
        fail "$1 mounted"
    fi
    echo "$1: $out"
    case "$out" in *"$2"*) ;; *) fail "$1: expected '$2', got '$out'" ;; esac
    dmesg | grep "vexfs ($(basename "$1")): .*$3" || fail "$1: no dmesg line with '$3'"
}
try /dev/vda "Invalid argument" "bad magic 0x12345678"
try /dev/vdb "Structure needs cleaning" "checksum mismatch"
try /dev/vdc "Invalid argument" "unsupported incompat features 0x80"
try /dev/vdd "Invalid argument" "8192 blocks but the device only 4096"
try /dev/vde "Structure needs cleaning" "corrupt block_count (value 0)"
try /dev/vdf "Structure needs cleaning" "corrupt backup_block"
try /dev/vdg "Structure needs cleaning" "corrupt vec_dim (value 0)"
mount_vexfs /dev/vdh /mnt
echo ok > /mnt/ok
must umount /mnt
GUEST
)
run_guest "${args[@]}" --timeout 120 "$script"
check_fsck "$good"
echo "020-bad-superblock: PASS"
