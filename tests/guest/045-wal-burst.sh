#!/usr/bin/env bash
# The vector write-ahead log (issue 7): a burst of SETs is acknowledged before the index worker
# has linked the vectors into the HNSW graph, and a search issued right after the burst already
# finds them. In the guest: import the pydocs sample (2,000 SETs, one vector each), unmount at
# once and mount read-only (no worker runs there: at least 1,000 must still be pending, else the
# test fails), search for the last 200 imported vectors themselves (each must find its own file
# first) and run the 100 queries; mount read-write, wait for the worker (`vexctl wait-indexed`),
# run the queries again. On the host: recall@10 right after the burst is no lower than after the catch-up, and
# at least 0.95. Then every third file is removed: the tombstones are left to the worker, which
# purges them in steps (the stats' deleted count falls to 0) and searches return no removed
# file. fsck.vexfs is clean, and a remount finds nothing pending.
. "$(dirname "$0")/lib.sh"

data="$VEXFS_ROOT/data/pydocs-minilm/small"
img=$(mkimg 128M --dim 384 --metric l2 --vectors 2100)
share="$T/share"
mkdir -p "$share"
cp "$data/base.fvecs" "$data/query.fvecs" "$share/"
# The last 200 rows of base.fvecs (rows 1800..1999): the vectors imported last.
python3 - "$data/base.fvecs" "$share/tail.fvecs" <<'PY' || fail "making tail.fvecs"
import struct, sys
raw = open(sys.argv[1], "rb").read(); d = struct.unpack_from("<i", raw)[0]; row = 4 + 4 * d
open(sys.argv[2], "wb").write(raw[1800 * row:2000 * row])
PY

script=$(guest_script burst.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
pending() { stats_num pending; }
mount_vexfs /dev/vda /mnt
section "burst: 2000 SETs through the write-ahead log"
must vexctl import --quiet /share/base.fvecs /mnt/docs
p0=$(pending)
echo "pending right after the burst: $p0"
# The worker starts 1 s after the last SET; a loaded machine may let it link everything while the
# searches run. A read-only mount runs no worker: the acknowledged vectors stay pending there, so
# the searches below see the burst exactly as it was acknowledged, whatever the machine's pace.
must umount /mnt
must mount -t vexfs -o ro /dev/vda /mnt
p1=$(pending)
echo "pending on the read-only mount: $p1"
[ "$p1" -ge 1000 ] || fail "only $p1 of the 2000 acknowledged vectors were pending at the unmount"
section "searches before the worker links them"
must vexctl search /mnt --fvecs /share/tail.fvecs --all -k 1 --json > /tmp/self.json
must vexctl search /mnt --fvecs /share/query.fvecs --all -k 10 --ef 64 --json > /tmp/burst.json
assert_eq "$(pending)" "$p1" "pending after the searches on the read-only mount"
must umount /mnt
mount_vexfs /dev/vda /mnt
section "catch-up"
must vexctl wait-indexed -q /mnt --timeout 1200
assert_eq "$(pending)" 0 "pending after wait-indexed"
must vexctl search /mnt --fvecs /share/query.fvecs --all -k 10 --ef 64 --json > /tmp/indexed.json
section "removals: the worker purges the tombstones in steps"
deleted() { stats_num deleted; }
i=0
while [ $i -lt 2000 ]; do
    [ $((i % 3)) -eq 0 ] && rm /mnt/docs/$i
    i=$((i + 1))
done
d0=$(deleted)
echo "tombstones after removing every third file: $d0"
[ "$d0" -gt 0 ] || fail "no tombstone left to purge: the removals purged inline"
n=0
while [ "$(deleted)" -gt 0 ]; do
    n=$((n + 1))
    [ $n -lt 600 ] || fail "the worker did not purge the tombstones within 60 s ($(deleted) left)"
    sleep 0.1
done
echo "purged by the worker in about $((n / 10)) s"
must vexctl search /mnt --fvecs /share/query.fvecs --all -k 10 --ef 64 --json > /tmp/purged.json
must cp /tmp/self.json /tmp/burst.json /tmp/indexed.json /tmp/purged.json /mnt/
printf '%s %s\n' "$p0" "$p1" > /mnt/pending.txt
must umount /mnt
mount_vexfs /dev/vda /mnt
assert_eq "$(pending)" 0 "pending after a remount"
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 1800 "$script"
check_fsck "$img"
for f in self burst indexed purged; do
    "$VEXCTL" cat "$img" "/$f.json" > "$T/$f.json" || fail "reading /$f.json from the image"
done
"$VEXCTL" cat "$img" /pending.txt > "$T/pending.txt" || fail "reading /pending.txt"

python3 - "$data" "$T" <<'PY' || fail "recall right after the burst"
import json, struct, sys
data, t = sys.argv[1], sys.argv[2]
def ivecs(p):
    raw = open(p, "rb").read(); d = struct.unpack_from("<i", raw)[0]; n = len(raw) // (4 + 4 * d)
    return [struct.unpack_from(f"<{d}i", raw, i * (4 + 4 * d) + 4) for i in range(n)]
gt = ivecs(f"{data}/groundtruth.ivecs")
def ids(r):
    return [int(h["path"].rsplit("/", 1)[1]) for h in r["results"]]
def recall(path):
    res = [json.loads(l) for l in open(path)]
    assert len(res) == 100, f"{path}: {len(res)} answers"
    return sum(len(set(gt[r["query"]][:10]) & set(ids(r))) for r in res) / (10 * len(res))
selfres = [json.loads(l) for l in open(f"{t}/self.json")]
lost = [r["query"] for r in selfres if ids(r)[:1] != [1800 + r["query"]]]
p0, p1 = open(f"{t}/pending.txt").read().split()
burst, indexed = recall(f"{t}/burst.json"), recall(f"{t}/indexed.json")
print(f"pending after the burst {p0}, on the read-only mount where the searches ran {p1}")
print(f"last 200 acknowledged vectors found first by a search for themselves: {200 - len(lost)}/200")
print(f"recall@10 (ef 64) right after the burst: {burst:.4f}; after the catch-up: {indexed:.4f}")
purged = [json.loads(l) for l in open(f"{t}/purged.json")]
back = [i for r in purged for i in ids(r) if i % 3 == 0]
print(f"after the purge: {sum(len(r['results']) for r in purged)} results, {len(back)} of removed files")
ok = not lost and burst >= indexed and burst >= 0.95 and not back and all(len(r["results"]) == 10 for r in purged)
sys.exit(0 if ok else 1)
PY
echo "045-wal-burst: PASS"
