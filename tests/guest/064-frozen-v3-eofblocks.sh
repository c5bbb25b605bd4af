#!/usr/bin/env bash
# The frozen image of on-disk format v3 with the feature EOFBLOCKS (tests/images/v3-eofblocks.img.gz:
# blocks preallocated past the end of a file, as fallocate(KEEP_SIZE) leaves them) through the
# kernel. Before the boot, the host tools read it as the manifest says (fsck.vexfs -n, vexctl
# cat, vexctl search-image). In the guest, every manifest item reads the same through the
# kernel (frozen_check: stat of every path with its 512-byte blocks, the preallocations
# counted; contents, embeddings, xattr, stats, the search). Then the kernel uses the
# preallocations: an append to /prealloc.log fills its preallocated blocks (no block
# allocated: the free count stays), a write far into /reserved's preallocation keeps its
# zeros before it, a truncate up keeps /dir/inner's preallocation and one to its size frees
# it (the free count grows by it); after a remount with fsck.vexfs -n clean before it the
# same again. The feature stays set; fsck.vexfs -n is clean on the host after, and vexctl cat
# reads what the kernel wrote. The image is decompressed to a temporary copy; the committed
# file is never written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/frozen-lib.sh"

frozen_prepare 3-eofblocks

frozen_host_tools "$img"
[ "$(ver format_version)" = 3 ] || fail "the frozen image should be format v3"
[ "$(ver feature_incompat)" = 6 ] || fail "the frozen image should have DIR_INDEX and EOFBLOCKS (6)"
# What the kernel writes, made here too: the log appended, /reserved written at 40,000.
head -c 20000 /dev/urandom > "$share/append.bin"
head -c 3000 /dev/urandom > "$share/far.bin"
"$VEXCTL" cat "$img" /prealloc.log > "$T/log"
cat "$T/log" "$share/append.bin" > "$T/log2"
{ head -c 40000 /dev/zero; cat "$share/far.bin"; } > "$T/reserved2"
sha() { sha256sum < "$1" | cut -d' ' -f1; }
{
    echo "LOG2=$(sha "$T/log2")"
    echo "RESERVED2=$(sha "$T/reserved2")"
} > "$share/expect.env"

script=$(guest_script frozen-v3-eofblocks.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/frozen-check.sh
. /share/expect.env
# state FILE: its sha256, size and 512-byte blocks.
state() { echo "$(sha256sum < "$1" | cut -d' ' -f1) $(stat -c '%s %b' "$1")"; }
cycle() {
    must umount /mnt
    fsck.vexfs -n /dev/vda > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "fsck.vexfs -n after $1"; }
    echo "fsck clean after $1"
    mount_vexfs /dev/vda /mnt
}
free() { stat -f -c %f /mnt; }

mount_vexfs /dev/vda /mnt
frozen_check

section "the preallocations used"
free0=$(free)
# /prealloc.log: 5,000 bytes in 10 blocks; 20,000 more fill blocks 1..6 of them.
cat /share/append.bin >> /mnt/prealloc.log || fail "appending to /mnt/prealloc.log"
must sync
assert_eq "$(state /mnt/prealloc.log)" "$LOG2 25000 80" "/prealloc.log appended into its preallocation"
# /reserved: size 0, 16 blocks; 3,000 bytes at 40,000 (block 9), zeros before.
dd if=/share/far.bin of=/mnt/reserved bs=40000 seek=1 conv=notrunc 2> /dev/null || fail "dd into /mnt/reserved"
must sync
assert_eq "$(state /mnt/reserved)" "$RESERVED2 43000 128" "/reserved written at 40,000"
assert_eq "$(free)" "$free0" "free blocks (the writes went into preallocated blocks)"
# /dir/inner: 10 bytes, blocks 0 and 4..6; grown to 20,000 by truncate (kept), then cut to
# its size (blocks 4..6 freed; block 4 lies inside 20,000 bytes, so only 5 and 6).
must truncate -s 20000 /mnt/dir/inner
assert_eq "$(stat -c '%s %b' /mnt/dir/inner)" "20000 32" "/dir/inner grown by truncate"
must truncate -s 20000 /mnt/dir/inner
assert_eq "$(stat -c '%s %b' /mnt/dir/inner)" "20000 16" "/dir/inner truncated to its size"
assert_eq "$(free)" "$((free0 + 2))" "free blocks (/dir/inner's blocks 5 and 6 freed)"
cycle "the writes"
assert_eq "$(state /mnt/prealloc.log)" "$LOG2 25000 80" "/prealloc.log after a remount"
assert_eq "$(state /mnt/reserved)" "$RESERVED2 43000 128" "/reserved after a remount"
assert_eq "$(stat -c '%s %b' /mnt/dir/inner)" "20000 16" "/dir/inner after a remount"
assert_eq "$(free)" "$((free0 + 2))" "free blocks after a remount"
frozen_search
must umount /mnt
must fsck.vexfs -n /dev/vda
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 300 "$script"
[ "$(ver feature_incompat)" = 6 ] || fail "EOFBLOCKS should stay set (and RECOVER be clear)"
check_fsck "$img"
[ "$("$VEXCTL" cat "$img" /prealloc.log | sha256sum | cut -d' ' -f1)" = "$(sha "$T/log2")" ] ||
    fail "vexctl cat /prealloc.log differs from what the kernel wrote"
[ "$("$VEXCTL" cat "$img" /reserved | sha256sum | cut -d' ' -f1)" = "$(sha "$T/reserved2")" ] ||
    fail "vexctl cat /reserved differs from what the kernel wrote"
echo "064-frozen-v3-eofblocks: PASS"
