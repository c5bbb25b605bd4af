#!/usr/bin/env bash
# Extent trees (issue 11, format v3: docs/FORMAT.md "Extent tree"): files with no fixed extent
# limit, filled until the filesystem is full.
# 1. A sparse file written every other block until ENOSPC: one extent per block, about 37,000
#    of them on this 320 MiB disk (52,383 blocks) (a tree of depth 1: the old format held 260 and failed with
#    EFBIG at the 261st). Read back after a remount (patterns and holes), truncated to a third
#    in place (the tree cut across leaves, in several journal handles), read back again, and
#    truncated to 0: the free block count returns to what it was before.
# 2. Four files appended 4 KiB at a time in turn until ENOSPC (four downloads at once), read
#    back after a remount, removed: free count back again.
# 3. One file appended 1 MiB at a time until ENOSPC (each write maps its blocks past the end of
#    file in runs: glue.c vexfs_buffered_write): the write that meets ENOSPC is cut short and
#    the blocks mapped for the rest are freed (the file's blocks are its size's, the free count
#    is 0 only because the file holds everything); read back after a remount; removed: free
#    count back again.
# Then fsck.vexfs -n on the host: clean (every node counted, nothing leaked).
. "$(dirname "$0")/lib.sh"

img=$(mkimg 320M --dim 16 --metric l2)
script=$(guest_script trees.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
remount() {
    must umount /mnt
    echo 3 > /proc/sys/vm/drop_caches
    mount_vexfs /dev/vda /mnt
}
free_blocks() { sync; stat -f -c %f /mnt; }
mount_vexfs /dev/vda /mnt
# The free count with the files there and empty: their directory entries take a directory
# block, which stays when they are removed.
must touch /mnt/sparse /mnt/a /mnt/b /mnt/c /mnt/d
free0=$(free_blocks)

section "a sparse file, every other block, until ENOSPC"
out=$(faultops fill 2 /mnt/sparse) || fail "sparse fill: $out"
n=$(echo "$out" | sed -n 's/^filled //p')
[ -n "$n" ] && [ "$n" -gt 30000 ] || fail "sparse fill wrote only '$n' blocks: $out"
echo "sparse: $n blocks of 4 KiB, one extent each; $(stat -c %b /mnt/sparse) sectors"
remount
out=$(faultops check-fill 2 /mnt/sparse) || fail "sparse read-back: $out"
assert_eq "$(echo "$out" | sed -n 's/^checked //p')" "$n" "sparse blocks read back"

section "truncated to a third, then removed"
keep=$((n / 3))
must truncate -s $(( (2 * (keep - 1) + 1) * 4096 )) /mnt/sparse
remount
out=$(faultops check-fill 2 /mnt/sparse) || fail "sparse read-back after truncate: $out"
assert_eq "$(echo "$out" | sed -n 's/^checked //p')" "$keep" "sparse blocks left by the truncate"
must truncate -s 0 /mnt/sparse
assert_eq "$(free_blocks)" "$free0" "free blocks after emptying the sparse file"
must rm /mnt/sparse

section "four files appended in turn until ENOSPC"
out=$(faultops fill 1 /mnt/a /mnt/b /mnt/c /mnt/d) || fail "interleaved fill: $out"
m=$(echo "$out" | sed -n 's/^filled //p')
# At least the sparse file's count: four mostly contiguous files need fewer tree nodes than
# its one extent per block (and the blocks it freed must all be allocatable again).
[ -n "$m" ] && [ "$m" -ge "$n" ] || fail "interleaved fill wrote only '$m' blocks (the sparse file $n): $out"
echo "interleaved: $m blocks in 4 files: $(stat -c %b /mnt/a /mnt/b /mnt/c /mnt/d | tr '\n' ' ')sectors"
remount
out=$(faultops check-fill 1 /mnt/a /mnt/b /mnt/c /mnt/d) || fail "interleaved read-back: $out"
assert_eq "$(echo "$out" | sed -n 's/^checked //p')" "$m" "interleaved blocks read back"
must rm /mnt/a /mnt/b /mnt/c /mnt/d
must touch /mnt/sparse /mnt/a /mnt/b /mnt/c /mnt/d
assert_eq "$(free_blocks)" "$free0" "free blocks after removing the four files"

section "one file appended 1 MiB at a time until ENOSPC"
dd if=/dev/zero of=/mnt/big bs=1048576 2> /tmp/dd.err && fail "dd did not meet ENOSPC"
grep -q "No space left" /tmp/dd.err || fail "dd failed otherwise: $(cat /tmp/dd.err)"
size=$(stat -c %s /mnt/big)
[ "$size" -ge $((200 * 1048576)) ] || fail "/mnt/big holds only $size bytes"
# Its data blocks and a few extent-tree nodes at most: nothing mapped past its size.
sectors=$(stat -c %b /mnt/big)
[ "$sectors" -ge $((size / 512)) ] && [ "$sectors" -le $((size / 512 + 64)) ] ||
    fail "/mnt/big: $sectors sectors for $size bytes"
echo "1 MiB appends: $size bytes in $sectors sectors; free blocks then $(free_blocks)"
remount
want=$(head -c "$size" /dev/zero | md5sum | cut -d' ' -f1)
assert_eq "$(md5sum < /mnt/big | cut -d' ' -f1)" "$want" "contents of /mnt/big"
must rm /mnt/big
assert_eq "$(free_blocks)" "$free0" "free blocks after removing /mnt/big"
must umount /mnt
GUEST
)
run_guest --disk "$img" --timeout 600 "$script"
check_fsck "$img"
echo "016-extent-trees: PASS"
