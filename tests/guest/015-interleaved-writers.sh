#!/usr/bin/env bash
# Files growing at once (issue 11: "two files written at once fail with EFBIG at 1 MiB"): two
# files appended 4 KiB at a time in turn, 24 MiB each, as two downloads would. The allocator
# places a file's next block after its last one, and a file whose next block is taken starts a
# new run in a wholly free, aligned run of 64 blocks (kmod/sb.rs alloc_file_data), so each file
# gets extents of 64 blocks rather than one extent per block (a file has at most 262 extents
# until the extent tree). Asserts: both writes complete, both files hold exactly their bytes,
# their block counts are their data plus at most one extent block, and fsck is clean.
# Then the same with 1 MiB appends (a buffered write maps its blocks past the end of file in
# runs, glue.c vexfs_buffered_write), four processes appending 1 MiB at a time at once, and
# short writes (the source buffer ends early: the kernel copies part and stops): the size is
# what was copied, the blocks mapped for the rest are freed (block counts, fsck), the bytes read
# back are the ones written.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 224M --dim 16 --metric l2)
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
rm -f /mnt/a /mnt/b

# 1 MiB appends in turn (each a run of blocks mapped at once), then four writers at once.
out=$(faultops interleave /mnt/c /mnt/d $total 1048576) || fail "interleaved 1 MiB appends: $out"
pids=""
for w in 1 2 3 4; do
    (faultops write /mnt/p$w 0 0 > /dev/null
     for i in $(seq 0 15); do
         faultops write /mnt/p$w $((i * 1048576)) 1048576 $((0x60 + w)) > /dev/null || exit 1
     done) &
    pids="$pids $!"
done
for p in $pids; do
    wait "$p" || fail "a parallel writer failed"
done
sync
echo 3 > /proc/sys/vm/drop_caches
assert_eq "$(md5sum < /mnt/c | cut -d' ' -f1)" "$want_a" "contents of c"
assert_eq "$(md5sum < /mnt/d | cut -d' ' -f1)" "$want_b" "contents of d"
for w in 1 2 3 4; do
    c=$(printf "\\$(printf %o $((0x60 + w)))")
    want=$(head -c 16777216 /dev/zero | tr '\0' "$c" | md5sum | cut -d' ' -f1)
    assert_eq "$(stat -c %s /mnt/p$w)" 16777216 "size of p$w"
    assert_eq "$(md5sum < /mnt/p$w | cut -d' ' -f1)" "$want" "contents of p$w"
    blocks=$(stat -c %b /mnt/p$w)
    [ "$blocks" -le $((16777216 / 512 + 8)) ] || fail "/mnt/p$w has $blocks sectors for 16 MiB"
done
echo "1 MiB appends: c, d $(stat -c %b /mnt/c) $(stat -c %b /mnt/d) sectors; 4 writers at once: $(stat -c %b /mnt/p1 /mnt/p2 /mnt/p3 /mnt/p4 | tr '\n' ' ')sectors"

# Short writes: 1 MiB asked, 256 KiB readable; into an empty file, then appended at an
# unaligned end (its last block partly written), then past the end (a hole before).
out=$(faultops write-short /mnt/s 0 1048576 262144) || fail "short write: $out"
assert_eq "$(echo "$out" | head -1)" "wrote 262144" "short write into an empty file"
must faultops write /mnt/s 262144 100 > /dev/null
out=$(faultops write-short /mnt/s 262244 1048576 65536) || fail "short write: $out"
assert_eq "$(echo "$out" | head -1)" "wrote 65536" "short write at an unaligned end"
out=$(faultops write-short /mnt/s 2097152 1048576 4096) || fail "short write: $out"
assert_eq "$(echo "$out" | head -1)" "wrote 4096" "short write past the end"
assert_eq "$(stat -c %s /mnt/s)" $((2097152 + 4096)) "size after the short writes"
# Mapped: 64 + 17 blocks written from 0, and the one past the hole.
assert_eq "$(stat -c %b /mnt/s)" $(((64 + 17 + 1) * 8)) "sectors after the short writes"
sync
echo 3 > /proc/sys/vm/drop_caches
want=$( (head -c $((262144 + 100 + 65536)) /dev/zero | tr '\0' 'Z'
         head -c $((2097152 - 262244 - 65536)) /dev/zero
         head -c 4096 /dev/zero | tr '\0' 'Z') | md5sum | cut -d' ' -f1)
assert_eq "$(md5sum < /mnt/s | cut -d' ' -f1)" "$want" "contents after the short writes"
must umount /mnt
GUEST
)
run_guest --disk "$img" --timeout 600 "$script"
check_fsck "$img"
echo "015-interleaved-writers: PASS"
