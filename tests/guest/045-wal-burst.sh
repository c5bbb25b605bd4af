#!/usr/bin/env bash
# The vector write-ahead log (issue 7): a burst of SETs is acknowledged before the index worker
# has linked the vectors into the HNSW graph, and a search issued right after the burst already
# finds them. In the guest: import the pydocs sample (2,000 SETs, one vector each), then at once,
# while vectors are still pending (the test fails if the worker caught up first: nothing would
# be shown), search for the last 200 imported vectors themselves (each must find its own file
# first) and run the 100 queries; wait for the worker (`vexctl wait-indexed`), run the queries
# again. On the host: recall@10 right after the burst is no lower than after the catch-up, and
# at least 0.95; the graph-only answers are not a prefix trick (pending 0 at the second run);
# fsck.vexfs is clean, and a remount finds nothing pending.
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
pending() { vexctl stats /mnt --json | tr -d ' \n' | grep -o '"pending":[0-9]*' | cut -d: -f2; }
mount_vexfs /dev/vda /mnt
section "burst: 2000 SETs through the write-ahead log"
must vexctl import --quiet /share/base.fvecs /mnt/docs
p0=$(pending)
echo "pending right after the burst: $p0"
section "searches while the worker catches up"
must vexctl search /mnt --fvecs /share/tail.fvecs --all -k 1 --json > /tmp/self.json
must vexctl search /mnt --fvecs /share/query.fvecs --all -k 10 --ef 64 --json > /tmp/burst.json
p1=$(pending)
echo "pending after the searches: $p1"
[ "$p1" -gt 0 ] || fail "the worker linked every vector before the searches ended: nothing pending was searched"
section "catch-up"
must vexctl wait-indexed -q /mnt --timeout 1200
assert_eq "$(pending)" 0 "pending after wait-indexed"
must vexctl search /mnt --fvecs /share/query.fvecs --all -k 10 --ef 64 --json > /tmp/indexed.json
must cp /tmp/self.json /tmp/burst.json /tmp/indexed.json /mnt/
printf '%s %s\n' "$p0" "$p1" > /mnt/pending.txt
must umount /mnt
mount_vexfs /dev/vda /mnt
assert_eq "$(pending)" 0 "pending after a remount"
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 1800 "$script"
check_fsck "$img"
for f in self burst indexed; do
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
print(f"pending after the burst {p0}, after the searches {p1}")
print(f"last 200 acknowledged vectors found first by a search for themselves: {200 - len(lost)}/200")
print(f"recall@10 (ef 64) right after the burst: {burst:.4f}; after the catch-up: {indexed:.4f}")
ok = not lost and burst >= indexed and burst >= 0.95
sys.exit(0 if ok else 1)
PY
echo "045-wal-burst: PASS"
