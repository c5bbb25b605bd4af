#!/usr/bin/env bash
# The embedding is also the xattr user.vexfs.embedding (raw little-endian float32 of chunk 0):
# get, set (create/replace), list and remove agree with the ioctls; bad sizes and short buffers
# get their errno. The C checker uses only include/vexfs.h and libc's xattr calls.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 32M --dim 16 --metric cosine)
script=$(guest_script xattr.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt
echo text > /mnt/file
must vexfs-xattr-check /mnt/file 16
mkdir /mnt/dir
expect_fail vexfs-xattr-check /mnt/dir 16
must umount /mnt
GUEST
)
run_guest --disk "$img" --timeout 120 "$script"
check_fsck "$img"
echo "050-xattr: PASS"
