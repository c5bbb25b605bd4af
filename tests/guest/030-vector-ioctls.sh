#!/usr/bin/env bash
# The vector ioctls of include/vexfs.h end to end, on the pydocs sample (2,000 MiniLM passages,
# dim 384, l2): `vexctl import` makes one file per passage with its embedding and `vexctl stats`
# counts 2,000 vectors; `vexctl search --all --json` answers the 100 queries with recall@10 >= 0.95
# against the exact ground truth (checked on the host); the C example vexfs-search finds the same
# files as vexctl; a second import resumes (skips every row); set/get/rm-embedding round-trip
# several chunks; vexfs-abi-check gets the documented errno for every bad input of the ABI; the
# index survives a remount; fsck.vexfs finds the image clean.
# The seed picks the query of the single-query checks.
. "$(dirname "$0")/lib.sh"

DATA="$VEXFS_ROOT/data/pydocs-minilm/small"
for t in vexfs-search vexfs-abi-check; do
    [ -x "$VEXFS_MUSL_BIN/$t" ] || fail "missing $VEXFS_MUSL_BIN/$t: run make -C examples/c"
done
ROW=$((SEED % 100))
img=$(mkimg 128M --dim 384 --metric l2)
# The guest copies the JSON of the 100 searches here (a raw disk: /dev/vdb); the host reads it.
results_disk=$(mkraw 4M)

script=$(guest_script vectors.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
ROW=$1
Q=/share/query.fvecs
# inos JSON-FILE: the inode numbers of the results, one per line, in order.
inos() {
    grep -o '"ino":[0-9]*' "$1" | cut -d: -f2
}

mount_vexfs /dev/vda /mnt
section "import"
must vexctl import /share/base.fvecs /mnt/docs --texts /share/passages.jsonl --quiet
assert_eq "$(ls /mnt/docs | wc -l)" 2000 "files in /mnt/docs"
head -n 1 /share/passages.jsonl | grep -qF "\"text\": \"$(head -c 40 /mnt/docs/0)" \
    || fail "/mnt/docs/0 does not start like the first passage"

section "stats"
must vexctl stats /mnt
# Right after the burst the vectors are pending (the write-ahead log), not yet in the graph.
vexctl stats /mnt --json > /tmp/burst.json || fail "vexctl stats --json"
assert_eq "$(json_num vectors /tmp/burst.json)" 2000 "searchable vectors right after the import"
must vexctl wait-indexed -q /mnt --timeout 600
vexctl stats /mnt/docs/17 --json > /tmp/stats.json || fail "vexctl stats --json"
assert_eq "$(json_num pending /tmp/stats.json)" 0 "pending after wait-indexed"
cat /tmp/stats.json
assert_eq "$(json_num vectors /tmp/stats.json)" 2000 "vectors in the index"
assert_eq "$(json_num dim /tmp/stats.json)" 384 "dim"
grep -q '"metric": "l2"' /tmp/stats.json || fail "metric is not l2"
[ "$(json_num levels /tmp/stats.json)" -ge 1 ] || fail "an index of 2000 vectors has no level"

section "search: 100 queries"
vexctl search /mnt --fvecs $Q --all --json > /tmp/results.json || fail "vexctl search --all"
assert_eq "$(wc -l < /tmp/results.json)" 100 "lines of vexctl search --all --json"
# To the host (recall is computed there): the raw disk holds the JSON, then zeros.
dd if=/tmp/results.json of=/dev/vdb conv=fsync 2>/dev/null || fail "copy the results to /dev/vdb"

section "search: query $ROW, table and the C example"
must vexctl search /mnt/docs --fvecs $Q --row "$ROW" -k 5
vexctl search /mnt/docs/0 --fvecs $Q --row "$ROW" --json > /tmp/one.json || fail "vexctl search --row"
inos /tmp/one.json > /tmp/vexctl.ino
vexfs-search /mnt $Q "$ROW" 10 > /tmp/c.txt || fail "vexfs-search exited with status $?"
cat /tmp/c.txt
cut -d' ' -f1 /tmp/c.txt > /tmp/c.ino
assert_eq "$(wc -l < /tmp/c.ino)" 10 "results of vexfs-search"
cmp /tmp/c.ino /tmp/vexctl.ino || fail "vexfs-search and vexctl search found different files"
# With the same candidate list (the default ef for k 10 is 64), -k 1 is the first of those 10.
vexctl search /mnt --fvecs $Q --row "$ROW" -k 1 --ef 64 --json > /tmp/k1.json || fail "search -k 1"
assert_eq "$(inos /tmp/k1.json)" "$(head -n 1 /tmp/c.ino)" "nearest file with -k 1 --ef 64"

section "resume"
out=$(vexctl import /share/base.fvecs /mnt/docs --texts /share/passages.jsonl --quiet) \
    || fail "second import"
echo "$out"
case "$out" in
    "imported 0 rows into /mnt/docs, skipped 2000 "*) ;;
    *) fail "second import did not skip every row: $out" ;;
esac
# A row whose file lost its embedding is imported again.
must vexctl rm-embedding /mnt/docs/5
out=$(vexctl import /share/base.fvecs /mnt/docs --quiet) || fail "third import"
case "$out" in
    "imported 1 rows into /mnt/docs, skipped 1999 "*) ;;
    *) fail "third import: $out" ;;
esac

