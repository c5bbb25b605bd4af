#!/usr/bin/env bash
# A frozen v3 image with vector codes through the kernel, sourced by 065-frozen-v3-sq8.sh
# (FROZEN=3-sq8: an SQ8 code of every vector, tombstones included) and 067-frozen-v3-pq.sh
# (FROZEN=3-pq: a PQ codebook of 4 sub-quantisers, then a 4-byte code of every vector) and
# 068-frozen-v3-pq-records.sh (FROZEN=3-pq-records: the same in node records), with
# FEATURES (the expected feature_incompat), CODES (its name) and FIELD (a line of `vexctl
# inspect --json` that must stay). Before the boot, the host tools read the image as the
# manifest says (fsck.vexfs -n, which checks every code, and with PQ the codebook; vexctl cat;
# vexctl search-image, walked on the codes). In the guest, every manifest item reads the same
# through the kernel (frozen_check: stat, contents, embeddings, stats and the recorded
# searches, exact). Then the kernel replaces /b.txt's embedding with two new vectors (one
# recorded query and a variant of the other, linked at once: their codes written by the
# kernel) and each finds /b.txt at distance 0; the kernel's answers to the queries equal
# vexctl search-image's on the unmounted disk; fsck.vexfs -n is clean in the guest and on the
# host after (the kernel's codes are the tools' encoding), the feature and FIELD unchanged.
# The image is decompressed to a temporary copy; the committed file is never written.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/frozen-lib.sh"

frozen_prepare "$FROZEN"

frozen_host_tools "$img"
[ "$(ver format_version)" = 3 ] || fail "the frozen image should be format v3"
[ "$(ver feature_incompat)" = "$FEATURES" ] || fail "the frozen image should have DIR_INDEX and $CODES ($FEATURES)"
python3 - "$share/queries.fvecs" "$share/new.fvecs" <<'PY'
import struct, sys
raw = open(sys.argv[1], "rb").read()
d = struct.unpack_from("<i", raw)[0]
n = len(raw) // (4 + 4 * d)
rows = [list(struct.unpack_from("<%df" % d, raw, i * (4 + 4 * d) + 4)) for i in range(n)]
q0 = rows[0][:]
q0[-1] = q0[-1] + 0.5
with open(sys.argv[2], "wb") as f:
    for r in (rows[1], q0):
        f.write(struct.pack("<i%df" % d, d, *r))
PY

script=$(guest_script "frozen-v$FROZEN.guest" <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/frozen-check.sh
Q=/share/queries.fvecs
mount_vexfs /dev/vda /mnt
frozen_check

section "the kernel stores vectors and their codes"
# Row 0: query 1 (query 0 is /dir/c.bin's chunk 4); row 1: query 0 with its last component
# changed (no tie with a vector of the image). With PQ neither is in the codebook: their
# codes are the kernel's nearest centroids.
must vexctl set /mnt/b.txt --fvecs /share/new.fvecs --rows 0..2 --index-now
for r in 0 1; do
    vexctl search /mnt --fvecs /share/new.fvecs --row $r -k 1 --json > /tmp/self.json || fail "search for row $r"
    grep -q '"path":"b.txt","ino":[0-9]*,"chunk":'$r',"distance":0.0}' /tmp/self.json \
        || fail "row $r: $(cat /tmp/self.json)"
done
echo "the new vectors find /b.txt at distance 0"
must vexctl search /mnt --fvecs $Q --all -k 5 --ef 64 --json > /tmp/kernel.json
must umount /mnt
must vexctl search-image /dev/vda --fvecs $Q --all -k 5 --ef 64 --json > /tmp/user.json
cmp /tmp/kernel.json /tmp/user.json || fail "kernel and userspace answers differ"
echo "kernel and userspace: identical answers"
fsck.vexfs -n /dev/vda > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "fsck.vexfs -n after the writes"; }
echo "fsck clean after the writes"
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 300 "$script"
[ "$(ver feature_incompat)" = "$FEATURES" ] || fail "$CODES should stay set (and RECOVER be clear)"
# The whole output first: `grep -q` would stop reading at the match, and vexctl's write of the
# rest would then fail (EPIPE), failing the pipeline under pipefail.
sb=$("$VEXCTL" inspect --json "$img")
grep -q "$FIELD" <<< "$sb" || fail "the superblock should keep $FIELD"
check_fsck "$img"
