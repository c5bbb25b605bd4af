#!/bin/sh
# Runs in the QEMU guest (bench/journal.sh boots it): the journal benchmark, vexfs and ext4 side
# by side in one boot.
#
#   journal-run.sh FILES RENAMES CYCLES BIG_DIR VECTORS REPS SEARCH_PASSES
#
# /dev/vda: a fresh vexfs; /dev/vdb: a fresh ext4 (made on the host, data=ordered by default);
# /share: guest-fsops (bench/guest-fsops.c), tree.tar, vecs.fvecs (VECTORS rows), queries.fvecs.
# Each of REPS rounds runs, on each filesystem in turn (vexfs first in even rounds, ext4 first
# in odd ones), starting from a synced filesystem:
#   create   FILES x (create, write 4 KiB, fsync, close)
#   rename   CYCLES x RENAMES renames over RENAMES files (half within a directory, half across
#            two; neither directory above RENAMES entries), then syncfs
#   rename-big  BIG_DIR renames out of a directory of BIG_DIR files (the same pattern, one cycle)
#   untar    busybox tar -xf of tree.tar (copied to /tmp first), then syncfs (the `sync`)
#   xattr    VECTORS x (create, setxattr user.vexfs.embedding = one vector, fsync, close), then
#            syncfs: on vexfs a durable embedding (the SET commits before setxattr returns) with
#            the fsync finding nothing left; on ext4 the same bytes stored, not indexed
#   rm       rm -rf of everything the round made, then syncfs (on vexfs: the embeddings removed)
# then, on vexfs only: `vexctl import` of vecs.fvecs (create + SET per row, each SET durable),
# syncfs, SEARCH_PASSES runs of `vexctl search --all -k 10 --ef 64` over queries.fvecs, rm -rf.
# Every timed step is a line "BENCH {json}" with its wall seconds and operation count.
# Never print the words the harness takes for kernel errors (see scripts/lib.sh).
. /lib/vexfs/guest-lib.sh
FILES=$1
RENAMES=$2
CYCLES=$3
BIG_DIR=$4
VECTORS=$5
REPS=$6
PASSES=$7
S=/share
G=$S/guest-fsops

cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)
section "guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, clocksource $cs"
echo "BENCH {\"test\": \"guest\", \"kernel\": \"$(uname -r)\", \"cpus\": $(grep -c ^processor /proc/cpuinfo), \"clocksource\": \"$cs\"}"

mount_vexfs /dev/vda /mnt/vexfs
mkdir -p /mnt/ext4
must mount -t ext4 /dev/vdb /mnt/ext4
grep -E ' /mnt/(vexfs|ext4) ' /proc/mounts
# Inputs are read from /tmp (initramfs), not through 9p, so both sides read them alike.
for f in tree.tar vecs.fvecs queries.fvecs; do
    cp $S/$f /tmp/$f || fail "copy $f to /tmp"
done

# timed FS REP TEST CMD...: runs `guest-fsops CMD...` and prints its BENCH line.
timed() {
    _fs=$1 _rep=$2 _test=$3
    shift 3
    _out=$($G "$@") || fail "$_fs round $_rep $_test: guest-fsops $* (status $?)"
    set -- $_out
    [ "$1" = TIME ] || fail "$_fs round $_rep $_test: unexpected output '$_out'"
    echo "BENCH {\"fs\": \"$_fs\", \"rep\": $_rep, \"test\": \"$_test\", \"secs\": $2, \"ops\": $3}"
}

settle() {
    $G syncfs /mnt/vexfs > /dev/null || fail "syncfs vexfs"
    $G syncfs /mnt/ext4 > /dev/null || fail "syncfs ext4"
}

round() {
    local fs=$1 r=$2 m=/mnt/$1
    section "round $r: $fs"
    settle
    must mkdir $m/c$r
    timed "$fs" "$r" create create $m/c$r "$FILES" 4096
    must mkdir $m/ra$r $m/rb$r
    $G touch $m/ra$r "$RENAMES" > /dev/null || fail "$fs: touch"
    settle
    timed "$fs" "$r" rename rename $m/ra$r $m/rb$r "$RENAMES" "$CYCLES"
    timed "$fs" "$r" rename-sync syncfs $m
    must mkdir $m/ba$r $m/bb$r
    $G touch $m/ba$r "$BIG_DIR" > /dev/null || fail "$fs: touch"
    settle
    timed "$fs" "$r" rename-big rename $m/ba$r $m/bb$r "$BIG_DIR" 1
    settle
    must mkdir $m/t$r
    timed "$fs" "$r" untar run tar -xf /tmp/tree.tar -C $m/t$r
    timed "$fs" "$r" untar-sync syncfs $m
    must mkdir $m/x$r
    timed "$fs" "$r" xattr xattr $m/x$r /tmp/vecs.fvecs "$VECTORS"
    timed "$fs" "$r" xattr-sync syncfs $m
    timed "$fs" "$r" rm run rm -rf $m/c$r $m/ra$r $m/rb$r $m/ba$r $m/bb$r $m/t$r $m/x$r
    timed "$fs" "$r" rm-sync syncfs $m
}

r=0
while [ "$r" -lt "$REPS" ]; do
    if [ $((r % 2)) -eq 0 ]; then
        round vexfs $r
        round ext4 $r
    else
        round ext4 $r
        round vexfs $r
    fi
    section "round $r: vexfs, vexctl import of $VECTORS vectors, search"
    settle
    timed vexfs "$r" import run vexctl import --quiet /tmp/vecs.fvecs /mnt/vexfs/i$r
    timed vexfs "$r" import-sync syncfs /mnt/vexfs
    n=$(ls /mnt/vexfs/i$r | wc -l)
    [ "$n" -eq "$VECTORS" ] || fail "import made $n files, expected $VECTORS"
    p=0
    while [ "$p" -lt "$PASSES" ]; do
        timed vexfs "$r" search run vexctl search /mnt/vexfs --fvecs /tmp/queries.fvecs --all -k 10 \
            --ef 64 --json
        p=$((p + 1))
    done
    vexctl stats /mnt/vexfs --json > /tmp/stats.json || fail "vexctl stats"
    echo "BENCH {\"fs\": \"vexfs\", \"rep\": $r, \"test\": \"stats\", \"stats\": $(tr -d '\n' < /tmp/stats.json)}"
    timed vexfs "$r" rm-import run rm -rf /mnt/vexfs/i$r
    timed vexfs "$r" rm-import-sync syncfs /mnt/vexfs
    r=$((r + 1))
done
must umount /mnt/vexfs
must umount /mnt/ext4
section "done"
