#!/usr/bin/env bash
# Crash points of a mixed workload, replayed one by one (issue 7, item 6): in the guest,
# dm-log-writes records every write that reaches the vexfs disk while a workload runs (files
# created, overwritten, appended and truncated, renames within and across directories and over a
# target, hard links, unlinks, mkdir/rmdir/rename of directories, embeddings set on one chunk and
# on several, replaced and removed). Right after each acknowledgement returns (fsync, fdatasync,
# fsync of a directory, syncfs, or `vexctl set` itself) the workload places a mark in the log and
# records what is acknowledged: a model of the tree (the same operations applied to a tmpfs copy)
# and of the embeddings. After unmount, testkit's replay_log walks the log: at every FLUSH/FUA
# entry and every mark (or CRASH_POINTS of them, spread evenly; CRASH_POINTS=all for every one)
# it copies the replayed disk to a scratch disk, where:
#   - fsck.vexfs -n must find it clean (complaints about the journal alone are counted apart and
#     tolerated, until fsck replays the journal);
#   - it must mount;
#   - every file and directory acknowledged at the last mark must be there with its content,
#     every acknowledged embedding found by a search for its own vector at distance 0, and
#     nothing else visible;
#   - the one operation in flight (between the last mark and the next) must show wholly or not at
#     all (a rename under exactly one name, a SET of several chunks all or none); only file
#     contents being written may be anything meanwhile.
# It ends with the figures: crash points replayed, acknowledged files and embeddings lost,
# half-done or stray states, fsck failures, mount failures, kernel warnings; any non-zero one
# fails the test (a kernel warning fails the run itself: qemu/run-guest exit 125).
# Knobs: CRASH_POINTS (default 100, or "all"), CRASH_SMALL_FILES (default 24; more makes a longer
# log). The seed picks the mkfs seed. A check of the check: CRASH_FS=ext4 runs the same workload
# and checks on ext4 (data=ordered; no embeddings, no fsck), which must pass.
# Needs the host's dmsetup (Debian package dmsetup): it runs in the guest through its own
# ld-linux with the libraries ldd lists (../shared/KERNEL-NOTES.md, last section).
. "$(dirname "$0")/lib.sh"

POINTS=${CRASH_POINTS:-100}
FS=${CRASH_FS:-vexfs}
[[ $FS == vexfs || $FS == ext4 ]] || fail "CRASH_FS must be vexfs or ext4, not '$FS'"
SMALL=${CRASH_SMALL_FILES:-24}
[[ $POINTS == all || $POINTS =~ ^[1-9][0-9]*$ ]] || fail "CRASH_POINTS must be a count or 'all', not '$POINTS'"
[[ $SMALL =~ ^[0-9]+$ ]] && [ "$SMALL" -le 1000 ] || fail "CRASH_SMALL_FILES must be 0..1000, not '$SMALL'"
DMSETUP=$(command -v dmsetup || true)
[ -n "$DMSETUP" ] || fail "no dmsetup on the host: install the Debian package dmsetup"
[ -x "$VEXFS_MUSL_BIN/replay_log" ] || fail "missing $VEXFS_MUSL_BIN/replay_log: run scripts/setup tools"

if [ "$FS" = vexfs ]; then
    img=$(mkimg 16M --dim 384 --metric l2 --vectors 64 --seed "$((SEED % 1000000))")
else
    img=$(mkraw 16M)
    must mkfs.ext4 -q -F "$img"
fi
log_disk=$(mkraw 96M)
scratch=$(mkraw 16M)

share="$T/share"
mkdir -p "$share/data" "$share/dm"
# dmsetup and what it links, beside the dynamic loader that starts it.
cp -L "$DMSETUP" "$share/dm/dmsetup"
ldd "$DMSETUP" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
    cp -L "$lib" "$share/dm/$(basename "$lib")"
done
[ -f "$share/dm/ld-linux-x86-64.so.2" ] || fail "ldd $DMSETUP lists no ld-linux-x86-64.so.2"
# The embeddings: the 100 queries of the sample (dim 384), one row per SET, never reused.
cp "$VEXFS_ROOT/data/pydocs-minilm/small/query.fvecs" "$share/emb.fvecs"
# File contents: sN holds N bytes.
for size in 0 1 100 4096 5000 70000 $(seq 1 20 | awk '{ print $1 * 300 + 7 }'); do
    gen_data "$SEED-$size" "$size" > "$share/data/s$size"
done

