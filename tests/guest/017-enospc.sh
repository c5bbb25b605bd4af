#!/usr/bin/env bash
# Running out of inodes and of vector slots, and getting them back (issue 11, item 4; data
# blocks are 016's): on a filesystem of 128 inodes and 300 vector slots,
# 1. files are created until ENOSPC: exactly as many as statfs said were free, ffree then 0;
#    all removed, ffree back; as many created again; removed;
# 2. files get 10 embeddings each (vexctl set, rows of the sample) until ENOSPC: the count of
#    searchable vectors is the slot count; two files' embeddings removed and two files unlinked
#    (40 slots become tombstones); files given 10 embeddings again until ENOSPC: exactly 4 more
#    (a SET that finds no free slot purges the tombstones), the vectors searchable again equal
#    to the slot count, and a search for a new file's own vector finds it at distance 0;
# 3. umount, remount (the counts hold), statfs's inode and block counts equal fsck's, fsck.vexfs
#    -n clean in the guest and on the host.
. "$(dirname "$0")/lib.sh"

DATA="$VEXFS_ROOT/data/pydocs-minilm/small"
img=$(mkimg 64M --dim 384 --metric l2 --inodes 128 --vectors 300)
share=$(mktemp -d "$T/share.XXXXXX")
cp "$DATA/base.fvecs" "$share/"
script=$(guest_script enospc.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
B=/share/base.fvecs
ffree() { stat -f -c %d /mnt; }
vectors() { stats_num vectors; }
mount_vexfs /dev/vda /mnt
must mkdir /mnt/in /mnt/v

section "inodes"
free=$(ffree)
i=0
while out=$(faultops create /mnt/in/f$i); do i=$((i + 1)); done
assert_eq "$out" ENOSPC "the create past the last free inode"
assert_eq "$i $(ffree)" "$free 0" "files created, free inodes left"
must rm -r /mnt/in
must mkdir /mnt/in
assert_eq "$(ffree)" "$free" "free inodes after removing them"
j=0
while out=$(faultops create /mnt/in/f$j); do j=$((j + 1)); done
assert_eq "$out $j" "ENOSPC $free" "files created the second time"
must rm -r /mnt/in
echo "inodes: $free created, removed, $free created again"

section "vector slots"
# Ten chunks per file (rows 10i .. 10i+9): 300 slots are 30 files, within the 128 inodes.
set_file() { vexctl set /mnt/v/$1 --fvecs $B --rows $(($1 * 10))..$(($1 * 10 + 10)) 2>&1; }
i=0
while :; do
    : > /mnt/v/$i || fail "creating /mnt/v/$i"
    out=$(set_file $i) || break
    i=$((i + 1))
done
echo "$out" | grep -qi "no space" || fail "SET of file $i failed, but not with ENOSPC: $out"
slots=$((i * 10))
[ "$slots" -ge 280 ] || fail "only $slots embeddings set on 300 slots"
assert_eq "$(vectors)" "$slots" "searchable vectors when the slots are full"
must vexctl rm-embedding /mnt/v/0
must vexctl rm-embedding /mnt/v/1
must rm /mnt/v/2 /mnt/v/3 /mnt/v/$i
assert_eq "$(vectors)" "$((slots - 40))" "searchable vectors after 40 removals"
n=$i
while :; do
    : > /mnt/v/$n || fail "creating /mnt/v/$n"
    out=$(set_file $n) || break
    n=$((n + 1))
done
echo "$out" | grep -qi "no space" || fail "SET of file $n failed, but not with ENOSPC: $out"
assert_eq "$((n - i))" 4 "files given 10 embeddings each after 40 were removed"
assert_eq "$(vectors)" "$slots" "searchable vectors when the slots are full again"
last=$(((n - 1) * 10 + 9))
vexctl search /mnt --fvecs $B --row $last -k 1 --json > /tmp/hit.json || fail "searching row $last"
tr -d ' \n' < /tmp/hit.json > /tmp/hit1.json
grep -q "v/$((n - 1))\"" /tmp/hit1.json && grep -Eq '"distance":0(\.0)?[,}]' /tmp/hit1.json \
    || { cat /tmp/hit.json; fail "the search for row $last does not find /mnt/v/$((n - 1)) at distance 0"; }
echo "vector slots: $slots set, 40 freed, $(((n - i) * 10)) set again"

section "remount, fsck"
must umount /mnt
mount_vexfs /dev/vda /mnt
assert_eq "$(vectors)" "$slots" "searchable vectors after a remount"
# statfs's counts are fsck's: inodes and blocks, total and used.
st=$(stat -f -c '%c %d %b %f' /mnt)
must umount /mnt
out=$(fsck.vexfs -n /dev/vda) || fail "fsck.vexfs -n: $out"
set -- $st
assert_eq "$(echo "$out" | grep -o '[0-9]*/[0-9]* inodes, [0-9]*/[0-9]* blocks used')" \
    "$(($1 - $2))/$1 inodes, $(($3 - $4))/$3 blocks used" "statfs against fsck's counts"
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 600 "$script"
check_fsck "$img"
echo "017-enospc: PASS"
