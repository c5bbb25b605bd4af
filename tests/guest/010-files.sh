#!/usr/bin/env bash
# Files and directories survive umount/mount and a reboot, byte-exact: files of 0 B, 1 B, 4 KiB,
# 4 KiB + 1 and 10 MiB, appends, a tree of 1,000 files in nested directories, rename, unlink,
# rmdir, symlinks, hard links, truncate. fsck.vexfs finds the image clean after each boot, and
# the offline reader (vexctl cat/ls) sees the same bytes as the kernel.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 256M --dim 8 --metric l2)
mkdir "$T/share"
for size in 0 1 4096 4097 10485760; do
    gen_data "$SEED-$size" "$size" > "$T/share/f$size"
done

# Checks shared by both boots: everything written in the first boot reads back the same.
cat > "$T/share/check.sh" <<'CHECK'
check_all() {
    for size in 0 1 4096 4097 10485760; do
        cmp /share/f$size /mnt/data/f$size || fail "f$size differs"
        assert_eq "$(stat -c %s /mnt/data/f$size)" "$size" "size of f$size"
    done
    assert_eq "$(cat /mnt/data/appended)" "$(printf 'one\ntwo\nthree')" "appended file"
    n=0
    for a in 0 1 2 3 4 5 6 7 8 9; do
        for b in 0 1 2 3 4 5 6 7 8 9; do
            for c in 0 1 2 3 4 5 6 7 8 9; do
                [ "$(cat /mnt/tree/d$a/e$b/file$c)" = "tree $a $b $c" ] || fail "tree/d$a/e$b/file$c"
                n=$((n + 1))
            done
        done
    done
    assert_eq "$n" 1000 "tree files checked"
    assert_eq "$(find /mnt/tree -type f | wc -l)" 1000 "files found in the tree"
    assert_eq "$(find /mnt/tree -type d | wc -l)" 111 "directories in the tree"
    assert_eq "$(stat -c %h /mnt/tree)" 12 "link count of tree (2 + 10 subdirectories)"
    [ ! -e /mnt/data/gone ] || fail "unlinked file is back"
    [ ! -e /mnt/tree/d0/e0/removed ] || fail "removed directory is back"
    assert_eq "$(cat /mnt/moved/renamed)" "rename me" "renamed file"
    assert_eq "$(readlink /mnt/link)" "data/f4097" "symlink target"
    cmp /mnt/link /share/f4097 || fail "reading through the symlink"
    assert_eq "$(stat -c %h /mnt/data/f1)" 2 "link count of f1"
    cmp /mnt/hard /share/f1 || fail "hard link content"
    assert_eq "$(stat -c %s /mnt/data/shrunk)" 5000 "truncated size"
    cmp /mnt/data/shrunk /share/shrunk || fail "truncated content"
    blocks=$(stat -c %b /mnt/data/f10485760)
    [ "$blocks" -ge 20480 ] || fail "st_blocks of the 10 MiB file is $blocks"
}
CHECK

script=$(guest_script files.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/check.sh
mount_vexfs /dev/vda /mnt
section "write"
must mkdir /mnt/data /mnt/tree /mnt/moved
for size in 0 1 4096 4097 10485760; do
    must cp /share/f$size /mnt/data/f$size
done
printf one > /mnt/data/appended
printf '\ntwo' >> /mnt/data/appended
printf '\nthree' >> /mnt/data/appended
for a in 0 1 2 3 4 5 6 7 8 9; do
    mkdir /mnt/tree/d$a || fail "mkdir d$a"
    for b in 0 1 2 3 4 5 6 7 8 9; do
        mkdir /mnt/tree/d$a/e$b || fail "mkdir d$a/e$b"
        for c in 0 1 2 3 4 5 6 7 8 9; do
            echo "tree $a $b $c" > /mnt/tree/d$a/e$b/file$c || fail "write file$c"
        done
    done
done
echo bye > /mnt/data/gone
must rm /mnt/data/gone
must mkdir /mnt/tree/d0/e0/removed
must rmdir /mnt/tree/d0/e0/removed
echo "rename me" > /mnt/data/torename
must mv /mnt/data/torename /mnt/moved/renamed
must ln -s data/f4097 /mnt/link
must ln /mnt/data/f1 /mnt/hard
must cp /share/f10485760 /mnt/data/shrunk
must truncate -s 5000 /mnt/data/shrunk
head -c 5000 /share/f10485760 > /tmp/shrunk
expect_fail rmdir /mnt/tree
section "check before unmount"
check_all
must umount /mnt
section "check after mount"
mount_vexfs /dev/vda /mnt
check_all
df /mnt
must umount /mnt
GUEST
)
head -c 5000 "$T/share/f10485760" > "$T/share/shrunk"
run_guest --disk "$img" --share "$T/share" --timeout 600 "$script"
check_fsck "$img"

# The offline reader agrees with the kernel.
"$VEXCTL" cat "$img" /data/f10485760 | cmp - "$T/share/f10485760" || fail "vexctl cat differs"
"$VEXCTL" cat "$img" /tree/d9/e9/file9 | grep -qx "tree 9 9 9" || fail "vexctl cat of a tree file"
[ "$("$VEXCTL" ls "$img" /tree/d5 | wc -l)" -eq 10 ] || fail "vexctl ls /tree/d5"

# A second boot on the same disk reads it all again.
script2=$(guest_script reboot.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/check.sh
mount_vexfs /dev/vda /mnt
section "check after reboot"
check_all
must umount /mnt
section "unload"
must rmmod vexfs
expect_fail grep -qw vexfs /proc/filesystems
GUEST
)
run_guest --disk "$img" --share "$T/share" --timeout 600 "$script2"
check_fsck "$img"
echo "010-files: PASS"