# Shared by the workload and the check: the state of a tree or a mount as sorted lines.
echo "FS=$FS" > "$share/common.sh"
cat >> "$share/common.sh" <<'COMMON'
DM="/share/dm/ld-linux-x86-64.so.2 --library-path /share/dm /share/dm/dmsetup"
EMB=/share/emb.fvecs
# observe_tree DIR: one line per entry under DIR (paths relative to DIR):
#   P:<path> D  a directory;  P:<path> F <md5>  a regular file;  P:<path> ?  anything else.
observe_tree() {
    (
        cd "$1" || exit 1
        # ext4's lost+found is not the workload's.
        find . -mindepth 1 -type d ! -path ./lost+found | sed 's|^\./\(.*\)|P:\1 D|'
        find . -mindepth 1 -type f | sed 's|^\./||' | xargs -r md5sum | awk '{ print "P:" $2 " F " $1 }'
        find . -mindepth 1 ! -type d ! -type f | sed 's|^\./\(.*\)|P:\1 ?|'
    )
}
# observe_embeddings MOUNT: E:<row> <path> for each row of $EMB whose nearest vector on MOUNT is
# at distance 0 (the path relative to MOUNT, "null" if the file has none). Status 1 if the search
# itself failed (its error in /tmp/search.err).
observe_embeddings() {
    [ "$FS" = vexfs ] || return 0
    vexctl search "$1" --fvecs "$EMB" --all -k 1 --json > /tmp/search.json 2> /tmp/search.err || return 1
    awk '{
        q = $0; sub(/^[{]"query":/, "", q); sub(/,.*/, "", q)
        if (match($0, /"path":("[^"]*"|null),"ino":[0-9]+,"chunk":[0-9]+,"distance":[-+.0-9eE]+/)) {
            r = substr($0, RSTART, RLENGTH)
            p = r; sub(/^"path":/, "", p); sub(/,"ino".*/, "", p); gsub(/"/, "", p)
            d = r; sub(/.*"distance":/, "", d)
            if (d + 0 == 0) print "E:" q " " p
        }
    }' /tmp/search.json
}
COMMON

# The check run by replay_log at each crash point, on the state copied to /dev/vdc. Appends one
# line to /tmp/results: entry fsck(ok|journal|FAIL) mount(ok|FAIL) lost-files lost-embeddings
# half-done.
cat > "$share/check.sh" <<'CHECK'
. /share/common.sh
ack=/tmp/ack
sm=$ack/${REPLAY_MARK:-init}
[ -f "$sm" ] || { echo "check: no state for mark '$REPLAY_MARK'"; exit 2; }
sn=$sm
data=/dev/null
if [ -n "$REPLAY_NEXT_MARK" ] && [ -f "$ack/$REPLAY_NEXT_MARK" ]; then
    sn=$ack/$REPLAY_NEXT_MARK
    data=$ack/$REPLAY_NEXT_MARK.data
fi
where="point $REPLAY_POINT/$REPLAY_POINTS (entry $REPLAY_ENTRY $REPLAY_FLAGS, after ${REPLAY_MARK:-the start})"
fsck=ok
if [ "$FS" = vexfs ] && ! fsck.vexfs -n /dev/vdc > /tmp/fsck.out 2>&1; then
    # Complaints about the journal alone are counted apart (fsck does not replay it yet).
    if grep -v 'inodes, .* blocks used' /tmp/fsck.out | grep -qiv journal; then fsck=FAIL; else fsck=journal; fi
    echo "$where: fsck.vexfs -n: $fsck"
    head -n 5 /tmp/fsck.out | sed 's/^/    /'
fi
if ! mount -t "$FS" /dev/vdc /mnt2 2> /tmp/mount.err; then
    echo "$where: mount FAILED: $(cat /tmp/mount.err)"
    dmesg | grep -i vexfs | tail -n 3 | sed 's/^/    /'
    echo "$REPLAY_ENTRY $fsck FAIL 0 0 0" >> /tmp/results
    exit 1
fi
observe_tree /mnt2 > /tmp/obs.raw
if ! observe_embeddings /mnt2 >> /tmp/obs.raw; then
    echo "$where: vexctl search failed: $(cat /tmp/search.err)"
fi
sort /tmp/obs.raw > /tmp/obs
umount /mnt2 || echo "$where: umount failed"
# Acknowledged (SM), next acknowledgement (SN), keys whose content is being written (DATA), seen.
counts=$(awk -v where="$where" -v sm="$sm" -v sn="$sn" -v dataf="$data" \
    -v op="$(grep "^$REPLAY_NEXT_MARK " $ack/ops 2>/dev/null | cut -d' ' -f2-)" '
    function val(line) { return substr(line, index(line, " ") + 1) }
    function key(line) { return substr(line, 1, index(line, " ") - 1) }
    function same(k, seen, want) {
        if (seen == want) return 1
        # A file whose content is being written may hold anything meanwhile.
        return (k in data) && seen ~ /^F / && want ~ /^F /
    }
    BEGIN {
        while ((getline l < sm) > 0) { m[key(l)] = val(l); keys[key(l)] = 1 }
        while ((getline l < sn) > 0) { n[key(l)] = val(l); keys[key(l)] = 1 }
        while ((getline l < dataf) > 0) data[l] = 1
    }
    { o[key($0)] = val($0); keys[key($0)] = 1 }
    END {
        okm = 1; okn = 1; inflight = ""
        for (k in keys) {
            vm = (k in m) ? m[k] : "-"; vn = (k in n) ? n[k] : "-"; vo = (k in o) ? o[k] : "-"
            if (vm == vn) {
                if (same(k, vo, vm)) continue
                if (vm == "-") { what = "stray"; half++ }
                else if (k ~ /^E:/) { what = "LOST embedding"; lost_e++ }
                else { what = "LOST file"; lost_f++ }
                if (shown++ < 6) printf "%s: %s %s: acknowledged %s, found %s\n", where, what, k, vm, vo
            } else {
                if (!same(k, vo, vm)) okm = 0
                if (!same(k, vo, vn)) okn = 0
                inflight = inflight sprintf("\n    %s: before %s, after %s, found %s", k, vm, vn, vo)
            }
        }
        if (!okm && !okn) {
            half++
            printf "%s: HALF-DONE %s:%s\n", where, op, inflight
        }
        printf "COUNTS %d %d %d\n", lost_f, lost_e, half
    }' /tmp/obs)
echo "$counts" | grep -v '^COUNTS '
set -- $(echo "$counts" | grep '^COUNTS ' | cut -d' ' -f2-)
echo "$REPLAY_ENTRY $fsck ok $1 $2 $3" >> /tmp/results
if [ "$fsck" = FAIL ] || [ "$1" != 0 ] || [ "$2" != 0 ] || [ "$3" != 0 ]; then exit 1; fi
exit 0
CHECK

script=$(guest_script crash.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/common.sh
POINTS=$1
SMALL=$2
ack=/tmp/ack
mkdir -p $ack /tmp/model /mnt2

section "dm-log-writes over /dev/vda (log on /dev/vdb)"
# The replay starts from the disk as it is now.
must dd if=/dev/vda of=/tmp/replay.img bs=1M 2> /dev/null
sectors=$(cat /sys/block/vda/size)
must $DM create lw --table "0 $sectors log-writes /dev/vda /dev/vdb"
lw=""
for d in /sys/block/dm-*; do
    [ "$(cat "$d/dm/name")" = lw ] && lw=/dev/${d##*/}
done
[ -n "$lw" ] || fail "no dm device named lw in /sys/block"
if [ ! -b "$lw" ]; then
    majmin=$(cat "/sys/block/${lw##*/}/dev")
    must mknod "$lw" b "${majmin%%:*}" "${majmin##*:}"
fi
must mount -t "$FS" "$lw" /mnt

# The workload. Each operation is applied to /mnt and to the model /tmp/model ($R is each in
# turn), its acknowledgement awaited, then a mark aNNN is placed and the acknowledged state saved:
# $ack/aNNN (sorted observe_tree lines of the model and E:<row> <path> of the embeddings),
# $ack/aNNN.data (keys whose content the operation writes), a line in $ack/ops.
N=0
: > /tmp/emb
observe_tree /tmp/model | sort > $ack/init
: > $ack/ops
op() {
    N=$((N + 1))
    OP="$*"
    : > $ack/cur.data
}
writes() {
    for p in "$@"; do echo "P:$p" >> $ack/cur.data; done
}
both() {
    for R in /mnt /tmp/model; do
        eval "$1" || fail "op $N ($OP): $1 with R=$R"
    done
}
emb_set() { # FILE ROW...: FILE's embeddings become these rows
    f=$1
    shift
    awk -v p="$f" '$2 != p' /tmp/emb > /tmp/emb.new
    for r in "$@"; do echo "E:$r $f" >> /tmp/emb.new; done
    mv /tmp/emb.new /tmp/emb
}
emb_drop() { awk -v p="$1" '$2 != p' /tmp/emb > /tmp/emb.new && mv /tmp/emb.new /tmp/emb; }
emb_move() { # FROM TO: a rename of a file or a directory
    awk -v a="$1" -v b="$2" '{
        if ($2 == a) $2 = b
        else if (index($2, a "/") == 1) $2 = b substr($2, length(a) + 1)
        print
    }' /tmp/emb > /tmp/emb.new && mv /tmp/emb.new /tmp/emb
}
set_rows() { # FILE ROWS (vexctl's --row R or --rows A..B)
    [ "$FS" = vexfs ] || return 0
    case $2 in
        *..*) must vexctl set "/mnt/$1" --fvecs $EMB --rows "$2"
              emb_set "$1" $(seq "${2%%..*}" $((${2##*..} - 1))) ;;
        *) must vexctl set "/mnt/$1" --fvecs $EMB --row "$2"
           emb_set "$1" "$2" ;;
    esac
}
ack() { # fsync FILE | fdatasync FILE | dirsync DIR | syncfs | set
    case $1 in
        fsync|dirsync) must sync "/mnt/$2" ;;
        fdatasync) must sync -d "/mnt/$2" ;;
        syncfs) must sync -f /mnt ;;
        set) ;;
        *) fail "ack $1?" ;;
    esac
    name=$(printf 'a%03d' $N)
    must $DM message lw 0 mark $name
    { observe_tree /tmp/model; cat /tmp/emb; } | sort > $ack/$name
    mv $ack/cur.data $ack/$name.data
    echo "$name $OP [$*]" >> $ack/ops
}

section "workload"
op "mkdir d1 d2"; both 'mkdir $R/d1 $R/d2'; ack syncfs
op "create f1 (4096 B)"; writes f1; both 'cp /share/data/s4096 $R/f1'; ack fsync f1
op "create d1/f2 (70000 B)"; writes d1/f2; both 'cp /share/data/s70000 $R/d1/f2'; ack fsync d1/f2
op "create d1/f3 (1 B)"; writes d1/f3; both 'cp /share/data/s1 $R/d1/f3'; ack fsync d1/f3
op "create empty f4"; writes f4; both ': > $R/f4'; ack fsync f4
op "SET f1 row 0"; set_rows f1 0; ack set
op "overwrite 100 B of f1 at 1000"; writes f1
both 'dd if=/share/data/s100 of=$R/f1 bs=100 seek=10 conv=notrunc 2> /dev/null'; ack fdatasync f1
op "append 5000 B to d1/f2"; writes d1/f2; both 'cat /share/data/s5000 >> $R/d1/f2'; ack fsync d1/f2
op "rename f1 to d2/g1"; both 'mv $R/f1 $R/d2/g1'; emb_move f1 d2/g1; ack syncfs
op "SET d1/f2 rows 1..4 (3 chunks)"; set_rows d1/f2 1..4; ack set
op "truncate d1/f2 to 5000 B"; writes d1/f2; both 'truncate -s 5000 $R/d1/f2'; ack fsync d1/f2
op "unlink d1/f3"; both 'rm $R/d1/f3'; ack dirsync d1
op "rename d1/f2 to d1/f5"; both 'mv $R/d1/f2 $R/d1/f5'; emb_move d1/f2 d1/f5; ack dirsync d1
op "create d2/h (5000 B)"; writes d2/h; both 'cp /share/data/s5000 $R/d2/h'; ack fsync d2/h
op "SET d2/h row 4"; set_rows d2/h 4; ack set
op "rename d2/h over d2/g1"; both 'mv -f $R/d2/h $R/d2/g1'; emb_drop d2/g1; emb_move d2/h d2/g1; ack syncfs
op "rm-embedding d1/f5"; [ "$FS" != vexfs ] || must vexctl rm-embedding /mnt/d1/f5; emb_drop d1/f5; ack fsync d1/f5
op "mkdir d3 d3/sub"; both 'mkdir -p $R/d3/sub'; ack syncfs
op "rmdir d3/sub"; both 'rmdir $R/d3/sub'; ack dirsync d3
op "SET f4 row 5"; set_rows f4 5; ack set
op "SET f4 row 6 (replaces row 5)"; set_rows f4 6; ack set
op "hard link d1/f5 as d1/link"; both 'ln $R/d1/f5 $R/d1/link'; ack syncfs
op "unlink f4 (and its embedding)"; both 'rm $R/f4'; emb_drop f4; ack syncfs
op "unlink d1/f5 (d1/link remains)"; both 'rm $R/d1/f5'; ack dirsync d1
op "rename directory d3 to d2/d3"; both 'mv $R/d3 $R/d2/d3'; ack syncfs
row=7
i=1
while [ $i -le "$SMALL" ]; do
    s=$(((i - 1) % 20 * 300 + 307))
    op "create d2/d3/s$i ($s B)"; writes d2/d3/s$i; both "cp /share/data/s$s \$R/d2/d3/s$i"; ack fsync d2/d3/s$i
    if [ $((i % 3)) = 0 ] && [ $row -lt 100 ]; then
        op "SET d2/d3/s$i row $row"; set_rows d2/d3/s$i $row; ack set
        row=$((row + 1))
    fi
    if [ $((i % 4)) = 0 ]; then
        op "unlink d2/d3/s$((i - 2))"; both "rm \$R/d2/d3/s$((i - 2))"; emb_drop d2/d3/s$((i - 2)); ack syncfs
    fi
    i=$((i + 1))
done
op "rename directory d2/d3 to d4 (embeddings move)"; both 'mv $R/d2/d3 $R/d4'; emb_move d2/d3 d4; ack syncfs
op "rename d2/g1 to g2"; both 'mv $R/d2/g1 $R/g2'; emb_move d2/g1 g2; ack syncfs
op "unlink d1/link"; both 'rm $R/d1/link'; ack dirsync d1
op "rmdir d1"; both 'rmdir $R/d1'; ack syncfs
echo "$N operations acknowledged"
# What the mounted filesystem shows now must be the model (a check of the check).
{ observe_tree /mnt; observe_embeddings /mnt || fail "vexctl search: $(cat /tmp/search.err)"; } | sort > /tmp/live
cmp -s /tmp/live $ack/$(printf 'a%03d' $N) || { diff $ack/$(printf 'a%03d' $N) /tmp/live; fail "the live filesystem differs from the model"; }
must umount /mnt
# The target logs "dm-log-writes-end" when removed: the state of the last acknowledgement.
cp $ack/$(printf 'a%03d' $N) $ack/dm-log-writes-end
: > $ack/dm-log-writes-end.data
status=$($DM status lw) || fail "dmsetup status lw"
echo "log-writes status: $status"
case $status in *logging_disabled*) fail "dm-log-writes stopped logging (log device full?)" ;; esac
must $DM remove lw