section "set, get, rm-embedding"
echo "several chunks" > /mnt/multi
must vexctl set /mnt/multi --fvecs $Q --rows 40..43
vexctl get /mnt/multi --json > /tmp/get.json || fail "vexctl get --json"
assert_eq "$(grep -o '\],\[' /tmp/get.json | wc -l)" 2 "chunks of /mnt/multi minus 1"
vexctl get /mnt/multi | head -n 1 | grep -qx "/mnt/multi: 3 chunks of dimension 384" \
    || fail "vexctl get text output"
# Query 41 is chunk 1 of /mnt/multi, exactly.
vexctl search /mnt --fvecs $Q --row 41 -k 1 --json > /tmp/self.json || fail "search for chunk 1"
cat /tmp/self.json
grep -q '"path":"multi","ino":[0-9]*,"chunk":1,"distance":0.0}' /tmp/self.json \
    || fail "query 41 does not find chunk 1 of /mnt/multi at distance 0"
must vexctl set /mnt/multi --fvecs $Q --row 7
vexctl get /mnt/multi | head -n 1 | grep -qx "/mnt/multi: 1 chunk of dimension 384" \
    || fail "set --row did not truncate to 1 chunk"
must vexctl rm-embedding /mnt/multi
must vexctl rm-embedding /mnt/multi
vexctl get /mnt/multi | grep -qx "/mnt/multi: 0 chunks of dimension 384" || fail "rm-embedding"
vexctl stats /mnt --json > /tmp/stats.json || fail "vexctl stats --json"
assert_eq "$(json_num vectors /tmp/stats.json)" 2000 "vectors after set and rm-embedding"

section "vexctl errors"
echo x > /tmp/other
if out=$(vexctl stats /tmp/other 2>&1); then fail "vexctl stats on tmpfs succeeded"; fi
case "$out" in *"is not on a vexfs mount (statfs f_type 0x1021994, tmpfs"*) ;; *) fail "$out" ;; esac
if out=$(vexctl set /mnt/docs --fvecs $Q 2>&1); then fail "vexctl set on a directory succeeded"; fi
echo "$out"
expect_fail vexctl get /mnt/nonexistent

section "ABI: every bad input gets its documented errno"
vexfs-abi-check /mnt/docs /tmp/other || fail "vexfs-abi-check: some cases failed (see above)"

section "remount"
vexctl search /mnt --fvecs $Q --row "$ROW" --json > /tmp/before.json || fail "search before umount"
must umount /mnt
mount_vexfs /dev/vda /mnt
vexctl stats /mnt --json > /tmp/stats.json || fail "vexctl stats --json"
assert_eq "$(json_num vectors /tmp/stats.json)" 2000 "vectors after remount"
vexctl search /mnt --fvecs $Q --row "$ROW" --json > /tmp/after.json || fail "search after remount"
cmp /tmp/before.json /tmp/after.json || fail "query $ROW finds other files after remount"
must umount /mnt
GUEST
)

run_guest --disk "$img" --disk "$results_disk" --share "$DATA" --timeout 1500 "$script" "$ROW"
check_fsck "$img"

# recall@10 of the 100 searches against the exact top 10 (groundtruth.ivecs: per query an int32
# 100, then the ids of the 100 nearest rows; file DIR/i holds row i). Where the nearest file is
# the true nearest, its distance must be the square of the true (Euclidean) distance: the l2
# metric reports squared distances.
tr -d '\000' < "$results_disk" > "$T/results.json"
[ "$(wc -l < "$T/results.json")" -eq 100 ] || fail "the guest wrote $(wc -l < "$T/results.json") result lines, not 100"
od -An -v -t d4 -w404 "$DATA/groundtruth.ivecs" > "$T/groundtruth.txt"
od -An -v -t f4 -w404 "$DATA/groundtruth_dist.fvecs" > "$T/groundtruth_dist.txt"
recall=$(awk '
    FILENAME == ARGV[1] { for (i = 2; i <= 11; i++) truth[FNR - 1, $i] = 1; top[FNR - 1] = $2; next }
    FILENAME == ARGV[2] { topdist[FNR - 1] = $2 * $2; next }
    {
        if (match($0, /"path":"docs\/[0-9]+","ino":[0-9]+,"chunk":0,"distance":[-+.0-9eE]+/)) {
            first = substr($0, RSTART, RLENGTH)
            id = first; sub(/^"path":"docs\//, "", id); sub(/".*/, "", id)
            d = first; sub(/.*"distance":/, "", d)
            q0 = $0; sub(/^[{]"query":/, "", q0); sub(/,.*/, "", q0)
            want = topdist[q0]
            if (id == top[q0] && (d - want > 1e-4 * want || want - d > 1e-4 * want)) {
                print "query " q0 ": distance " d " of its nearest file, expected " want; bad = 1; exit 1
            }
        }
        if (!match($0, /"query":[0-9]+/)) { print "bad line " FNR; bad = 1; exit 1 }
        q = substr($0, RSTART + 8, RLENGTH - 8)
        s = $0; n = 0
        while (match(s, /"path":"docs\/[0-9]+"/)) {
            id = substr(s, RSTART + 13, RLENGTH - 14)
            if ((q, id) in truth) hits++
            n++
            s = substr(s, RSTART + RLENGTH)
        }
        if (n != 10) { print "query " q ": " n " results in docs/, not 10"; bad = 1; exit 1 }
        queries++
    }
    END { if (bad) exit 1; printf "%.3f\n", hits / (queries * 10) }
' "$T/groundtruth.txt" "$T/groundtruth_dist.txt" "$T/results.json") || fail "recall: $recall"
echo "recall@10 = $recall over 100 queries"
awk -v r="$recall" 'BEGIN { exit !(r >= 0.95) }' || fail "recall@10 $recall is below 0.95"
echo "030-vector-ioctls: PASS"
