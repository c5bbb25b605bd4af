#!/usr/bin/env bash
# Vector codes through the kernel (docs/FORMAT.md "Vector codes", "PQ codes"), sourced by
# 048-sq8.sh (QUANT=sq8), 066-pq.sh (QUANT=pq:48, MOUNT_OPTS=index_mem=1M, a budget below
# the index; node records, mkfs's default layout) and 069-pq-split.sh (the same with
# MKFS_OPTS=--pq-layout split). The repo's pydocs sample (2,000 x 384, l2) bulk-loaded on the host into an image
# with codes (trained from the rows), fsck.vexfs clean. In the guest: the kernel's answers to
# the 100 queries at ef 16 and 64 (walked on the codes, re-ranked with the floats) are, byte for
# byte, the userspace core's on the same image (`vexctl search-image`, run first on the
# unmounted disk), and so are those ranked by the codes' distances (--code-distances at ef 64,
# most distances then differing from the exact ones); without node records, a search by the
# codes' distances reads no block of the vector data region from the device (the page cache
# dropped first; VEXFS_IOC_INDEX_READS), where the exact one reads some; the kernel then
# stores the 100 query vectors as new files through the SET ioctl (their codes written by the
# kernel, in its transactions), the index worker links them,
# and each finds its own file at distance 0; 30% of the base files are removed and, once the
# index worker has purged their tombstones (repairing the graph), the kernel's answers equal
# the userspace core's again. On the host after the boot, fsck.vexfs -n is clean, which checks
# every code against its vector (the codes the kernel wrote included).
. "$(dirname "$0")/lib.sh"

data="$VEXFS_ROOT/data/pydocs-minilm/small"
name=${QUANT%%:*}
# shellcheck disable=SC2086 # MKFS_OPTS: words
img=$(mkimg 128M --import "$data/base.fvecs" --import-dir docs --metric l2 -j 2 --quant "$QUANT" ${MKFS_OPTS:-})
check_fsck "$img"
# The listing read whole before grep sees it (lib.sh's has_node_records says why).
info=$("$VEXCTL" inspect "$img")
grep -i "$name" <<<"$info" || fail "vexctl inspect does not show the $name codes"
# LAYOUT (066, 069): whether the image holds node records.
case "${LAYOUT:-}" in
    records) has_node_records "$img" || fail "mkfs made no node records" ;;
    split) ! has_node_records "$img" || fail "--pq-layout split made node records" ;;
esac

