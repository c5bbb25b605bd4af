#!/usr/bin/env bash
# Mounting a corrupted superblock fails with its documented errno and a dmesg line naming the
# problem, never a crash or a kernel warning (run-guest fails on those): bad magic (EINVAL),
# bad checksum (EUCLEAN), unknown incompat feature (EINVAL), geometry past the device's end
# (EINVAL), zero block count (EUCLEAN), impossible region table (EUCLEAN), bad vector
# dimension (EUCLEAN). Two more fail inside fill_super, after the mount's Rust state exists
# (which must then be freed cleanly): a root inode with a bad checksum, and a root inode marked
# free in the inode bitmap (both EUCLEAN). A good image next to them mounts.
. "$(dirname "$0")/lib.sh"

PATCH="$VEXFS_ROOT/tests/tools/sb-patch"
good=$(mkimg 16M --dim 16 --metric cosine)
variant() { # NAME PATCH-ARGS...: a copy of the good image with its superblock patched
    cp "$good" "$T/$1.img"
    "$PATCH" "$T/$1.img" "${@:2}"
    echo "$T/$1.img"
}
# first_block IMAGE REGION...: the first block of a region, as vexctl inspect lists it.
first_block() {
    "$VEXCTL" inspect "$1" | awk -v r="${*:2}" '{ n = $1; for (i = 2; i <= NF - 4; i++) n = n " " $i } n == r { print $(NF - 3) }'
}
# flip IMAGE BYTE-OFFSET MASK: a copy's byte XORed with MASK (python3, as sb-patch).
flip() {
    python3 -c 'import sys
f = open(sys.argv[1], "r+b"); at = int(sys.argv[2]); f.seek(at); b = f.read(1)[0] ^ int(sys.argv[3], 0)
f.seek(at); f.write(bytes([b]))' "$1" "$2" "$3"
}
itable=$(first_block "$good" inode table)
ibitmap=$(first_block "$good" inode bitmap)
[ -n "$itable" ] && [ -n "$ibitmap" ] || die "no inode table or bitmap in vexctl inspect's layout"
cp "$good" "$T/rootcsum.img"
flip "$T/rootcsum.img" $((itable * 4096)) 0x01      # root inode (1): its first mode byte
cp "$good" "$T/rootfree.img"
flip "$T/rootfree.img" $((ibitmap * 4096)) 0x01     # inode bitmap bit 0: inode 1 free
disks=(
    "$(variant magic magic=0x12345678)"
    "$(variant csum label0=0x41 --keep-csum)"
    "$(variant incompat feature_incompat=0x80)"
    "$(variant pastend block_count=8192 backup_block=8191)"
    "$(variant zero block_count=0)"
    "$(variant regions backup_block=4000)"
    "$(variant dim vec_dim=0)"
    "$T/rootcsum.img"
    "$T/rootfree.img"
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
try /dev/vdh "Structure needs cleaning" "checksum mismatch"
try /dev/vdi "Structure needs cleaning" "corrupt reference to free inode (value 1)"
mount_vexfs /dev/vdj /mnt
echo ok > /mnt/ok
must umount /mnt
GUEST
)
run_guest "${args[@]}" --timeout 120 "$script"
check_fsck "$good"
echo "020-bad-superblock: PASS"
