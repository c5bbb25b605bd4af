#!/bin/sh
# Runs in the QEMU guest (bench/profile.sh boots it): one benchmark phase under kprof.
#
#   profile-run.sh PHASE N
#
# /dev/vda: a fresh vexfs (search: a bulk-built one); /share: kprof, guest-fsops, tsc-mhz (search:
# guest-search, bench_search and its symbols, the queries). Each profile is printed
# between a line "PROFILE <what>" and "PROFILE-END".
# Never print the words the harness takes for kernel errors (see scripts/lib.sh).
. /lib/vexfs/guest-lib.sh
S=/share
FSOPS_TSC_MHZ=$(cat $S/tsc-mhz) || fail "no $S/tsc-mhz"
export FSOPS_TSC_MHZ
warm_memory
mount_vexfs /dev/vda /mnt
prof() {
    echo "PROFILE $1"
    shift
    # shellcheck disable=SC2086 # KPROF_ARGS: words
    $S/kprof -n 40 ${KPROF_ARGS:-} -- "$@" || fail "kprof $*"
    echo "PROFILE-END"
}
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
case $1 in
dir)
    must mkdir /mnt/big
    prof "create $2 entries in one directory" $S/guest-fsops touch /mnt/big "$2" 3000
    drop
    $S/guest-fsops readdir /mnt/big > /dev/null || fail "readdir"
    drop
    prof "stat of $2 entries, caches dropped" $S/guest-fsops readdir /mnt/big stat 3000
    ;;
seq)
    # Twice: on the fresh filesystem, then again after the first file's removal and a sync.
    prof "sequential write of $2 MiB, fresh filesystem" $S/guest-fsops seqwrite /mnt/s "$2"
    must rm /mnt/s
    sync
    prof "sequential write of $2 MiB, second file" $S/guest-fsops seqwrite /mnt/s2 "$2"
    ;;
par)
    must mkdir /mnt/p
    prof "4 writers at once, $2 MiB each" $S/guest-fsops parwrite /mnt/p 4 "$2"
    ;;
ingest)
    prof "vexctl import of $2 vectors (write-ahead log)" vexctl import --quiet $S/base.fvecs /mnt/docs
    prof "the index worker linking them (vexctl wait-indexed)" vexctl wait-indexed -q /mnt --timeout 3000
    ;;
search)
    # A warm-up pass inside each tool; 20 timed passes so that the profiles have samples. The
    # userspace side reads the unmounted device (as bench/guest-run.sh's), user mode sampled.
    KPROF_ARGS="-u $S/bench_search.syms"
    # The distance kernels the module picked: userspace runs the same ones.
    vexctl stats /mnt --json > /tmp/stats.json || fail "vexctl stats /mnt --json"
    impl=$(json_str distance_impl /tmp/stats.json)
    [ -n "$impl" ] || fail "no distance_impl in vexctl stats --json"
    prof "VEXFS_IOC_SEARCH at ef $2, k 10, 20 passes over the queries" \
        $S/guest-search /mnt /mnt/docs $S/query.fvecs $S/groundtruth.ivecs "$2" -k 10 -p 20
    must umount /mnt
    prof "the same searches in userspace (bench_search on /dev/vda, $impl)" \
        $S/bench_search /dev/vda $S/query.fvecs $S/groundtruth.ivecs "$2" -k 10 -p 20 --dist-impl "$impl"
    ;;
*) fail "unknown phase $1" ;;
esac
! grep -q ' /mnt ' /proc/mounts || must umount /mnt
