#!/usr/bin/env bash
# The frozen image of on-disk format v3 (tests/images/v3.img.gz: extent trees) through the kernel.
# The image is a clean filesystem whose files have extent trees of every shape the format allows
# at small sizes: /deep.bin 764 extents (an index root of depth 1 over leaves of 254, 254 and 250),
# /dir/sparse.bin 261 extents between holes (depth 1, leaves of 254 and 1), /dir/full.bin a full
# root leaf (260 extents), /dir/seven.bin a root leaf of 1, /six.bin 6 inline extents, no tree;
# and special files: /fifo, /sock, /dir/null (character device 1:3) and /loop300 (block device
# 7:300); and extended attributes: user., trusted. (NUL bytes in its value) and security. (1,000
# bytes) ones on /six.bin, a user. one on /dir, a trusted. one on /dir/null.
#
# Before the boot, the host tools read it as the manifest says (fsck.vexfs -n, vexctl cat,
# vexctl search-image). In the guest, every manifest item reads the same through the kernel (as
# 060 checks v1's: stat, sha256sum, readlink, vexctl get, the xattr, stats, searches); the special
# files have the type, mode and device numbers (stat %t:%T) of the manifest's inode and rdev
# items, the FIFO carries 100,000 bytes from one process to another, the character device 1:3 is
# /dev/null (writes vanish, reads end at once), and touching the devices and the socket (their
# inodes written back) keeps their numbers across the remounts below; listxattr of every path but
# the symlinks gives the manifest's xattr names (user.vexfs.embedding added for the files with
# chunks) and getxattr each value (hex), as root; then one attribute is set on /six.bin, one
# removed from it and /dir/null's only one removed (its xattr block freed: one more free block),
# and after a remount with fsck.vexfs -n clean the attributes are as changed; then the kernel
# changes the trees it did not make:
#   - /deep.bin grows by 8 one-block writes past its end with a hole before each (8 new extents:
#     its last leaf, 250 + 8, splits, one new leaf) and an append of 3 blocks + 100 bytes;
#   - /deep.bin is cut in its second leaf (file block 300: the leaves after it are freed), grown
#     by truncate (the cut block's tail and what follows read as zeros), then cut to 3 blocks,
#     inside its inline extents (the whole tree freed);
#   - /dir/sparse.bin is cut at file block 400 (its second leaf freed).
# After each step its content (sha256, computed on the host by the same writes on a copy) and its
# blocks (stat %b: data blocks and tree nodes) are as expected, and again after a remount with
# fsck.vexfs -n clean before it; at the end every other file is unchanged, the searches the same
# and the free block count back by what was freed. fsck.vexfs -n is clean in the guest and on
# the host after; the image stays format v3 with RECOVER clear, and the host's vexctl cat reads
# the kernel's files as the guest did. The image is decompressed to a temporary copy; the
# committed file is never written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/frozen-lib.sh"

frozen_prepare 3

# ---- the host tools on the untouched image ---------------------------------------------------

frozen_host_tools "$img"
[ "$(ver format_version)" = 3 ] || fail "the frozen image should be format v3"

# ---- the special files: "PATH TYPE PERM MAJOR:MINOR" as stat -c '%n %F %a %t:%T' prints them ---

