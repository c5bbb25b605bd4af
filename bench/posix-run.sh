#!/bin/sh
# Runs in the QEMU guest (bench/posix.sh boots it): the POSIX benchmark of issue 11, vexfs and
# ext4 side by side in one boot.
#
#   posix-run.sh ROUNDS FILES MIB PAR_MIB DIR_N DIR_CAP STAT_CAP RAND_N
#
# /dev/vda: a fresh vexfs; /dev/vdb: a fresh ext4 (made on the host, data=ordered by default);
# /share: guest-fsops (bench/guest-fsops.c), tsc-mhz (the host's TSC rate: every phase is timed
# with the TSC, FSOPS_TSC_MHZ). Each of ROUNDS rounds runs, on each filesystem in turn (vexfs
# first in even rounds, ext4 first in odd ones), each phase from a synced filesystem:
#   create    FILES x (create, write 4 KiB, fsync, close) in a new directory; then rm -rf
#   seqwrite  one file of MIB MiB in 1 MiB writes, then fsync (timed with the fsync)
#   seqread   the same file after dropping caches, 1 MiB reads (every block's stamp checked)
#   randread  RAND_N preads of 4 KiB at distinct random block-aligned offsets of it, caches
#             dropped first (seed: the round); then the file is removed
#   parwrite  4 processes at once, each writing a file of PAR_MIB MiB + fsync; then rm -rf
# Then, after every round above, ROUNDS big directories on each filesystem (big0, big1...: one
# per round, in the same alternating order; the earlier ones stay):
#   dir-create  DIR_N empty files created in a new directory (open O_CREAT|O_EXCL, close),
#             stopping at DIR_CAP seconds if not done (the record then says how many)
# and, round by round again, on the round's big directory:
#   readdir   caches dropped, getdents64 of the whole directory
#   stat      caches dropped, getdents64 again (untimed) then fstatat of every entry in a seeded
#             random order, stopping at STAT_CAP seconds if not done (the random order keeps a
#             stopped run's rate that of the whole directory)
# Every timed phase is a line "BENCH {json}" with its seconds and its count (files, bytes, reads,
# entries).
# Never print the words the harness takes for kernel errors (see scripts/lib.sh).
. /lib/vexfs/guest-lib.sh
ROUNDS=$1
FILES=$2
MIB=$3
PAR_MIB=$4
DIR_N=$5
DIR_CAP=$6
STAT_CAP=$7
RAND_N=$8
S=/share
G=$S/guest-fsops
FSOPS_TSC_MHZ=$(cat $S/tsc-mhz) || fail "no $S/tsc-mhz"
export FSOPS_TSC_MHZ

cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)
mem=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
section "guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, clocksource $cs, $mem kB, TSC $FSOPS_TSC_MHZ MHz"
echo "BENCH {\"test\": \"guest\", \"kernel\": \"$(uname -r)\", \"cpus\": $(grep -c ^processor /proc/cpuinfo), \"clocksource\": \"$cs\", \"mem_kb\": $mem, \"tsc_mhz\": $FSOPS_TSC_MHZ}"

warm_memory
mount_vexfs /dev/vda /mnt/vexfs
mkdir -p /mnt/ext4
must mount -t ext4 /dev/vdb /mnt/ext4
grep -E ' /mnt/(vexfs|ext4) ' /proc/mounts

# bench FS REP TEST LINE: prints LINE ("TIME SECONDS COUNT") as a BENCH record.
bench() {
    set -- "$1" "$2" "$3" $4
    [ "$4" = TIME ] || fail "$1 round $2 $3: unexpected output '$*'"
    echo "BENCH {\"fs\": \"$1\", \"rep\": $2, \"test\": \"$3\", \"secs\": $5, \"ops\": $6}"
}

# timed FS REP TEST CMD...: runs `guest-fsops CMD...` and prints its BENCH line.
timed() {
    _fs=$1 _rep=$2 _test=$3
    shift 3
    _out=$($G "$@") || fail "$_fs round $_rep $_test: guest-fsops $* (status $?)"
    bench "$_fs" "$_rep" "$_test" "$_out"
}

settle() {
    $G syncfs /mnt/vexfs > /dev/null || fail "syncfs vexfs"
    $G syncfs /mnt/ext4 > /dev/null || fail "syncfs ext4"
}

# Clean pages, dentries and inodes of both filesystems out of memory (sync first: dirty pages
# are not dropped).
drop_caches() {
    sync
    echo 3 > /proc/sys/vm/drop_caches || fail "drop_caches"
}

round() {
    local fs=$1 r=$2 m=/mnt/$1
    section "round $r: $fs"
    settle
    must mkdir $m/c$r
    timed "$fs" "$r" create create $m/c$r "$FILES" 4096
    must rm -rf $m/c$r
    settle
    timed "$fs" "$r" seqwrite seqwrite $m/s$r "$MIB"
    drop_caches
    timed "$fs" "$r" seqread seqread $m/s$r
    drop_caches
    timed "$fs" "$r" randread randread $m/s$r "$RAND_N" "$r"
    must rm -f $m/s$r
    settle
    must mkdir $m/p$r
    timed "$fs" "$r" parwrite parwrite $m/p$r 4 "$PAR_MIB"
    must rm -rf $m/p$r
    settle
}

# bigdir FS REP: makes the big directory of round REP on FS.
bigdir() {
    local fs=$1 r=$2 m=/mnt/$1 out
    section "round $r: $fs, big directory of $DIR_N entries (at most ${DIR_CAP}s)"
    settle
    must mkdir $m/big$r
    out=$($G touch $m/big$r "$DIR_N" "$DIR_CAP") || fail "$fs round $r: dir-create (status $?)"
    bench "$fs" "$r" dir-create "$out"
    set -- $out
    [ "$3" -eq "$DIR_N" ] || echo "$fs round $r: dir-create stopped at the ${DIR_CAP}s cap: $3 of $DIR_N entries"
    echo "$3" > /tmp/big-$fs-$r
    settle
}

# lsbig FS REP: readdir, then readdir + stat, of the big directory of round REP on FS.
lsbig() {
    local fs=$1 r=$2 m=/mnt/$1/big$2 out n
    n=$(cat /tmp/big-$fs-$r)
    section "round $r: $fs, readdir and stat of $n entries (stat: at most ${STAT_CAP}s)"
    drop_caches
    out=$($G readdir $m) || fail "$fs round $r: readdir (status $?)"
    bench "$fs" "$r" readdir "$out"
    set -- $out
    [ "$3" -eq "$n" ] || fail "$fs round $r: readdir found $3 entries, $n were made"
    drop_caches
    out=$($G readdir $m stat "$STAT_CAP") || fail "$fs round $r: readdir + stat (status $?)"
    set -- $out
    [ "$3" -eq "$n" ] || fail "$fs round $r: readdir found $3 entries, $n were made"
    [ "$6" -eq "$n" ] || echo "$fs round $r: stat stopped at the ${STAT_CAP}s cap: $6 of $n entries"
    bench "$fs" "$r" stat "$4 $5 $6"
}

# rounds STEP: STEP FS R for every round R on both filesystems, vexfs first in even rounds.
rounds() {
    local r=0
    while [ "$r" -lt "$ROUNDS" ]; do
        if [ $((r % 2)) -eq 0 ]; then
            "$1" vexfs $r
            "$1" ext4 $r
        else
            "$1" ext4 $r
            "$1" vexfs $r
        fi
        r=$((r + 1))
    done
}

rounds round
rounds bigdir
rounds lsbig
df -k /mnt/vexfs /mnt/ext4
must umount /mnt/vexfs
must umount /mnt/ext4
section "done"