section "replay every crash point"
replay_log list /dev/vdb --points > /tmp/list || fail "replay_log list"
head -n 1 /tmp/list
: > /tmp/results
start=$(cut -d' ' -f1 /proc/uptime)
replay_log iterate /dev/vdb /tmp/replay.img --marks --points "$POINTS" --copy-to /dev/vdc \
    --exec "/bin/sh /share/check.sh" --keep-going
rc=$?
[ $rc -le 1 ] || fail "replay_log iterate failed (status $rc)"
end=$(cut -d' ' -f1 /proc/uptime)
# A check of the replay itself: the last point is the whole log, so the replayed image must be
# what the workload left on /dev/vda (read past its page cache, filled by the first copy).
must blockdev --flushbufs /dev/vda
cmp -s /tmp/replay.img /dev/vda || fail "the whole log replayed differs from /dev/vda: replay_log is wrong"
echo "the whole log replayed equals /dev/vda"

section "figures"
warnings=$(dmesg | grep -cE 'WARNING:|BUG:|Oops|Kernel panic')
awk -v warn="$warnings" -v secs="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%d", b - a }')" '
    { n++; if ($2 == "FAIL") fsck++; if ($2 == "journal") jrnl++; if ($3 == "FAIL") mnt++
      lf += $4; le += $5; hd += $6; if ($4 > 0) plf++; if ($5 > 0) ple++; if ($6 > 0) phd++ }
    END {
        printf "crash points replayed: %d (%d s)\n", n, secs
        printf "acknowledged files lost: %d (at %d points)\n", lf, plf
        printf "acknowledged embeddings lost: %d (at %d points)\n", le, ple
        printf "half-done or stray states: %d (at %d points)\n", hd, phd
        printf "fsck failures: %d (and %d complaining about the journal only)\n", fsck, jrnl
        printf "mount failures: %d\n", mnt
        printf "kernel warnings: %d\n", warn
        exit (n == 0 || lf + le + hd + fsck + mnt + warn > 0)
    }' /tmp/results
GUEST
)

# About 55 s with the defaults (100 points); a longer run (CRASH_POINTS=all, more files) gets more.
timeout=600
[ "$POINTS" != all ] && [ "$POINTS" -le 200 ] && [ "$SMALL" -le 24 ] || timeout=5000
run_guest --disk "$img" --disk "$log_disk" --disk "$scratch" --share "$share" --timeout "$timeout" \
    "$script" "$POINTS" "$SMALL"
echo "070-crash-replay: PASS"
