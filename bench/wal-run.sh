#!/bin/sh
# Runs in the QEMU guest (bench/wal.sh boots it): the vector write-ahead log benchmark, in one boot.
#
#   wal-run.sh ROUNDS N_IMPORT N_ROWS PER BURST BURST_PER DURING AFTER K EF MKFS_ARGS...
#
# /dev/vda: a scratch disk, formatted here (mkfs.vexfs -f MKFS_ARGS) before every measurement, so
# each starts from a fresh, empty filesystem with the same parameters.
# /share: wal-tool (bench/wal-tool.c, static), import.fvecs (N_IMPORT rows), rows.fvecs (N_ROWS
# rows), burst.fvecs (BURST rows), query.fvecs, burst-gt.ivecs (the exact top K of each query
# among the burst's rows), tsc-mhz (the host's TSC rate: every time is read from the TSC, see
# bench/wal-tool.c; "t" fields are seconds on that clock).
#
# 1. ROUNDS rounds; in each, the two modes one after the other (the WAL first in even rounds,
#    --index-now first in odd ones), each on a fresh filesystem per test:
#      import  `vexctl import [--index-now]` of import.fvecs: one new file and one SET per vector
#      rows    N_ROWS / PER files, each `: > FILE; vexctl set FILE --rows A..B [--index-now]`:
#              PER chunks per SET
#    each timed whole (wal-tool run), then `vexctl wait-indexed --json` (the WAL's catch-up; 0
#    for --index-now), umount, fsck.vexfs -n.
# 2. The burst, on a fresh filesystem: `wal-tool set` of BURST vectors, BURST_PER per SET, through
#    the WAL; at once `wal-tool search ... catchup` (the queries in a loop while vectors are
#    pending, for at most DURING seconds); then `vexctl wait-indexed --json` for the rest of the
#    catch-up (from the burst's end, a sampler prints the pending count every 10 s); then AFTER
#    passes over every query (`wal-tool search ... after`); umount. bench/wal.sh checks that
#    image with fsck.vexfs -n.
# Every measurement is a line "BENCH {json}".
# Never print the words the harness takes for kernel errors (see scripts/lib.sh).
. /lib/vexfs/guest-lib.sh
ROUNDS=$1 N_IMPORT=$2 N_ROWS=$3 PER=$4 BURST=$5 BURST_PER=$6 DURING=$7 AFTER=$8 K=$9 EF=${10}
shift 10
S=/share
W=/tmp/wal-tool
M=/mnt/v

WAL_TSC_MHZ=$(cat $S/tsc-mhz) || fail "no $S/tsc-mhz"
export WAL_TSC_MHZ
cp $S/wal-tool $W || fail "copy wal-tool"
now() { $W now; }
# The TSC clock against the guest's own (jiffies), at the start and at the end.
echo "BENCH {\"tool\": \"clock\", \"at\": \"start\", \"t\": $(now), \"uptime\": $(cut -d' ' -f1 /proc/uptime)}"

cs=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)
section "guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, clocksource $cs, mkfs.vexfs $*"
echo "BENCH {\"tool\": \"guest\", \"kernel\": \"$(uname -r)\", \"cpus\": $(grep -c ^processor /proc/cpuinfo), \"clocksource\": \"$cs\", \"mem_kib\": $(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)}"
# The round inputs are read from /tmp (initramfs), not through 9p; the burst is read into
# memory by wal-tool before its timed loop.
for f in import.fvecs rows.fvecs; do
    cp $S/$f /tmp/$f || fail "copy $f to /tmp"
done

# fresh: a new filesystem on /dev/vda, mounted at $M; prints how long mkfs took.
fresh() {
    _t0=$(now)
    mkfs.vexfs -f -q "$@" /dev/vda || fail "mkfs.vexfs -f -q $* /dev/vda"
    echo "BENCH {\"tool\": \"mkfs\", \"t_start\": $_t0, \"t_end\": $(now)}"
    mount_vexfs /dev/vda $M
}

# finish: umount and fsck.vexfs -n of the filesystem just used.
finish() {
    must umount $M
    fsck.vexfs -n /dev/vda > /tmp/fsck.out 2>&1 || {
        cat /tmp/fsck.out
        fail "fsck.vexfs -n after $1 (status $?)"
    }
}

# caught_up TEST MODE REP: `vexctl wait-indexed --json`, as one BENCH line.
caught_up() {
    vexctl wait-indexed --json -q --interval 100 $M > /tmp/wait.json || fail "vexctl wait-indexed"
    echo "BENCH {\"tool\": \"wait\", \"test\": \"$1\", \"mode\": \"$2\", \"rep\": $3, \"t_end\": $(now), \"wait\": $(tr -d '\n' < /tmp/wait.json)}"
}

