#!/usr/bin/env bash
# `vexctl log PATH` on a mounted vexfs (issue 7 item 5): the device is found from the path (a
# directory, a file, a bind mount of a subdirectory); while mounted read-write the journal needs
# recovery and the superblock has RECOVER; an fsync adds committed transactions to the log (text
# and --json agree); --sync commits the running transaction first; other filesystems are refused;
# after umount `vexctl log` refuses the directory and `vexctl inspect --log` of the device finds
# the journal clean with nothing to replay.
. "$(dirname "$0")/lib.sh"

img=$(mkimg 32M --dim 16 --metric l2)
script=$(guest_script log.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
# json_num KEY: the first numeric value of "KEY" in the JSON on stdin.
json_num() { tr ',{}' '\n\n\n' | grep -m1 "\"$1\":" | cut -d: -f2 | tr -dc '0-9'; }
# has TEXT PATTERN MSG: grep -q PATTERN in TEXT, else fail showing TEXT.
has() { echo "$1" | grep -q -- "$2" || { echo "$1"; fail "$3: no '$2'"; }; }

section "freshly mounted"
mount_vexfs /dev/vda /mnt
out=$(vexctl log /mnt) || fail "vexctl log /mnt: $out"
echo "$out"
has "$out" "^Mount: */mnt (read-write), vexfs on /dev/vda ([0-9]*:[0-9]*)$" "mount line"
has "$out" "^Read from: .*page cache" "read-from line"
has "$out" "^State: .*RECOVER" "RECOVER while mounted"
has "$out" "^Journal: *needs recovery, next lsn" "journal state while mounted"
has "$out" "^Transactions: " "transactions line"
has "$out" "^Torn tail: " "torn tail line"
j=$(vexctl log --json /mnt) || fail "vexctl log --json /mnt: $j"
has "$j" '"device": "/dev/vda"' "json device"
has "$j" '"read_only": false' "json read_only"
has "$j" '"recover": true' "json recover"
has "$j" '"state": "needs recovery"' "json journal state"
before=$(echo "$j" | json_num to_replay)
[ -n "$before" ] || fail "no to_replay in: $j"

section "after writes and an fsync"
mkdir /mnt/d || fail "mkdir"
i=0
while [ $i -lt 8 ]; do
    echo "file $i" > /mnt/d/f$i || fail "write f$i"
    i=$((i + 1))
done
sync /mnt/d/f7 || fail "fsync /mnt/d/f7"
out=$(vexctl log /mnt/d/f3) || fail "vexctl log /mnt/d/f3: $out"
echo "$out"
has "$out" "vexfs on /dev/vda (" "the device from a file's path"
has "$out" "^  lsn [0-9]*\.\.[0-9]*: [0-9]* image(s), commit in record block [0-9]*; home blocks " \
    "a committed transaction listed"
j=$(vexctl log --json /mnt/d) || fail "vexctl log --json /mnt/d: $j"
after=$(echo "$j" | json_num to_replay)
[ "$after" -gt "$before" ] || fail "to_replay after an fsync: $after, before: $before"
has "$out" "^Transactions: *$after committed from head, $after to replay" "text and json agree"
used=$(echo "$j" | json_num used_blocks)
[ "$used" -gt 0 ] || fail "no used log blocks after an fsync: $j"

section "--sync commits the running transaction"
echo late > /mnt/d/late || fail "write late"
j=$(vexctl log --sync --json /mnt) || fail "vexctl log --sync: $j"
has "$j" '"synced": true' "json synced"
synced=$(echo "$j" | json_num to_replay)
[ "$synced" -gt "$after" ] || fail "to_replay after --sync: $synced, before: $after"

section "a bind mount of a subdirectory"
mkdir -p /tmp/b && mount --bind /mnt/d /tmp/b || fail "bind mount"
out=$(vexctl log /tmp/b/late) || fail "vexctl log /tmp/b/late: $out"
has "$out" "^Mount: */tmp/b (read-write), vexfs on /dev/vda (" "the bind mount's line"
must umount /tmp/b

section "other filesystems"
if out=$(vexctl log /tmp 2>&1); then fail "vexctl log /tmp succeeded: $out"; fi
has "$out" "is not on a vexfs mount" "vexctl log /tmp"

section "after umount"
must umount /mnt
if out=$(vexctl log /mnt 2>&1); then fail "vexctl log /mnt after umount succeeded: $out"; fi
has "$out" "/mnt is not on a vexfs mount" "vexctl log after umount"
out=$(vexctl inspect --log /dev/vda) || fail "vexctl inspect --log /dev/vda: $out"
echo "$out"
has "$out" "^State: *clean" "superblock clean after umount"
has "$out" "^Journal: *clean," "journal clean after umount"
has "$out" "^Transactions: .* 0 to replay (clean: recovery reads nothing)" "nothing to replay"
echo "076: vexctl log ok ($before, $after, $synced transactions to replay at the three reads)"
GUEST
)
run_guest --disk "$img" --timeout 180 "$script"
check_fsck "$img"