# With node records a walk keeps the nodes it expanded by their exact distances, and the
# nearest ten nearly always were: there the codes' answers need not differ from the exact ones
# (048 and 069 show that the flag reaches the search; 066 that it agrees with userspace).
differ=1
[ "${LAYOUT:-}" != records ] || differ=0
script=$({ echo "OPTS='${MOUNT_OPTS:-}' DIFFER=$differ"; cat <<'GUEST'; } | guest_script "$name.guest"
. /lib/vexfs/guest-lib.sh
Q=/share/query.fvecs
# same EF [--code-distances]: the kernel's answers equal search-image's on /dev/vda
# (umounted), ranked as asked (exact, or by the codes' distances: VEXFS_SEARCH_CODE_DISTANCES).
same() {
    local t=$1${2:+-codes}
    # shellcheck disable=SC2086 # $2: the flag or nothing
    must vexctl search /mnt --fvecs $Q --all -k 10 --ef $1 $2 --json > /tmp/kernel-$t.json
    must umount /mnt
    # shellcheck disable=SC2086
    must vexctl search-image /dev/vda --fvecs $Q --all -k 10 --ef $1 $2 --json > /tmp/user-$t.json
    assert_eq "$(wc -l < /tmp/user-$t.json)" 100 "result lines of search-image at ef $1 $2"
    cmp /tmp/kernel-$t.json /tmp/user-$t.json || fail "ef $1 $2: kernel and userspace answers differ"
    echo "ef $1 $2: kernel and userspace identical for 100 queries"
    mount_vexfs /dev/vda /mnt "$OPTS"
}
# The codes' distances are not the exact ones (so the flag reached the search): most of the
# 1,000 distances differ from those of the exact answers at the same ef.
codes_differ() {
    local d
    grep -o '"distance":[^}]*' /tmp/kernel-$1.json > /tmp/exact.d
    grep -o '"distance":[^}]*' /tmp/kernel-$1-codes.json > /tmp/codes.d
    assert_eq "$(wc -l < /tmp/codes.d)" 1000 "code distances at ef $1"
    d=$(paste /tmp/exact.d /tmp/codes.d | awk '$1 != $2' | wc -l)
    [ "$d" -gt 500 ] || fail "ef $1: only $d of 1000 code distances differ from the exact ones"
    echo "ef $1: $d of 1000 code distances differ from the exact ones"
}

section "kernel search = userspace core, on the bulk-loaded codes (mount options: '$OPTS')"
mount_vexfs /dev/vda /mnt "$OPTS"
assert_eq "$(stats_num vectors)" 2000 "vectors"
same 16
same 64
same 64 --code-distances
[ "$DIFFER" = 0 ] || codes_differ 64

# Without node records the float32 vectors lie apart from the codes and links a walk reads: a
# search by the codes' distances reads none of them (VEXFS_IOC_INDEX_READS counts the device's
# reads per region, so the page cache is dropped first), the exact one reads some to re-rank.
if [ "$DIFFER" = 1 ]; then
    section "a search by the codes' distances reads no vector data block"
    must umount /mnt
    mount_vexfs /dev/vda /mnt "$OPTS"
    sync
    echo 3 > /proc/sys/vm/drop_caches
    d0=$(stats_num block_reads_data) c0=$(stats_num block_reads_codes) h0=$(stats_num block_reads_hnsw)
    must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --code-distances --json > /dev/null
    d1=$(stats_num block_reads_data) c1=$(stats_num block_reads_codes) h1=$(stats_num block_reads_hnsw)
    assert_eq "$d1" "$d0" "vector data blocks read by the search by the codes' distances"
    [ "$c1" -gt "$c0" ] || fail "the search by the codes' distances read no codes block ($c0, then $c1)"
    [ "$h1" -gt "$h0" ] || fail "the search by the codes' distances read no HNSW block ($h0, then $h1)"
    must vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json > /dev/null
    d2=$(stats_num block_reads_data)
    [ "$d2" -gt "$d1" ] || fail "the exact search read no vector data block ($d1, then $d2)"
    echo "blocks read by 100 searches by the codes' distances: $((c1 - c0)) codes, $((h1 - h0)) hnsw, 0 data;" \
        "by 100 exact ones after them: $((d2 - d1)) data"
fi

section "the kernel stores vectors (and their codes)"
must vexctl import --quiet $Q /mnt/q
must vexctl wait-indexed -q /mnt --timeout 900
i=0
while [ $i -lt 100 ]; do
    vexctl search /mnt --fvecs $Q --row $i -k 1 --json > /tmp/self.json || fail "search for query row $i"
    grep -q "\"path\":\"q/$i\",\"ino\":[0-9]*,\"chunk\":0,\"distance\":0.0}" /tmp/self.json \
        || fail "query row $i: $(cat /tmp/self.json)"
    i=$((i + 7))
done
echo "15 stored query rows found their own files at distance 0"

section "remove 30% of the base files"
i=0
while [ $i -lt 2000 ]; do
    [ $((i % 10)) -lt 3 ] && rm /mnt/docs/$i
    i=$((i + 1))
done
assert_eq "$(stats_num vectors)" 1500 "vectors left"
# The index worker purges the tombstones (their neighbours repaired on code distances): the
# comparison waits until it is done, so both sides search the same graph.
deleted() { stats_num deleted; }
n=0
while [ "$(deleted)" -gt 0 ]; do
    n=$((n + 1))
    [ $n -lt 1200 ] || fail "the worker did not purge the tombstones within 120 s ($(deleted) left)"
    sleep 0.1
done
echo "tombstones purged by the worker in about $((n / 10)) s"
same 64
same 64 --code-distances
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$data" --timeout 900 "$script"
check_fsck "$img"
