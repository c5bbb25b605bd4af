#!/usr/bin/env bash
# Files growing at once (issue 11: "two files written at once fail with EFBIG at 1 MiB"): two
# files appended 4 KiB at a time in turn, 24 MiB each, as two downloads would. The allocator
# places a file's next block after its last one, and a file whose next block is taken starts a
# new run in a wholly free, aligned run of 64 blocks (kmod/sb.rs alloc_file_data), so each file
# gets extents of 64 blocks rather than one extent per block (a file has at most 262 extents
# until the extent tree). Asserts: both writes complete, both files hold exactly their bytes,
# their block counts are their data plus at most one extent block, and fsck is clean.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 96M --dim 16 --metric l2)
script=$(guest_script interleave.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mount_vexfs /dev/vda /mnt
MB=24
total=$((MB * 1024 * 1024))
out=$(faultops interleave /mnt/a /mnt/b $total 4096) || fail "interleaved appends: $out"
for f in a b; do
    [ "$(stat -c %s /mnt/$f)" = $total ] || fail "/mnt/$f is $(stat -c %s /mnt/$f) bytes, not $total"
done
# Contents, after the page cache is dropped: read back from disk.
sync
echo 3 > /proc/sys/vm/drop_caches
want_a=$(head -c $total /dev/zero | tr '\0' 'A' | md5sum | cut -d' ' -f1)
want_b=$(head -c $total /dev/zero | tr '\0' 'B' | md5sum | cut -d' ' -f1)
assert_eq "$(md5sum < /mnt/a | cut -d' ' -f1)" "$want_a" "contents of a"
assert_eq "$(md5sum < /mnt/b | cut -d' ' -f1)" "$want_b" "contents of b"
for f in a b; do
    blocks=$(stat -c %b /mnt/$f)
    [ "$blocks" -le $((total / 512 + 8)) ] || fail "/mnt/$f has $blocks sectors for $total bytes"
done
echo "two files of $MB MiB appended 4 KiB at a time in turn: $(stat -c %b /mnt/a) and $(stat -c %b /mnt/b) sectors"
must umount /mnt
GUEST
)
run_guest --disk "$img" --timeout 300 "$script"
check_fsck "$img"
echo "015-interleaved-writers: PASS"
