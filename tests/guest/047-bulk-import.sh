#!/usr/bin/env bash
# Bulk loading (`mkfs.vexfs --import`, image/src/bulk.rs): the repo's pydocs sample (2,000
# passages, dim 384, l2) imported on the host into a new image, with its passages, into /docs,
# synced every 300 rows, linked on 2 threads (-j 2: past the first 1,024, the vectors are planned
# in batches, image/src/writer.rs index_pending_parallel). fsck.vexfs finds it clean and file i holds passage i exactly (25 files
# checked on the host). In the guest the kernel mounts it with every vector linked (2,000
# vectors, 0 pending: nothing left for the index worker); the kernel's answers to the 100
# queries are, byte for byte, those of the userspace core on the same image (`vexctl
# search-image`, run first on the unmounted disk); each of 20 base rows (picked by the seed)
# finds its own file at distance 0; and `vexctl import` of the same rows skips all 2,000 (the
# files are the ones it makes itself; only the vector slots follow mkfs's locality order).
. "$(dirname "$0")/lib.sh"

data="$VEXFS_ROOT/data/pydocs-minilm/small"
img=$(mkimg 96M --import "$data/base.fvecs" --texts "$data/passages.jsonl" --import-dir docs \
    --metric l2 --batch 300 -j 2)
check_fsck "$img"
# File i holds passage i, exactly (rows at both ends of a batch, and 20 picked by the seed).
rows="0 1 299 300 1999"
for i in $(seq 0 19); do rows="$rows $(( (SEED + i * 97) % 2000 ))"; done
for r in $rows; do
    "$VEXCTL" cat "$img" "/docs/$r" > "$T/file"
    python3 -c '
import json, sys
want = json.loads(open(sys.argv[1], encoding="utf-8").readlines()[int(sys.argv[2])])["text"]
sys.exit(open(sys.argv[3], encoding="utf-8").read() != want)' "$data/passages.jsonl" "$r" "$T/file" \
        || fail "/docs/$r does not hold passage $r"
done
echo "25 files hold their passages"

script=$(guest_script bulk.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
SEED=$1
Q=/share/query.fvecs
section "userspace core on the unmounted image"
must vexctl search-image /dev/vda --fvecs $Q --all -k 10 --ef 64 --json > /tmp/user.json
assert_eq "$(wc -l < /tmp/user.json)" 100 "result lines of search-image"

section "mount: everything linked"
mount_vexfs /dev/vda /mnt
vexctl stats /mnt --json > /tmp/stats.json || fail "vexctl stats --json"
cat /tmp/stats.json
assert_eq "$(json_num vectors /tmp/stats.json)" 2000 "vectors"
assert_eq "$(json_num pending /tmp/stats.json)" 0 "pending vectors"
assert_eq "$(ls /mnt/docs | wc -l)" 2000 "files in /mnt/docs"

section "kernel search = userspace core"
must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /tmp/kernel.json
cmp /tmp/kernel.json /tmp/user.json || fail "kernel and userspace answers differ"
echo "kernel and userspace: identical answers for 100 queries"

section "every row finds its own file"
i=0
while [ $i -lt 20 ]; do
    r=$(( (SEED + i * 97) % 2000 ))
    vexctl search /mnt --fvecs /share/base.fvecs --row $r -k 1 --json > /tmp/self.json \
        || fail "search for row $r"
    grep -q "\"path\":\"docs/$r\",\"ino\":[0-9]*,\"chunk\":0,\"distance\":0.0}" /tmp/self.json \
        || fail "row $r: $(cat /tmp/self.json)"
    i=$((i + 1))
done
echo "20 rows found their own files at distance 0"

section "vexctl import finds its own layout"
out=$(vexctl import /share/base.fvecs /mnt/docs --texts /share/passages.jsonl --quiet) \
    || fail "vexctl import"
echo "$out"
case "$out" in
    "imported 0 rows into /mnt/docs, skipped 2000 "*) ;;
    *) fail "vexctl import did not skip every row: $out" ;;
esac
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$data" --timeout 900 "$script" "$SEED"
check_fsck "$img"
echo "047-bulk-import: PASS"
