#!/usr/bin/env bash
# fallocate (issue 11 item 1) and O_DIRECT (item 3) against ext4 in the same guest: the same sequence on an ext4 disk
# and a vexfs disk, and after every step the same size and the same bytes (md5) on both:
# a 40 KiB file; PUNCH_HOLE|KEEP_SIZE across partial blocks (edges zeroed, whole blocks
# unmapped: vexfs's block count drops by them); ZERO_RANGE|KEEP_SIZE past the end (the size
# stays); mode 0 past the end (the size grows, the new range reads as zeros); KEEP_SIZE over
# the whole file (holes filled, the size stays); a write into a punched hole; ZERO_RANGE
# across blocks. Then a sparse file of 600 one-block extents (an extent tree) punched through
# its middle in one call (many journal handles: an extent each), and a punch that splits an
# extent. O_DIRECT writes and reads, mixed with buffered writes (vexfs serves O_DIRECT through
# the page cache, written back before a direct write returns). All again after a remount.
# vexfs refuses COLLAPSE_RANGE (EOPNOTSUPP). fsck.vexfs -n
# clean in the guest and on the host. KEEP_SIZE past the end preallocates on both (vexfs:
# zeroed blocks past the size under the inode's eofblocks flag, feature EOFBLOCKS): sizes,
# bytes and block counts equal ext4's through writes into the preallocation, truncates that
# grow (keep it) and to the size (free it), and a remount; the host's fsck reads the flagged
# file left preallocated.
. "$(dirname "$0")/lib.sh"

