#!/usr/bin/env bash
# The ext4 oracle (issue 11, item 5): in one guest, an ext4 disk (/dev/vda) and a vexfs disk
# (/dev/vdb) run the same seeded random sequences of filesystem operations (testkit's fsops: create,
# pwrite at random offsets and sizes with sparse writes past EOF, O_APPEND writes, appends to two
# files in turn, truncate up and down, pread, rename over files and empty directories and onto
# non-empty ones, across types, into its own subtree, RENAME_NOREPLACE, link, symlink up to 4,095
# bytes, readlink, unlink, mkdir, rmdir, fsync, fdatasync, sync, chmod with set-id bits, utimensat
# with nanoseconds, lstat, lseek SEEK_DATA/SEEK_HOLE, FIEMAP's mapped ranges, names of 255 and
# 256 bytes). Each operation's result (errno name, bytes
# read and their hash, stat fields) must be the same on both, and so must the trees (paths, types,
# modes, link counts, sizes, sha256 of contents, symlink targets, which names are hard links of one
# inode) after the run, after stamping every entry's mtime to the nanosecond, and after umount and
# mount. fsops also checks each filesystem against its own model of the tree (every read, and the
# whole tree at the end). fsck.vexfs -n must find the vexfs disk clean, in the guest and on the host.
#
# Not compared: directory sizes (they follow each filesystem's directory format), st_blocks,
# atime and ctime, and mtimes set by the kernel's clock (only those set by utimensat).
#
# Sizes: by default fsops keeps every file at or below 200 allocated 4 KiB blocks, to keep a seed
# short; VEXFS_ORACLE_BIG=1 lifts files to 4,096 blocks and interleaved appends to 600 rounds
# (files of thousands of scattered blocks: extent trees, format v3; before them vexfs failed with
# EFBIG past 260 extents where ext4 succeeded).
# Left out of fsops (issue 11): mknod, O_TMPFILE, RENAME_EXCHANGE and RENAME_WHITEOUT (vexfs has
# them; fsops's model does not yet: guest 018 tests them), xattrs other than the embedding,
# fallocate, mmap writes, O_DIRECT.
#
# Variables: VEXFS_ORACLE_SEEDS (default 5) seeds SEED, SEED+1, ...; VEXFS_ORACLE_OPS (default 1000)
# operations per seed; VEXFS_ORACLE_BIG=1 the larger files above. A longer run, as issue 11 asks:
# VEXFS_ORACLE_SEEDS=20 VEXFS_ORACLE_OPS=2000. Replay one seed S: VEXFS_ORACLE_SEEDS=1 SEED=S.
. "$(dirname "$0")/lib.sh"

SEEDS=${VEXFS_ORACLE_SEEDS:-5}
OPS=${VEXFS_ORACLE_OPS:-1000}
BIG=${VEXFS_ORACLE_BIG:-0}
[[ $SEED =~ ^[0-9]+$ ]] || fail "SEED must be a number for this test (got '$SEED')"
[[ $SEEDS =~ ^[1-9][0-9]*$ && $OPS =~ ^[1-9][0-9]*$ && $BIG =~ ^[01]$ ]] \
    || fail "bad VEXFS_ORACLE_SEEDS=$SEEDS, VEXFS_ORACLE_OPS=$OPS or VEXFS_ORACLE_BIG=$BIG"
command -v mkfs.ext4 > /dev/null || fail "mkfs.ext4 missing: install e2fsprogs (scripts/setup deps)"
need_tool "$VEXFS_MUSL_BIN/fsops"

seeds=$(seq "$SEED" $((SEED + SEEDS - 1)) | tr '\n' ' ')
echo "seeds: $seeds($OPS operations each, big=$BIG)"

# Room for every seed at its block limit (16 MiB by default), beside vexfs's vector region.
size=$((512 + SEEDS * (BIG ? 64 : 16)))M
ext4=$(mkraw "$size")
# 4 KiB blocks as vexfs; 256-byte inodes for nanosecond times; inode tables and journal written
# now, so no lazy-init thread writes behind the test.
mkfs.ext4 -q -F -b 4096 -I 256 -E lazy_itable_init=0,lazy_journal_init=0 "$ext4" \
    || fail "mkfs.ext4 failed"
