#!/usr/bin/env bash
# Special files and the rest of item 3's calls (issue 11, format v3): mknod of a FIFO, a socket, a character device and a
# block device on vexfs. Each has the type, mode and device number asked for (stat), after a
# remount too (the number is the disk inode's rdev); the FIFO carries bytes between two
# processes; the character device 1:3 behaves as /dev/null (writes vanish, reads end at once:
# init_special_inode gave it the device's operations); a rename and an unlink of them work;
# lseek SEEK_DATA/SEEK_HOLE on a sparse file find its data and holes; renameat2 RENAME_EXCHANGE
# swaps a file and a directory across directories (link counts follow), RENAME_WHITEOUT leaves
# a character device 0:0 behind (overlayfs), an O_TMPFILE file frees its inode when closed
# unnamed and keeps its data when linked in; xattrs in the user., trusted. and security.
# namespaces (create/replace flags, listxattr, the one-block limit: ENOSPC, on a FIFO too, the
# block freed with the last); POSIX ACLs (an access ACL grants a user read, chmod rewrites its
# mask, a directory's default ACL is inherited at create and grants another); all after a
# remount too; fsck.vexfs -n is clean in
# the guest and on the host.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 32M --dim 8 --metric l2)
script=$(guest_script special.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
kinds() {
    for f in fifo sock null blk; do stat -c "%n %F %a %t:%T" /mnt/$f; done
}
mount_vexfs /dev/vda /mnt

section "mknod"
must faultops mknod /mnt/fifo p 0 0
must faultops mknod /mnt/sock s 0 0
must faultops mknod /mnt/null c 1 3
must faultops mknod /mnt/blk b 7 300
want="/mnt/fifo fifo 644 0:0
/mnt/sock socket 644 0:0
/mnt/null character special file 644 1:3
/mnt/blk block special file 644 7:12c"
assert_eq "$(kinds)" "$want" "the special files"
out=$(faultops mknod /mnt/fifo p 0 0) && fail "mknod over an existing name succeeded"
assert_eq "$out" EEXIST "mknod over an existing name"

section "they work"
( echo "through the fifo" > /mnt/fifo ) &
assert_eq "$(cat /mnt/fifo)" "through the fifo" "bytes through the FIFO"
wait
echo "vanishes" > /mnt/null || fail "writing to the character device 1:3"
assert_eq "$(wc -c < /mnt/null)" 0 "bytes read from the character device 1:3"

section "remount"
must umount /mnt
mount_vexfs /dev/vda /mnt
assert_eq "$(kinds)" "$want" "the special files after a remount"
must mv /mnt/null /mnt/null2
must rm /mnt/sock /mnt/null2

section "SEEK_DATA and SEEK_HOLE"
# Data at blocks 0 and 4 of 6: holes at 4096..16383 and 20480..24575 (the end).
must faultops write /mnt/sparse 0 4096 + write /mnt/sparse 16384 4096 + truncate /mnt/sparse 24576
seek() { faultops seek /mnt/sparse "$@" | tr '\n' ' '; }
assert_eq "$(seek data 0)$(seek hole 0)" "0 ok 4096 ok " "seek from 0"
assert_eq "$(seek data 5000)$(seek hole 16384)" "16384 ok 20480 ok " "seek from inside"
assert_eq "$(seek data 20480)" "ENXIO " "SEEK_DATA in the last hole"
assert_eq "$(seek hole 24576)" "ENXIO " "SEEK_HOLE at the end"

section "RENAME_EXCHANGE"
must mkdir /mnt/d1 /mnt/d2 /mnt/d2/sub
echo one > /mnt/d1/f
links0="$(stat -c %h /mnt/d1) $(stat -c %h /mnt/d2)"
must faultops rename2 /mnt/d1/f /mnt/d2/sub exchange
assert_eq "$(cat /mnt/d2/sub) $(stat -c %F /mnt/d1/f)" "one directory" "exchanged a file and a directory"
# d1 gained a subdirectory, d2 lost one.
assert_eq "$(stat -c %h /mnt/d1) $(stat -c %h /mnt/d2)" "3 2" "link counts after the exchange (were $links0)"
must touch /mnt/d1/f/inside
assert_eq "$(ls /mnt/d1/f)" inside "the moved directory works"
out=$(faultops rename2 /mnt/d1/f /mnt/d2/none exchange) && fail "exchange with a missing name succeeded"
assert_eq "$out" ENOENT "exchange with a missing name"

section "RENAME_WHITEOUT"
echo two > /mnt/d2/w
must faultops rename2 /mnt/d2/w /mnt/d2/w2 whiteout
assert_eq "$(cat /mnt/d2/w2) $(stat -c '%F %t:%T' /mnt/d2/w)" "two character special file 0:0" "the whiteout left behind"

section "O_TMPFILE"
free=$(stat -f -c %d /mnt)
must faultops tmpfile /mnt/d2 5000
# Its written data keeps a reference (ordered data) until the next commit: then it is freed.
must sync -f /mnt
assert_eq "$(stat -f -c %d /mnt)" "$free" "free inodes after an unnamed O_TMPFILE file is closed"
umask 022
must faultops tmpfile /mnt/d2 5000 /mnt/d2/named
# Asked for 0666: the umask applies (with SB_POSIXACL the filesystem applies it).
assert_eq "$(stat -c '%s %h %a' /mnt/d2/named)" "5000 1 644" "an O_TMPFILE file linked in"

section "xattrs"
x() { faultops "$@" | tr '\n' ' '; }
echo data > /mnt/x
must faultops setxattr /mnt/x user.color blue
must faultops setxattr /mnt/x trusted.overlay.opaque y
must faultops setxattr /mnt/x security.selinux system_u:object_r:tmp_t:s0
# user. is for regular files and directories only (the VFS's rule): EPERM on a FIFO.
assert_eq "$(x setxattr /mnt/fifo user.on-a-fifo 1)" "EPERM " "a user. attribute on a FIFO"
must faultops setxattr /mnt/fifo trusted.on-a-fifo 1
assert_eq "$(x getxattr /mnt/x user.color)" "blue ok " "user. attribute"
assert_eq "$(x listxattr /mnt/x)" "security.selinux trusted.overlay.opaque user.color ok " "listxattr (as root)"
assert_eq "$(x setxattr /mnt/x user.color red create)" "EEXIST " "XATTR_CREATE over an existing one"
assert_eq "$(x setxattr /mnt/x user.shape round replace)" "ENODATA " "XATTR_REPLACE of a missing one"
must faultops setxattr /mnt/x user.color red replace
assert_eq "$(x getxattr /mnt/x user.color)" "red ok " "replaced"
assert_eq "$(x getxattr /mnt/x user.none)" "ENODATA " "a missing attribute"
# Documented limit: every attribute of a file in one 4 KiB block (4,064 bytes of entries).
assert_eq "$(x setxattr-len /mnt/x user.big 5000)" "ENOSPC " "a value past the block"
must faultops setxattr-len /mnt/x user.big 3000
assert_eq "$(x setxattr-len /mnt/x user.big2 2000)" "ENOSPC " "two values past the block"
must faultops removexattr /mnt/x user.big
# The embedding stays the embedding (not stored as an attribute).
assert_eq "$(x getxattr /mnt/x user.vexfs.embedding)" "ENODATA " "no embedding on /mnt/x"

section "POSIX ACLs"
echo 'u:x:1000:1000::/tmp:/bin/sh' >> /etc/passwd
echo 'w:x:1001:1001::/tmp:/bin/sh' >> /etc/passwd
printf 'u:x:1000:\nw:x:1001:\n' >> /etc/group
as() { su "$1" -s /bin/sh -c "$2"; }
echo secret > /mnt/acl
must chmod 600 /mnt/acl
out=$(as u 'cat /mnt/acl' 2>&1) && fail "uid 1000 read a 0600 file of root: $out"
must faultops setacl /mnt/acl access u::rw-,u:1000:r--,g::---,m::r--,o::---
assert_eq "$(x getacl /mnt/acl access)" "u::rw-,u:1000:r--,g::---,m::r--,o::--- ok " "the access ACL read back"
# The mode's group bits are the ACL's mask.
assert_eq "$(stat -c %a /mnt/acl)" 640 "mode after the ACL"
assert_eq "$(as u 'cat /mnt/acl')" secret "uid 1000 reads through its ACL entry"
out=$(as w 'cat /mnt/acl' 2>&1) && fail "uid 1001 read the file: $out"
# chmod rewrites the mask: g-r takes uid 1000's read away.
must chmod 600 /mnt/acl
assert_eq "$(x getacl /mnt/acl access)" "u::rw-,u:1000:r--,g::---,m::---,o::--- ok " "the mask after chmod 600"
out=$(as u 'cat /mnt/acl' 2>&1) && fail "uid 1000 read the file after chmod 600: $out"
# A default ACL is inherited by what is created in the directory.
must mkdir /mnt/shared
must faultops setacl /mnt/shared default u::rwx,u:1001:rw-,g::r-x,m::rwx,o::---
echo new > /mnt/shared/f
assert_eq "$(x getacl /mnt/shared/f access)" "u::rw-,u:1001:rw-,g::r-x,m::rw-,o::--- ok " "an ACL inherited at create"
assert_eq "$(as w 'cat /mnt/shared/f')" new "uid 1001 reads the inherited ACL's file"
assert_eq "$(x listxattr /mnt/shared)" "system.posix_acl_default ok " "listxattr shows the default ACL"

section "remount"
must umount /mnt
mount_vexfs /dev/vda /mnt
assert_eq "$(x getacl /mnt/shared/f access) $(x getacl /mnt/shared default)" \
    "u::rw-,u:1001:rw-,g::r-x,m::rw-,o::--- ok  u::rwx,u:1001:rw-,g::r-x,m::rwx,o::--- ok " "ACLs after a remount"
assert_eq "$(as w 'cat /mnt/shared/f')" new "the inherited ACL after a remount"
assert_eq "$(x listxattr /mnt/x) $(x getxattr /mnt/x security.selinux) $(x getxattr /mnt/fifo trusted.on-a-fifo)" \
    "security.selinux trusted.overlay.opaque user.color ok  system_u:object_r:tmp_t:s0 ok  1 ok " "xattrs after a remount"
free=$(stat -f -c %f /mnt)
must faultops removexattr /mnt/x user.color + removexattr /mnt/x trusted.overlay.opaque + removexattr /mnt/x security.selinux
assert_eq "$(x listxattr /mnt/x)" " ok " "every attribute removed"
sync -f /mnt
assert_eq "$(stat -f -c %f /mnt)" "$((free + 1))" "the xattr block freed with the last attribute"
assert_eq "$(cat /mnt/d2/sub) $(stat -c '%F %t:%T' /mnt/d2/w) $(stat -c '%s %h' /mnt/d2/named)" \
    "one character special file 0:0 5000 1" "after a remount"
assert_eq "$(ls /mnt/d1/f)" inside "the moved directory after a remount"
must umount /mnt
must fsck.vexfs -n /dev/vda
GUEST
)
run_guest --disk "$img" --timeout 300 "$script"
check_fsck "$img"
echo "018-special-files: PASS"