# timed TEST MODE REP VECTORS PER CMD...: runs CMD under wal-tool run; one BENCH line.
timed() {
    _test=$1 _mode=$2 _rep=$3 _n=$4 _per=$5
    shift 5
    _out=$($W run "$@") || fail "$_test $_mode round $_rep: $* (status $?)"
    set -- $_out
    [ "$1" = TIME ] || fail "$_test $_mode round $_rep: unexpected output '$_out'"
    echo "BENCH {\"tool\": \"round\", \"test\": \"$_test\", \"mode\": \"$_mode\", \"rep\": $_rep, \"vectors\": $_n, \"per_set\": $_per, \"secs\": $2, \"t_start\": $3, \"t_end\": $4, \"pending\": $($W pending $M)}"
}

# The many-chunks loop (run by `sh -c` under wal-tool run): FLAG is "" or --index-now.
cat > /tmp/rows.sh <<'EOF'
n=$1 per=$2 flag=$3 j=0
mkdir /mnt/v/rows || exit 1
while [ $((j * per)) -lt "$n" ]; do
    a=$((j * per)) b=$((j * per + per))
    [ "$b" -le "$n" ] || b=$n
    : > /mnt/v/rows/$j || exit 1
    vexctl set /mnt/v/rows/$j --fvecs /tmp/rows.fvecs --rows $a..$b $flag || exit 1
    j=$((j + 1))
done
EOF

measure() {
    _mode=$1 _rep=$2
    shift 2
    _flag=""
    [ "$_mode" = now ] && _flag=--index-now
    section "round $_rep, $_mode: vexctl import of $N_IMPORT vectors (one per SET)"
    fresh "$@"
    timed import "$_mode" "$_rep" "$N_IMPORT" 1 vexctl import --quiet $_flag /tmp/import.fvecs $M/imp
    caught_up import "$_mode" "$_rep"
    finish "import $_mode round $_rep"
    section "round $_rep, $_mode: vexctl set --rows of $N_ROWS vectors, $PER per SET"
    fresh "$@"
    timed rows "$_mode" "$_rep" "$N_ROWS" "$PER" sh /tmp/rows.sh "$N_ROWS" "$PER" "$_flag"
    caught_up rows "$_mode" "$_rep"
    finish "rows $_mode round $_rep"
}

r=0
while [ "$r" -lt "$ROUNDS" ]; do
    if [ $((r % 2)) -eq 0 ]; then
        measure wal $r "$@"
        measure now $r "$@"
    else
        measure now $r "$@"
        measure wal $r "$@"
    fi
    r=$((r + 1))
done

section "burst: $BURST vectors through the write-ahead log, $BURST_PER per SET"
fresh "$@"
$W set $M/b $S/burst.fvecs "$BURST" "$BURST_PER" wal || fail "wal-tool set (the burst)"
(
    while :; do
        echo "BENCH {\"tool\": \"pending\", \"t\": $(now), \"pending\": $($W pending $M)}"
        sleep 10
    done
) &
sampler=$!
section "searches while the index worker catches up (at most $DURING s)"
$W search $M/b "$BURST_PER" $S/query.fvecs $S/burst-gt.ivecs "$K" "$EF" "$DURING" catchup > /tmp/during.out ||
    fail "wal-tool search (catch-up)"
cat /tmp/during.out
covered=$(grep -o '"distinct_queries": [0-9]*' /tmp/during.out | cut -d' ' -f2)
section "catch-up: waiting for the index worker"
caught_up burst wal 0
kill $sampler
wait $sampler 2> /dev/null
section "searches after the catch-up ($AFTER passes)"
# The recall after, also over the queries the catch-up searches covered (if any).
[ "${covered:-0}" -gt 0 ] || covered=""
$W search $M/b "$BURST_PER" $S/query.fvecs $S/burst-gt.ivecs "$K" "$EF" "$AFTER" after $covered ||
    fail "wal-tool search (after)"
vexctl stats --json $M > /tmp/stats.json || fail "vexctl stats"
echo "BENCH {\"tool\": \"stats\", \"stats\": $(tr -d '\n' < /tmp/stats.json)}"
must umount $M
echo "BENCH {\"tool\": \"clock\", \"at\": \"end\", \"t\": $(now), \"uptime\": $(cut -d' ' -f1 /proc/uptime)}"
section "done"
