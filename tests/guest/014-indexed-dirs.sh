#!/usr/bin/env bash
# Indexed directories (issue 11 item 2, FEATURE_INCOMPAT_DIR_INDEX: docs/FORMAT.md "Indexed
# directories"; core/src/dir_index.rs): on a filesystem made with mkfs.vexfs --dir-index,
# 1. 30,000 files created in one directory (it becomes indexed when its first block fills;
#    its buckets split as it grows; names of 8 to 200 bytes): readdir lists each exactly once,
#    stat finds every 97th, absent names are ENOENT; again after a remount.
# 2. telldir/seekdir across changes: the directory read 40 entries at a time, reopened and
#    seekdir'ed to the last telldir after each batch while 25 files are created and 25 removed
#    (splits under the reader): every one of the 30,000 seen exactly once.
# 3. Every other file unlinked, the listing right; renames into and out of the directory and a
#    hard link out of it; the rest unlinked, rmdir refused while one remains, then done.
# 4. A subdirectory of 3,000 entries (indexed too) moved into the big one and back.
# Then fsck.vexfs -n on the host: clean (headers, buckets, every entry in its bucket).
. "$(dirname "$0")/lib.sh"

img=$(mkimg 256M --dim 8 --metric l2 --dir-index --inodes 65536)
script=$(guest_script dirs.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
remount() {
    must umount /mnt
    echo 3 > /proc/sys/vm/drop_caches
    mount_vexfs /dev/vda /mnt
}
ok() { out=$("$@") || fail "$*: $out"; echo "$out"; }
mount_vexfs /dev/vda /mnt
must mkdir /mnt/big /mnt/small

section "30,000 files in one directory"
ok dirops create /mnt/big 0 30000
ok dirops check /mnt/big 0 30000
echo "directory size $(stat -c %s /mnt/big) bytes, $(stat -c %b /mnt/big) sectors"
remount
ok dirops check /mnt/big 0 30000

section "telldir/seekdir while the directory changes"
ok dirops churn /mnt/big 0 30000
rm -f /mnt/big/churn-* || fail "removing the churn files"
ok dirops check /mnt/big 0 30000

section "unlinks, renames"
ok dirops unlink /mnt/big 0 30000 2
must mv "/mnt/big/f0000001-$(printf 'n%.0s' $(seq 1 37))" /mnt/small/moved
must mv /mnt/small/moved /mnt/big/moved-back
must ln /mnt/big/moved-back /mnt/small/hard
[ "$(stat -c %h /mnt/small/hard)" = 2 ] || fail "link count of a hard link into an indexed directory"
n=$(ls -a /mnt/big | wc -l)
assert_eq "$n" "$((15000 - 1 + 1 + 2))" "entries after unlinking every other file (with . and ..)"
remount
n=$(ls -a /mnt/big | wc -l)
assert_eq "$n" "$((15000 + 2))" "entries after a remount"

section "a directory of 3,000 moved in and out"
ok dirops create /mnt/small 100000 103000
must mv /mnt/small /mnt/big/sub
assert_eq "$(ls -a /mnt/big/sub | wc -l)" 3003 "entries of the moved directory (3,000, the hard link, . and ..)"
must mv /mnt/big/sub /mnt/small
[ -e /mnt/small/hard ] || fail "the hard link did not move with its directory"

section "emptied, removed"
ok dirops unlink /mnt/big 3 30000 2
rmdir /mnt/big 2> /dev/null && fail "rmdir of an indexed directory holding one file succeeded"
must rm /mnt/big/moved-back
assert_eq "$(ls -a /mnt/big | wc -l)" 2 "entries of the emptied directory"
must rmdir /mnt/big
[ ! -e /mnt/big ] || fail "/mnt/big still there"
must umount /mnt
GUEST
)
run_guest --disk "$img" --timeout 1500 "$script"
check_fsck "$img"
echo "014-indexed-dirs: PASS"
