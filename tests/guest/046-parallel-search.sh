#!/usr/bin/env bash
# Searches run at once on one mount (issue 9, item 2): each takes the index lock shared with a
# search pad of its own (kmod/index.rs PadPool), and an import's inserts take it alone between
# them. In the guest, on the pydocs sample:
#   1. 2,000 files imported and linked (wait-indexed); 4 processes search at once, each every
#      query 3 times (k 10, ef 64); every answer must equal, byte for byte, what
#      `vexctl search-image` (the same code in userspace) gives on the unmounted device;
#   2. a second import of the same 2,000 vectors into another directory, and the index worker
#      linking them (each insert planned under the shared lock, beside the searches, and applied
#      alone), run while the 4 processes keep searching, round after round: each answer must
#      hold k results, nearest first, no (inode, chunk) twice, and only files that exist at the
#      end (none is removed);
#   3. once the worker has linked everything, the 4 searchers again against search-image.
# A kernel warning (lockdep on the debug kernel included) fails the run.
. "$(dirname "$0")/lib.sh"

data="$VEXFS_ROOT/data/pydocs-minilm/small"
img=$(mkimg 160M --dim 384 --metric l2 --vectors 4100)
share="$T/share"
mkdir -p "$share"
cp "$data/base.fvecs" "$data/query.fvecs" "$share/"

script=$(guest_script parallel.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
Q=/share/query.fvecs
search() { vexctl search /mnt --fvecs $Q --all -k 10 --ef 64 --json; }
user_search() { vexctl search-image /dev/vda --fvecs $Q --all -k 10 --ef 64 --json; }
# searchers NAME: 4 processes at once, each running every query 3 times; each answer must be
# search-image's on the same index state (/tmp/user.NAME.json, made after an unmount).
searchers() {
    pids=""
    for p in 1 2 3 4; do
        ( for r in 1 2 3; do search > /tmp/$1.$p.$r.json || exit 1; done ) &
        pids="$pids $!"
    done
    p=0
    for pid in $pids; do
        p=$((p + 1))
        wait "$pid" || fail "$1: searcher $p failed"
    done
    must umount /mnt
    must user_search > /tmp/user.$1.json
    mount_vexfs /dev/vda /mnt
    for p in 1 2 3 4; do
        for r in 1 2 3; do
            cmp -s /tmp/$1.$p.$r.json /tmp/user.$1.json ||
                fail "$1: searcher $p, round $r: an answer differs from search-image's"
        done
    done
    echo "$1: 4 searchers x 3 rounds x $(wc -l < /tmp/user.$1.json) queries, every answer search-image's"
}

mount_vexfs /dev/vda /mnt
section "import of 2000 files, linked"
must vexctl import --quiet /share/base.fvecs /mnt/a
must vexctl wait-indexed -q /mnt --timeout 1200
section "4 searchers at once on a still index"
searchers still

section "4 searchers while 2000 more files are imported and linked"
mkdir -p /tmp/busy
# The import, then the index worker linking its vectors (each insert planned under the shared
# lock beside the searches, applied alone): the searchers run until both are done.
touch /tmp/busy.flag
(
    vexctl import --quiet /share/base.fvecs /mnt/b && vexctl wait-indexed -q /mnt --timeout 1200
    echo $? > /tmp/import.status
    rm -f /tmp/busy.flag
) > /tmp/import.out 2>&1 &
imp=$!
pids=""
for p in 1 2 3 4; do
    (
        r=0
        # At least 2 rounds each; more while the import and the linking last.
        while [ $r -lt 2 ] || [ -e /tmp/busy.flag ]; do
            r=$((r + 1))
            search > /tmp/busy/$p.$r.json || exit 1
        done
    ) &
    pids="$pids $!"
done
wait $imp
[ "$(cat /tmp/import.status)" = 0 ] || { cat /tmp/import.out; fail "the import beside the searchers failed"; }
cat /tmp/import.out
p=0
for pid in $pids; do
    p=$((p + 1))
    wait "$pid" || fail "busy: searcher $p failed"
done
echo "busy: $(ls /tmp/busy | wc -l) rounds of answers"
assert_eq "$(stats_num pending)" 0 "pending after the linking"

section "4 searchers at once after the import"
searchers after
# What the host checks: the busy answers and the files that exist (inode, path).
must mkdir /mnt/out
for f in /tmp/busy/*.json; do
    echo "# $f"
    cat "$f"
done > /mnt/out/busy.txt
find /mnt/a /mnt/b -type f -exec stat -c '%i %n' {} + > /mnt/out/files.txt || fail "listing the files"
must umount /mnt
GUEST
)
run_guest --disk "$img" --share "$share" --timeout 2400 "$script"
check_fsck "$img"
for f in files busy; do
    "$VEXCTL" cat "$img" "/out/$f.txt" > "$T/$f.txt" || fail "reading /out/$f.txt"
done

python3 - "$T" <<'PY' || fail "answers given while the import ran"
import json, sys
t = sys.argv[1]
live = {}
for line in open(f"{t}/files.txt"):
    ino, path = line.split(maxsplit=1)
    live[int(ino)] = path.strip().removeprefix("/mnt/")
assert len(live) == 4000, f"{len(live)} files at the end, 4000 expected"
rounds = {}
for line in open(f"{t}/busy.txt"):
    if line.startswith("# "):
        f = line[2:].strip(); rounds[f] = []
    else:
        rounds[f].append(json.loads(line))
answers = problems = 0
for f, rows in rounds.items():
    if len(rows) != 100:
        print(f"{f}: {len(rows)} answers, 100 expected"); problems += 1
    for r in rows:
        answers += 1
        res = r["results"]
        d = [h["distance"] for h in res]
        keys = [(h["ino"], h["chunk"]) for h in res]
        bad = []
        if len(res) != 10: bad.append(f"{len(res)} results")
        if d != sorted(d): bad.append("not nearest first")
        if len(set(keys)) != len(keys): bad.append("a result twice")
        # vexctl maps inodes to paths once, at its first result: a file made since has none.
        if any(h["ino"] not in live or h["path"] not in (None, "/" + live[h["ino"]], live[h["ino"]]) for h in res):
            bad.append("a file that does not exist")
        if bad:
            problems += 1
            if problems <= 10: print(f"{f} query {r['query']}: {', '.join(bad)}")
print(f"busy: {answers} answers in {len(rounds)} rounds of 4 searchers, {problems} with problems")
sys.exit(1 if problems or answers < 800 else 0)
PY
echo "046-parallel-search: PASS"