: > "$share/special.expected"
while read -r _ ino type mode _; do
    case $type in
        fifo | socket) word=$type dev=0:0 ;;
        chrdev | blkdev)
            [ "$type" = chrdev ] && word="character special file" || word="block special file"
            IFS=: read -r major minor <<< "$(field rdev "$ino")"
            dev=$(printf '%x:%x' "$major" "$minor")
            ;;
        *) continue ;;
    esac
    perm=$(printf '%o' $((8#$mode & 07777)))
    while read -r path; do
        echo "/mnt$path $word $perm $dev" >> "$share/special.expected"
    done < <(awk -v i="$ino" '$1 == "path" && $2 == i { print $3 }' "$M")
done < <(grep '^inode ' "$M")
for want in "/mnt/fifo fifo 640 0:0" "/mnt/sock socket 755 0:0" "/mnt/dir/null character special file 666 1:3" \
    "/mnt/loop300 block special file 660 7:12c"; do
    grep -q -x -F "$want" "$share/special.expected" || fail "the manifest should give '$want'"
done
[ "$(wc -l < "$share/special.expected")" = 4 ] || fail "the manifest should name 4 special files"
head -c 100000 < <(yes "062 through the frozen FIFO") > "$share/fifo.bin"

# ---- extended attributes: "PATH NAME..." (listxattr, sorted) and "PATH NAME HEX" (getxattr) -------

: > "$share/xlist.expected"
: > "$share/xget.expected"
while read -r _ ino type _; do
    [ "$type" = symlink ] && continue # listxattr follows it
    names=$(awk -v i="$ino" '$1 == "xattr" && $2 == i { print $3 }' "$M")
    grep -q "^chunk $ino " "$M" && names+=$'\n'user.vexfs.embedding
    list=$({ grep -v '^$' <<< "$names" || true; } | LC_ALL=C sort | tr '\n' ' ')
    while read -r path; do
        echo "$path ${list% }" >> "$share/xlist.expected"
        awk -v i="$ino" -v p="$path" '$1 == "xattr" && $2 == i { print p, $3, $4 }' "$M" >> "$share/xget.expected"
    done < <(awk -v i="$ino" '$1 == "path" && $2 == i { print $3 }' "$M")
done < <(grep '^inode ' "$M")
for want in "/six.bin security.label trusted.label user.mime_type" "/dir user.comment" "/dir/null trusted.device" \
    "/hello.txt user.vexfs.embedding" "/fifo "; do
    grep -q -x -F "$want" "$share/xlist.expected" || fail "the manifest should give the xattr names '$want'"
done
[ "$(grep -c '^/six.bin security.label ' "$share/xget.expected")" = 1 ] &&
    [ "$(awk '$1 == "/six.bin" && $2 == "security.label" { print length($3) }' "$share/xget.expected")" = 2000 ] ||
    fail "the manifest should give /six.bin a 1,000-byte security.label"
grep -q -x -F "/six.bin trusted.label 6265666f726500616674657200" "$share/xget.expected" ||
    fail "the manifest should give /six.bin's trusted.label with its NUL bytes"
# After the guest sets user.added on /six.bin and removes its trusted.label and /dir/null's only one.
added_hex=$(printf 'set by 062' | od -An -tx1 -v | tr -d ' \n')
sed -e 's|^/six.bin .*|/six.bin security.label user.added user.mime_type|' -e 's|^/dir/null .*|/dir/null |' \
    "$share/xlist.expected" > "$share/xlist2.expected"
{
    grep -v -e '^/six.bin trusted.label ' -e '^/dir/null trusted.device ' "$share/xget.expected"
    echo "/six.bin user.added $added_hex"
} > "$share/xget2.expected"

# ---- what the kernel's writes must give, made on the host with the same writes on copies ------

[ "$(field tree "$(awk '$1 == "path" && $3 == "/deep.bin" { print $2 }' "$M")")" = "1 4 764" ] ||
    fail "/deep.bin should have a tree of depth 1, 4 nodes, 764 extents"
[ "$(field tree "$(awk '$1 == "path" && $3 == "/dir/sparse.bin" { print $2 }' "$M")")" = "1 3 261" ] ||
    fail "/dir/sparse.bin should have a tree of depth 1, 3 nodes, 261 extents"
"$VEXCTL" cat "$img" /deep.bin > "$T/deep" || fail "vexctl cat /deep.bin"
"$VEXCTL" cat "$img" /dir/sparse.bin > "$T/sparse" || fail "vexctl cat /dir/sparse.bin"
deep_size=$(stat -c %s "$T/deep")
deep_blocks=$(((deep_size + 4095) / 4096)) # 764: the last one partial, all mapped
for i in 0 1 2 3 4 5 6 7; do
    head -c 4096 < <(yes "062 appended block $i")
done > "$share/app.bin"
head -c $((3 * 4096 + 100)) < <(yes "062 appended tail") > "$share/tail.bin"
sha() { sha256sum < "$1" | cut -d' ' -f1; }

# Step 1: 8 blocks at file blocks 765, 767, ..., 779 (a hole before each), then the append.
for i in 0 1 2 3 4 5 6 7; do
    dd if="$share/app.bin" of="$T/deep" bs=4096 skip=$i seek=$((deep_blocks + 1 + 2 * i)) count=1 \
        conv=notrunc status=none
done
cat "$share/tail.bin" >> "$T/deep"
# Blocks: 764 data + 4 nodes, + 8 + 4 data (the tail's 3 blocks + 100 bytes), + 1 leaf (the split).
step1="$(sha "$T/deep") $(stat -c %s "$T/deep") $(((768 + 8 + 4 + 1) * 8))"
# Step 2: cut at file block 300 + 123 bytes (inside the second leaf: 6 inline + 254 in the first
# leaf + 41 in the second; the third and fourth leaves freed), then grown to 302 blocks.
truncate -s $((300 * 4096 + 123)) "$T/deep"
step2a="$(sha "$T/deep") $(stat -c %s "$T/deep") $(((301 + 3) * 8))"
truncate -s $((302 * 4096)) "$T/deep"
step2b="$(sha "$T/deep") $(stat -c %s "$T/deep") $(((301 + 3) * 8))"
# Step 3: cut to 3 blocks: inside the inline extents, no tree left.
truncate -s $((3 * 4096)) "$T/deep"
step3="$(sha "$T/deep") $(stat -c %s "$T/deep") $((3 * 8))"
# /dir/sparse.bin cut at file block 400: data blocks 1, 3, ..., 399 (200 extents: 6 inline and
# 194 in the first leaf; the second leaf freed), the root (index) kept.
truncate -s $((400 * 4096)) "$T/sparse"
sparse_cut="$(sha "$T/sparse") $(stat -c %s "$T/sparse") $(((200 + 2) * 8))"
# Blocks freed in all: /deep.bin 768 -> 3, /dir/sparse.bin 264 -> 202.
freed=$(((768 - 3) + (264 - 202)))
# The other files' contents, unchanged.
grep -v -e '^/deep.bin ' -e '^/dir/deep-alias ' -e '^/dir/sparse.bin ' "$share/data.expected" > "$share/others.expected"
{
    echo "DEEP_BLOCKS=$deep_blocks"
    echo "STEP1='$step1'"
    echo "STEP2A='$step2a'"
    echo "STEP2B='$step2b'"
    echo "STEP3='$step3'"
    echo "SPARSE_CUT='$sparse_cut'"
    echo "FREED=$freed"
    echo "FIFO_SHA=$(sha "$share/fifo.bin")"
} > "$share/expect.env"

# ---- the kernel ----------------------------------------------------------------------------------

script=$(guest_script frozen-v3.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/frozen-check.sh
. /share/expect.env
# state FILE: its sha256, size and 512-byte blocks.
state() { echo "$(sha256sum < "$1" | cut -d' ' -f1) $(stat -c '%s %b' "$1")"; }
# expect_state FILE WANT WHAT: state FILE must be WANT.
expect_state() {
    assert_eq "$(state "$1")" "$2" "$3 (sha256, size, blocks)"
    echo "$3: $(stat -c '%s bytes, %b blocks of 512' "$1"), sha256 as expected"
}

# cycle: umount, fsck.vexfs -n clean, mount again (what follows reads the disk, not the cache).
cycle() {
    must umount /mnt
    fsck.vexfs -n /dev/vda > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "fsck.vexfs -n after $1"; }
    echo "fsck clean after $1"
    mount_vexfs /dev/vda /mnt
}

# xattrs N: listxattr of every path in $S/xlistN.expected, getxattr of every attribute in
# $S/xgetN.expected (the value as faultops prints it, before its "ok" line, in hex), as expected.
xattrs() {
    : > "/tmp/xlist$1.out"
    while read -r path _; do
        out=$(faultops listxattr "/mnt$path") || fail "listxattr /mnt$path: $out"
        echo "$path $(printf '%s\n' "$out" | head -n 1)" >> "/tmp/xlist$1.out"
    done < "$S/xlist$1.expected"
    same "xlist$1"
    : > "/tmp/xget$1.out"
    while read -r path name _; do
        faultops getxattr "/mnt$path" "$name" > /tmp/xval || fail "getxattr /mnt$path $name: $(cat /tmp/xval)"
        [ "$(tail -n 1 /tmp/xval)" = ok ] || fail "getxattr /mnt$path $name: $(cat /tmp/xval)"
        # The value, then "\nok\n".
        n=$(($(wc -c < /tmp/xval) - 4))
        echo "$path $name $(head -c "$n" /tmp/xval | busybox xxd -p | tr -d '\n')" >> "/tmp/xget$1.out"
    done < "$S/xget$1.expected"
    same "xget$1"
}

# specials: the special files' stat lines, as the manifest says.
specials() {
    : > /tmp/special.out
    while read -r path _; do
        stat -c '%n %F %a %t:%T' "$path" >> /tmp/special.out || fail "stat $path"
    done < "$S/special.expected"
    same special
}

mount_vexfs /dev/vda /mnt
frozen_check

section "extended attributes: listxattr and getxattr as the manifest says; one set, two removed"
xattrs ""
free0=$(stat -f -c %f /mnt)
must faultops setxattr /mnt/six.bin user.added "set by 062"
must faultops removexattr /mnt/six.bin trusted.label
must faultops removexattr /mnt/dir/null trusted.device
xattrs 2
cycle "the xattr changes"
xattrs 2
assert_eq "$(stat -f -c %f /mnt)" "$((free0 + 1))" "free blocks (/dir/null's xattr block freed)"
echo "free blocks: $free0 before, $((free0 + 1)) after (/dir/null's xattr block freed)"

section "special files: types, modes, device numbers; the FIFO and the character device 1:3 work"
specials
cat /share/fifo.bin > /mnt/fifo &
writer=$!
got=$(sha256sum < /mnt/fifo | cut -d' ' -f1)
wait "$writer" || fail "the writer into /mnt/fifo"
assert_eq "$got" "$FIFO_SHA" "100,000 bytes from one process to another through /mnt/fifo (sha256)"
echo "/mnt/fifo: 100,000 bytes through it"
cat /share/fifo.bin > /mnt/dir/null || fail "writing 100,000 bytes to /mnt/dir/null"
echo "vanishes" > /mnt/dir/null || fail "writing to /mnt/dir/null"
assert_eq "$(wc -c < /mnt/dir/null)" 0 "bytes read from /mnt/dir/null (1:3)"
assert_eq "$(stat -c %s /mnt/fifo /mnt/dir/null | tr '\n' ' ')" "0 0 " "sizes of /mnt/fifo and /mnt/dir/null"
echo "/mnt/dir/null: acts as /dev/null"
# Their inodes written back (new times) with the same numbers: checked after the remounts below.
must touch /mnt/dir/null /mnt/loop300 /mnt/sock
free_before=$(stat -f -c %f /mnt)

section "/deep.bin grows: 8 blocks past its end, a hole before each, then an append"
for i in 0 1 2 3 4 5 6 7; do
    dd if=/share/app.bin of=/mnt/deep.bin bs=4096 skip=$i seek=$((DEEP_BLOCKS + 1 + 2 * i)) count=1 \
        conv=notrunc 2>/dev/null || fail "dd block $i past the end of /mnt/deep.bin"
done
cat /share/tail.bin >> /mnt/deep.bin || fail "appending to /mnt/deep.bin"
expect_state /mnt/deep.bin "$STEP1" "/deep.bin grown (a leaf split)"
cycle "the growth"
expect_state /mnt/deep.bin "$STEP1" "/deep.bin grown, after a remount"
expect_state /mnt/dir/deep-alias "$STEP1" "/dir/deep-alias grown, after a remount"

section "/deep.bin cut in its second leaf, then grown by truncate"
must truncate -s $((300 * 4096 + 123)) /mnt/deep.bin
expect_state /mnt/deep.bin "$STEP2A" "/deep.bin cut in its second leaf"
must truncate -s $((302 * 4096)) /mnt/deep.bin
expect_state /mnt/deep.bin "$STEP2B" "/deep.bin grown by truncate (zeros)"
cycle "the cut"
expect_state /mnt/deep.bin "$STEP2B" "/deep.bin cut and grown, after a remount"

section "/deep.bin cut inside its inline extents, /dir/sparse.bin in its first leaf"
must truncate -s $((3 * 4096)) /mnt/deep.bin
expect_state /mnt/deep.bin "$STEP3" "/deep.bin cut inside its inline extents (no tree)"
must truncate -s $((400 * 4096)) /mnt/dir/sparse.bin
expect_state /mnt/dir/sparse.bin "$SPARSE_CUT" "/dir/sparse.bin cut in its first leaf"
cycle "the cuts"

section "after a remount: the changes on disk, the rest unchanged"
specials
expect_state /mnt/deep.bin "$STEP3" "/deep.bin after the remount"
expect_state /mnt/dir/sparse.bin "$SPARSE_CUT" "/dir/sparse.bin after the remount"
assert_eq "$(stat -f -c %f /mnt)" "$((free_before + FREED))" "free blocks (the freed data blocks and nodes)"
echo "free blocks: $free_before before, $((free_before + FREED)) after ($FREED freed)"
: > /tmp/others.out
while read -r path _; do
    echo "$path $(sha256sum < "/mnt$path" | cut -d' ' -f1)" >> /tmp/others.out
done < "$S/others.expected"
same others
frozen_search
must umount /mnt

section "fsck after the kernel"
must fsck.vexfs -n /dev/vda
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 300 "$script"
[ "$(ver format_version)" = 3 ] || fail "the image should still be format v3"
[ "$(ver feature_incompat)" = 0 ] || fail "RECOVER should be clear after a clean unmount"
check_fsck "$img"
[ "$("$VEXCTL" cat "$img" /deep.bin | sha256sum | cut -d' ' -f1)" = "${step3%% *}" ] ||
    fail "vexctl cat /deep.bin differs from what the kernel wrote"
[ "$("$VEXCTL" cat "$img" /dir/sparse.bin | sha256sum | cut -d' ' -f1)" = "${sparse_cut%% *}" ] ||
    fail "vexctl cat /dir/sparse.bin differs from what the kernel wrote"
echo "062-frozen-v3: PASS"
