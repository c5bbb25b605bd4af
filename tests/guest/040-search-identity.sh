#!/usr/bin/env bash
# The kernel's search is the core's search: on the same image (once the index worker has linked
# every pending vector), the search ioctl returns exactly
# the ids (and distances) that the userspace core computes (`vexctl search-image`), for every
# query; the answers are identical after a remount and after a reboot. Then 30% of the files are
# deleted (their embeddings leave the index, the graph is repaired, slots are freed and reused)
# and recall@10 on the remaining vectors stays >= 0.95. fsck.vexfs finds the image clean after
# each boot.
. "$(dirname "$0")/lib.sh"

data="$VEXFS_ROOT/data/pydocs-minilm/small"
# 2,100 slots: the re-import after the deletes only fits if freed slots are reused.
img=$(mkimg 128M --dim 384 --metric l2 --vectors 2100)

script=$(guest_script identity.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
Q=/share/query.fvecs
mount_vexfs /dev/vda /mnt
section "import"
must vexctl import --quiet /share/base.fvecs /mnt/docs
# The identity is the graph's: wait until the index worker has linked every pending vector.
must vexctl wait-indexed -q /mnt --timeout 1200
section "kernel search"
must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /tmp/kernel.json
assert_eq "$(wc -l < /tmp/kernel.json)" 100 "result lines"
must umount /mnt
mount_vexfs /dev/vda /mnt
must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /tmp/remount.json
cmp /tmp/kernel.json /tmp/remount.json || fail "answers changed after remount"
must umount /mnt
section "userspace core on the same image"
must vexctl search-image /dev/vda --fvecs $Q --all -k 10 --ef 64 --json > /tmp/user.json
cmp /tmp/kernel.json /tmp/user.json || fail "kernel and userspace core answers differ"
echo "kernel and userspace: identical answers for 100 queries"
mount_vexfs /dev/vda /mnt
must cp /tmp/kernel.json /mnt/kernel.json
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$data" --timeout 900 "$script"
check_fsck "$img"
"$VEXCTL" cat "$img" /kernel.json > "$T/kernel.json"

# Reboot: the same answers; then delete 30% and search again.
script2=$(guest_script reboot.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
Q=/share/query.fvecs
mount_vexfs /dev/vda /mnt
must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /tmp/reboot.json
cmp /mnt/kernel.json /tmp/reboot.json || fail "answers changed after reboot"
echo "same answers after reboot"
section "delete 30%"
i=0
while [ $i -lt 2000 ]; do
    [ $((i % 10)) -lt 3 ] && rm /mnt/docs/$i
    i=$((i + 1))
done
vexctl stats /mnt
assert_eq "$(stats_num vectors)" 1400 "vectors left"
must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /mnt/after-delete.json
section "reuse freed slots"
must mv /mnt/after-delete.json /mnt/after-delete.keep
must vexctl import --quiet /share/base.fvecs /mnt/docs
must vexctl wait-indexed -q /mnt --timeout 1200
assert_eq "$(stats_num vectors)" 2000 "vectors after re-import"
must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /tmp/reimport.json
must mv /mnt/after-delete.keep /mnt/after-delete.json
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$data" --timeout 1200 "$script2"
check_fsck "$img"
"$VEXCTL" cat "$img" /after-delete.json > "$T/after.json"

# Recall@10 over the remaining vectors, against brute force computed here on the host.
python3 - "$data" "$T/after.json" <<'PY' || fail "recall after deleting 30%"
import json, struct, sys
data, path = sys.argv[1], sys.argv[2]
def fvecs(p):
    raw = open(p, "rb").read(); d = struct.unpack_from("<i", raw)[0]; n = len(raw) // (4 + 4 * d)
    return [struct.unpack_from(f"<{d}f", raw, i * (4 + 4 * d) + 4) for i in range(n)]
base, queries = fvecs(f"{data}/base.fvecs"), fvecs(f"{data}/query.fvecs")
live = [i for i in range(len(base)) if i % 10 >= 3]
res = [json.loads(l) for l in open(path)]
hits = 0
for r in res:
    q = queries[r["query"]]
    truth = sorted(live, key=lambda i: sum((a - b) ** 2 for a, b in zip(q, base[i])))[:10]
    got = [int(h["path"].rsplit("/", 1)[1]) for h in r["results"]]
    assert all(g % 10 >= 3 for g in got), "a deleted file was returned"
    hits += len(set(truth) & set(got))
recall = hits / (10 * len(res))
print(f"recall@10 after deleting 30%: {recall:.4f}")
sys.exit(0 if recall >= 0.95 else 1)
PY
echo "040-search-identity: PASS"