command -v mkfs.ext4 > /dev/null || fail "mkfs.ext4 missing: install e2fsprogs (scripts/setup deps)"
ext4=$(mkraw 64M)
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$ext4" || fail "mkfs.ext4 failed"
vex=$(mkimg 64M --dim 8 --metric l2)
script=$(guest_script fallocate.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
mkdir -p /mnt/ext4 /mnt/vexfs
must mount -t ext4 /dev/vda /mnt/ext4
mount_vexfs /dev/vdb /mnt/vexfs
# both OP...: faultops OP... on each filesystem (paths relative to its mount), same output.
both() {
    a=$(cd /mnt/ext4 && faultops "$@")
    b=$(cd /mnt/vexfs && faultops "$@")
    [ "$a" = "$b" ] || fail "faultops $*: ext4 '$a', vexfs '$b'"
}
# same FILE STEP: the same size and contents on both.
same() {
    a="$(stat -c %s /mnt/ext4/$1) $(md5sum < /mnt/ext4/$1)"
    b="$(stat -c %s /mnt/vexfs/$1) $(md5sum < /mnt/vexfs/$1)"
    [ "$a" = "$b" ] || fail "$2: $1 is '$a' on ext4, '$b' on vexfs"
    echo "$2: $1 $a"
}
sectors() { stat -c %b /mnt/vexfs/$1; }

section "one file, step by step"
both write f 0 40960 65
same f "written"
before=$(sectors f)
both fallocate f punch 5000 15000
same f "punch 5000..20000"
assert_eq "$(sectors f)" "$((before - 16))" "vexfs sectors after punching blocks 2 and 3"
both fallocate f zero-keep 30000 20000
same f "zero-keep 30000..50000"
both fallocate f alloc 60000 10000
same f "alloc 60000..70000"
both fallocate f keep 0 100000
same f "keep 0..100000"
both write f 8192 100 66
same f "write into the punched hole"
both fallocate f zero 4000 9000
same f "zero 4000..13000"
out=$(cd /mnt/vexfs && faultops fallocate f collapse 4096 4096) && fail "COLLAPSE_RANGE succeeded on vexfs"
assert_eq "$out" EOPNOTSUPP "COLLAPSE_RANGE on vexfs"

section "KEEP_SIZE past the end of file: a preallocation"
# 10000 bytes (blocks 0..2), then blocks 2..11 preallocated past the size (9 new ones): the
# size stays, both filesystems own 12 blocks (ext4 as unwritten extents, vexfs as zeroed
# blocks under the inode's eofblocks flag); a write into them reads back with zeros before
# it; a truncate that grows the file keeps them; one to the size frees what lies past it.
bsect() {
    a=$(stat -c %b /mnt/ext4/$1) b=$(stat -c %b /mnt/vexfs/$1)
    [ "$a" = "$b" ] && [ "$b" = "$2" ] || fail "$3: $1 has $a sectors on ext4, $b on vexfs, want $2"
}
both write p 0 10000 71
both fsync p
both fallocate p keep 8192 40960
same p "keep 8192..49152"
bsect p 96 "12 blocks after KEEP_SIZE past the end"
both write p 20000 2000 72
both fsync p
same p "written into the preallocation"
bsect p 96 "a write into preallocated blocks allocates nothing"
both truncate p 30000
same p "grown by truncate"
bsect p 96 "a truncate that grows keeps the preallocation"
both fallocate q keep 0 1048576
same q "1 MiB preallocated in an empty file"
bsect q 2048 "an empty file's preallocation"
both write q 0 5000 73
both fsync q
same q "5000 bytes written over it"
bsect q 2048 "the preallocation after a write"
dmesg | grep -q "incompat feature 0x4 set" || fail "vexfs did not set the eofblocks feature"

section "mode 0 over holes inside the file: the size never drops"
# A 4 MiB file that is one hole, then fallocate 0..8 MiB (2,048 blocks, a handle each): the
# size grows over the blocks past its end, and must never go below 4 MiB meanwhile (a reader
# polls it) nor end anywhere but at 8 MiB.
must truncate -s 4194304 /mnt/vexfs/holes
( cd /mnt/vexfs && faultops fallocate holes alloc 0 8388608 > /tmp/falloc.out ) &
falloc=$!
low=none polls=0
while kill -0 $falloc 2> /dev/null; do
    sz=$(stat -c %s /mnt/vexfs/holes)
    [ "$sz" -ge 4194304 ] || low=$sz
    polls=$((polls + 1))
done
wait $falloc || fail "fallocate holes: $(cat /tmp/falloc.out)"
[ "$low" = none ] || fail "the size of /mnt/vexfs/holes went down to $low during fallocate"
assert_eq "$(stat -c '%s %b' /mnt/vexfs/holes)" "8388608 16384" "holes after fallocate 0..8 MiB"
echo "holes: the size stayed at 4 MiB or more over $polls polls, 8 MiB and 2,048 blocks after"
must rm /mnt/vexfs/holes

section "a tree punched through its middle"
both fill-n 600 2 s
same s "600 one-block extents"
both fallocate s punch 400000 3000000
same s "punch 400000..3400000"
both write g 0 409600 67
both fallocate g punch 102400 8192
same g "a split extent"

section "O_DIRECT"
both direct-write d 0 16384 68
same d "written with O_DIRECT"
both write d 4096 100 69
# A direct read sees the buffered write before it.
both direct-read d 0 16384
both direct-write d 8192 4096 70
both direct-read d 4096 8192
same d "O_DIRECT over buffered data"

section "after a remount"
must umount /mnt/vexfs
mount_vexfs /dev/vdb /mnt/vexfs
for x in f s g d p q; do same $x "remounted"; done
bsect p 96 "the preallocation after a remount"
both truncate p 30000
same p "truncated to its size"
bsect p 64 "a truncate to the size frees the preallocation past it"
both truncate q 0
bsect q 0 "a truncate to 0"
both fallocate q keep 0 65536
must umount /mnt/vexfs
must umount /mnt/ext4
must fsck.vexfs -n /dev/vdb
GUEST
)
run_guest --disk "$ext4" --disk "$vex" --timeout 300 "$script"
check_fsck "$vex"
echo "019-fallocate: PASS"