vex=$(mkimg "$size" --dim 8 --metric l2)

script=$(guest_script oracle.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
OPS=$1
BIG=$2
shift 2
flags=""
[ "$BIG" = 1 ] && flags="--big"
mkdir -p /mnt/ext4 /mnt/vexfs
must mount -t ext4 /dev/vda /mnt/ext4
mount_vexfs /dev/vdb /mnt/vexfs
must mkdir /mnt/ext4/oracle /mnt/vexfs/oracle
bad=0
bad_seeds=""
ran=0
for s in "$@"; do
    section "seed $s: $OPS operations on ext4, then on vexfs"
    # ext4 disagreeing with fsops' model means a bug in fsops: the test fails either way.
    fsops run $flags --seed "$s" --count "$OPS" --log "/tmp/ext4-$s.log" "/mnt/ext4/oracle/s$s" \
        || fail "seed $s: ext4 disagrees with fsops' model (status $?)"
    vrc=0
    fsops run $flags --seed "$s" --count "$OPS" --log "/tmp/vexfs-$s.log" "/mnt/vexfs/oracle/s$s" || vrc=$?
    ran=$((ran + OPS))
    if ! fsops diff "/tmp/ext4-$s.log" "/tmp/vexfs-$s.log"; then
        echo "MISMATCH: seed $s: the first operation whose result differs is above (- ext4, + vexfs)"
        bad=$((bad + 1))
        bad_seeds="$bad_seeds $s"
    elif [ "$vrc" -ne 0 ]; then
        echo "MISMATCH: seed $s: same results as ext4, but vexfs disagrees with fsops' model (status $vrc)"
        bad=$((bad + 1))
        bad_seeds="$bad_seeds $s"
    fi
done

# compare_trees WHAT [--mtimes]: the dumps of both oracle trees must be equal; vexfs's is kept
# in /tmp/vexfs-WHAT.dump.
compare_trees() {
    fsops dump $2 /mnt/ext4/oracle > "/tmp/ext4-$1.dump" || fail "fsops dump of ext4 ($1)"
    fsops dump $2 /mnt/vexfs/oracle > "/tmp/vexfs-$1.dump" || fail "fsops dump of vexfs ($1)"
    if fsops diff "/tmp/ext4-$1.dump" "/tmp/vexfs-$1.dump"; then
        echo "trees equal $1: $(wc -l < "/tmp/ext4-$1.dump") entries"
    else
        echo "MISMATCH: the trees differ $1 (- ext4, + vexfs)"
        bad=$((bad + 1))
        bad_seeds="$bad_seeds tree-$1"
    fi
}

section "trees after the run"
compare_trees after-run
section "mtimes stamped to the nanosecond"
must fsops stamp --seed "$1" /mnt/ext4/oracle
must fsops stamp --seed "$1" /mnt/vexfs/oracle
compare_trees stamped --mtimes
section "umount, fsck.vexfs -n, mount"
must umount /mnt/ext4
must umount /mnt/vexfs
fsck.vexfs -n /dev/vdb || fail "fsck.vexfs -n found problems after the run (status $?)"
must mount -t ext4 /dev/vda /mnt/ext4
mount_vexfs /dev/vdb /mnt/vexfs
compare_trees remounted --mtimes
fsops diff /tmp/vexfs-stamped.dump /tmp/vexfs-remounted.dump || fail "the vexfs tree changed across umount and mount"
must umount /mnt/ext4
must umount /mnt/vexfs
echo "oracle figures: $# seeds, $ran operations on each filesystem, $bad mismatches${bad_seeds:+ (at:$bad_seeds)}"
[ "$bad" -eq 0 ] || fail "vexfs differs from ext4: replay a seed S with VEXFS_ORACLE_SEEDS=1 SEED=S"
GUEST
)
# shellcheck disable=SC2086 # one argument per seed
run_guest --disk "$ext4" --disk "$vex" --timeout $((300 + SEEDS * OPS / 20)) "$script" "$OPS" "$BIG" $seeds
check_fsck "$vex"
e2fsck -fn "$ext4" > "$T/e2fsck.log" 2>&1 || { cat "$T/e2fsck.log"; fail "e2fsck -fn found the ext4 image damaged"; }
echo "080-ext4-oracle: PASS"
