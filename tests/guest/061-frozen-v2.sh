#!/usr/bin/env bash
# The frozen image of on-disk format v2 (tests/images/v2.img.gz) through the kernel. The image is
# a filesystem that crashed right after a commit: RECOVER set, a journal (version 2) holding
# committed transactions that were never checkpointed, pending vectors (the vector write-ahead
# log: some at home, some in the journal) and an orphan (an inode in use with no link).
#
# Before the boot, on the host: the journal facts as the manifest says (vexctl inspect --log:
# needs recovery, the transactions to replay), fsck.vexfs -n clean (it replays in memory and notes
# the orphan); on a copy replayed by fsck.vexfs -y, vexctl cat and search-image answer as the
# manifest says.
# In the guest: a read-only mount replays the journal (dmesg: the manifest's transactions and
# block images) and starts no index worker: the pending vectors stay pending and the recorded
# searches find them by the exact scan, every manifest item through the kernel as 060 checks
# v1's. Then a read-write mount frees the orphan (dmesg, the free inode count); after
# `vexctl wait-indexed` nothing is pending, every vector is searchable and every item, the same
# searches included (ef above the vector count: exact), reads the same; fsck.vexfs -n clean.
# After the boot, on the host: RECOVER clear, the journal clean, the orphan's inode free, fsck
# clean. The image is decompressed to a temporary copy; the committed file is never written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/frozen-lib.sh"

frozen_prepare 2

# ---- the host tools, before the boot ---------------------------------------------------------

txns=$(field journal transactions)
images_to_replay=$(field journal images)
reachable=$(grep '^path ' "$M" | cut -d' ' -f2 | sort -u | wc -l)
orphans=$(grep -c '^orphan ' "$M")
inode_count=$(field sb inode_count)
vectors=$(($(field hnsw live) + $(field hnsw pending)))

# jfield PATH: a field of `vexctl inspect --log --json` (PATH: keys joined by dots).
"$VEXCTL" inspect --log --json "$img" > "$T/log.json" || fail "vexctl inspect --log --json"
jfield() {
    python3 -c 'import functools, json, sys
print(functools.reduce(lambda d, k: d[k], sys.argv[2].split("."), json.load(open(sys.argv[1]))))' "$T/log.json" "$1"
}
[ "$(jfield journal.state)" = "needs recovery" ] || fail "the journal should need recovery: $(jfield journal.state)"
[ "$(jfield journal.version)" = "$(field journal version)" ] || fail "journal superblock version $(jfield journal.version)"
[ "$(jfield journal.head)" = "$(field journal head)" ] || fail "journal head $(jfield journal.head)"
[ "$(jfield journal.checkpoint_lsn)" = "$(field journal checkpoint_lsn)" ] || fail "journal checkpoint LSN"
[ "$(jfield journal.log.to_replay)" = "$txns" ] || fail "inspect --log: $(jfield journal.log.to_replay) transactions to replay, not $txns"
[ "$(ver feature_incompat)" = 1 ] || fail "the frozen image should have RECOVER set"
echo "journal: needs recovery, $txns transactions to replay (vexctl inspect --log)"

"$FSCK" -n "$img" > "$T/fsck-before.out" 2>&1 || { cat "$T/fsck-before.out"; fail "fsck.vexfs -n of the crashed image"; }
grep -q "$txns committed transaction(s), $images_to_replay block image(s) to replay" "$T/fsck-before.out" ||
    { cat "$T/fsck-before.out"; fail "fsck did not report the journal to replay"; }
[ "$(grep -c 'orphan (no link)' "$T/fsck-before.out")" = "$orphans" ] ||
    { cat "$T/fsck-before.out"; fail "fsck did not note the $orphans orphan(s)"; }
cp "$img" "$T/replayed.img"
"$FSCK" -y "$T/replayed.img" > "$T/fsck-y.out" 2>&1 || { cat "$T/fsck-y.out"; fail "fsck.vexfs -y (replay) of a copy"; }
frozen_host_tools "$T/replayed.img"
[ "$(ver feature_incompat)" = 1 ] || fail "the host tools wrote to the frozen image's copy"

# ---- the kernel ----------------------------------------------------------------------------------

cat > "$share/expect.env" <<EOF
TXNS=$txns
IMAGES=$images_to_replay
ORPHANS=$orphans
FREE_INODES=$((inode_count - reachable))
INODE_COUNT=$inode_count
VECTORS=$vectors
PENDING=$(field hnsw pending)
EOF
script=$(guest_script frozen-v2.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/frozen-check.sh
. /share/expect.env
section "read-only mount: the journal replayed, the vectors still pending"
# A read-only mount replays the journal (as ext4's does) but starts no index worker and frees
# no orphan: the pending vectors stay pending, and searches find them by the exact scan.
mount_vexfs /dev/vda /mnt ro
dmesg | grep "vexfs" | grep -E "journal replayed" | sed 's/^/    /'
dmesg | grep -q "journal replayed: $TXNS transactions, $IMAGES blocks" ||
    fail "the mount did not replay $TXNS transactions of $IMAGES blocks"
assert_eq "$(stats_num pending) $(stats_num vectors)" "$PENDING $VECTORS" "pending, searchable vectors (read-only)"
frozen_check
must umount /mnt

section "read-write mount: the orphan freed, the pending vectors linked"
mount_vexfs /dev/vda /mnt
dmesg | grep "vexfs" | grep -E "unlinked inode|pending vector" | sed 's/^/    /'
dmesg | grep -q "$ORPHANS unlinked inode(s) freed after the crash" || fail "the mount did not free the orphan"
assert_eq "$(stat -f -c '%c %d' /mnt)" "$INODE_COUNT $FREE_INODES" "inodes, free inodes (the orphan freed)"
must vexctl wait-indexed /mnt --timeout 60 -q
assert_eq "$(stats_num pending) $(stats_num vectors)" "0 $VECTORS" "pending, searchable vectors (indexed)"
# Every item again, the searches (ef above the vector count: exact) through the graph now.
frozen_check
must umount /mnt

section "fsck after the kernel"
must fsck.vexfs -n /dev/vda
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 300 "$script"
[ "$(ver feature_incompat)" = 0 ] || fail "RECOVER should be clear after a clean unmount"
[ "$(ver free_inodes)" = $((inode_count - reachable)) ] || fail "the orphan's inode is still in use after the mount"
"$VEXCTL" inspect --log --json "$img" > "$T/log.json" || fail "vexctl inspect --log --json"
[ "$(jfield journal.state)" = clean ] || fail "the journal is not clean after umount: $(jfield journal.state)"
check_fsck "$img"
echo "061-frozen-v2: PASS"
