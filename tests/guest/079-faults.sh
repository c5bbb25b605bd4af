#!/usr/bin/env bash
# Failure injection at each step of SET, REMOVE, create, rename, write and truncate (issue 8,
# item 4): a failing call fails cleanly (an errno, no kernel warning) and the filesystem stays
# consistent: either the operation undid itself (ENOSPC: nothing changed, the filesystem still
# writable, the journal not aborted) or the journal aborted (EIO mid-operation: EROFS until the
# next mount, which replays the last commit). In one guest boot:
#   1. ENOSPC in the vector region (/dev/vdb, 16 slots): SETs of 1..16 chunks, new or replacing,
#      through the WAL and with --index-now, with vectors pending or linked, that do not fit: each
#      fails with ENOSPC and changes nothing (every file's chunks (GET), every search answer, the
#      vector and free counts, before and after a remount); REMOVE, then the same SET works.
#   2. ENOSPC in the data region (/dev/vdc): a filesystem filled to exactly k free blocks, for k
#      from 0 to what the operation needs: create and rename into a directory whose block is full
#      (it becomes indexed: 3 blocks),
#      create in an empty directory (its first block), mkdir in the full directory, a long symlink, an append, a write that needs a 7th extent
#      (its block, then the extent block), a write through a shared mapping (page_mkwrite: SIGBUS),
#      truncate up then write, a SET of 6 chunks (its vector-id block). Below the need: ENOSPC
#      (SIGBUS), the state as before (also the free counts), the journal not aborted, the
#      filesystem writable; at the need: success. fsck.vexfs -n clean after each.
#   3. EIO from the block device (/dev/vda under a device-mapper device whose table is swapped
#      while mounted: chosen 4 KiB blocks mapped to the error target; dm-flakey is not needed).
#      Per operation (18: SETs new, replacing, --index-now, of 8 chunks, REMOVE, create, mkdir,
#      rename, rename over a file with embeddings, unlink, append, a 1 MiB append (its blocks
#      mapped in runs at once), mmap write, truncate down, truncate up then write, fallocate
#      KEEP_SIZE past the end of file (the inode's eofblocks flag, the superblock's feature),
#      fallocate growing a file, the same preallocation then a truncate through it) a
#      calibration run without errors records the state after it;
#      then cases: the caches dropped and one block failing (a candidate: each block of the
#      metadata regions in use, the used part of the data region; the operation meets the error
#      at its first read of that block, a step per block, or never reads it), the whole journal
#      failing (the commit), and, caches warm, every candidate failing (met at the commit's
#      checkpoint). The blocks fail from before the operation until after its syncfs and the
#      unmount; then the table is restored, fsck.vexfs -n (replaying in memory), mount
#      (replays): the state must be the one before (the operation failed: EIO, EROFS, SIGBUS) or the
#      one after (it and the syncfs succeeded), one of the two otherwise; fsck.vexfs -n after
#      the unmount; no kernel warning. (mincore on the device cannot tell which blocks an
#      operation read: the filesystem's buffers do not show in a mapping of the device.)
#   4. A failed allocation at each step (fail-nth, syzkaller's method): failslab (the test
#      kernel has CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS; part 4 fails without them)
#      set to fail allocations that may sleep too (ignore-gfp-wait N), silently (verbose 0),
#      never at random (probability 0). On part 3's base image on /dev/vda (no device-mapper),
#      part 3's operations but the 1 MiB append (a failure inside it makes a short write), each one faultops process (a sequence's parts joined by +): a
#      calibration counts the fault-injection points P the operation passes (cold caches); then
#      for n = 1, 2, ...: the base restored and mounted, caches dropped (inodes and buffer heads
#      are allocated too), the operation run with FAIL_NTH=n (the n-th allocation of its thread
#      fails), syncfs, unmount. The operation succeeds or fails with ENOMEM (EIO or EROFS only
#      with a journal abort, in dmesg), the syncfs succeeds unless the journal aborted; then
#      part 3's checks: fsck.vexfs -n, mount, the state before (the operation failed; in a
#      sequence whose K-th part failed, the state after the first K-1) or after it (succeeded),
#      fsck.vexfs -n; no kernel warning.
# FAULTS_FULL=1: every candidate block for every operation, and the journal and warm cases
# (CI: one block of the metadata regions per operation, chosen by the seed, and one of the
# journal and warm cases in turn), the part-2 operations at every k up to the need plus 1, and
# in part 4 every n until the operation no longer reaches its n-th point (CI: n = 1..4 and 3
# more chosen by the seed among 5..P). Figures: cases, failures injected, (operation, step)
# cases where the failure was met, errnos, aborts, fsck results, warnings; per operation of
# part 4, its steps P, results by errno, aborts. FAULTS_NTH="OP:N[,N...] ..." (with
# FAULTS_PARTS=4): only those part-4 cases, each printing the stack of the allocation that
# failed (a reproduction; the n of a given allocation may move by a few between runs, as the
# block layer's own allocations in the operation's thread depend on timing).
# Takes about 4.5 minutes (2 cores, TCG; part 4: 98 cases, 2 minutes). FAULTS_FULL=1 FAULTS_PARTS=4
# about 11 minutes (467 cases): too long for CI, hence the subset. Needs the host's dmsetup.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/crash-lib.sh"

FULL=${FAULTS_FULL:-0}
[[ $FULL =~ ^[01]$ ]] || fail "FAULTS_FULL must be 0 or 1, not '$FULL'"
[ -x "$VEXFS_MUSL_BIN/faultops" ] || fail "missing $VEXFS_MUSL_BIN/faultops: run scripts/setup tools"

hseed=$((SEED % 1000000))
img3=$(mkimg 8M -q --dim 384 --metric l2 --vectors 32 -N 64 --seed "$hseed")
img1=$(mkimg 16M -q --dim 384 --metric l2 --vectors 16 -N 64 --journal-blocks 1024 --seed "$hseed")
img2=$(mkimg 8M -q --dim 384 --metric l2 --vectors 32 -N 128 --seed "$hseed")
share="$T/share"
mkdir -p "$share"
crash_share_dmsetup "$share"
cp "$VEXFS_ROOT/tests/guest/crash-guest.sh" "$VEXFS_ROOT/tests/guest/faults-guest.sh" "$share/"
printf 'FS=vexfs\nSMALL=0\n' > "$share/crash-env.sh"
# 70 rows of the sample's queries (dim 384): the embeddings set; each observation searches all.
head -c $((70 * (4 + 384 * 4))) "$VEXFS_ROOT/data/pydocs-minilm/small/query.fvecs" > "$share/emb.fvecs"
"$VEXCTL" inspect "$img3" | awk '/^region/ { on = 1; next } on && NF >= 5 {
    n = $1; for (i = 2; i <= NF - 4; i++) n = n "_" $i; print n, $(NF - 3), $(NF - 2) }' > "$share/regions"

script=$(guest_script faults.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
. /share/crash-guest.sh
. /share/faults-guest.sh
FULL=$1
SEED=$2
PARTS=$3
NTHS=$4
E=$EMB
cp /share/regions /tmp/regions
# dmsetup and its libraries from tmpfs: loading them over 9p at each call is slow.
cp -r /share/dm /tmp/dm
DM="/tmp/dm/ld-linux-x86-64.so.2 --library-path /tmp/dm /tmp/dm/dmsetup"
: > /tmp/results      # one line per case: part op step outcome(ok|bad)
: > /tmp/problems
START=$(cut -d' ' -f1 /proc/uptime)

# problem MSG: a failed check, counted (the test fails at the end, after the figures).
problem() {
    echo "PROBLEM: $*"
    echo "$*" >> /tmp/problems
}

# fsck_clean DEV WHERE: fsck.vexfs -n must exit 0.
fsck_clean() {
    if fsck.vexfs -n "$1" > /tmp/fsck.out 2>&1; then
        echo fsck-ok >> /tmp/fscks
    else
        echo fsck-bad >> /tmp/fscks
        problem "$2: fsck.vexfs -n: $(grep -v 'blocks used' /tmp/fsck.out | head -n 3 | tr '\n' ' ')"
    fi
}
: > /tmp/fscks

# same FILE_A FILE_B WHERE: the two observations must be equal.
same() {
    cmp -s "$1" "$2" && return 0
    problem "$3: the state differs: $(diff "$1" "$2" | grep '^[-+][^-+]' | head -n 8 | tr '\n' ' ')"
    return 1
}

# ================================================================================================
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; echo "(part $1 not run: FAULTS_PARTS)"; return 1; }
if part 1; then
section "1. ENOSPC in the vector region (/dev/vdb: 16 slots)"
mount_vexfs /dev/vdb /mnt
for f in v1 v2 v3 v4 n1 n2; do must faultops create /mnt/$f > /dev/null; done
must vexctl set /mnt/v1 --fvecs $E --rows 0..2
must vexctl set /mnt/v2 --fvecs $E --rows 2..5
must vexctl set /mnt/v3 --fvecs $E --rows 5..10
must vexctl set /mnt/v4 --fvecs $E --rows 10..14 --index-now
must vexctl wait-indexed /mnt > /dev/null 2>&1
echo "14 of 16 slots used (v1: 2 chunks, v2: 3, v3: 5 (a vector-id block), v4: 4 (--index-now)), all linked"

# enospc_set WHAT ARGS: vexctl set ARGS must fail with ENOSPC and change nothing (the state
# observed before it, /tmp/v.before); the journal must not abort.
enospc_set() {
    _what=$1
    shift
    dmesg -c > /dev/null
    e=$(op_errno "vexctl set $*")
    observe /mnt > /tmp/v.after
    if [ "$e" = ENOSPC ]; then r=ok; else r=bad; problem "1: $_what: $e, not ENOSPC: $(head -c 300 /tmp/op.out)"; fi
    same /tmp/v.before /tmp/v.after "1: after $_what" || r=bad
    if dmesg | grep -q 'journal aborted'; then r=bad; problem "1: $_what: the journal aborted"; fi
    # Which limit refused it: the slots, or (--index-now) the journal's share for one SET.
    _why=slots
    dmesg | grep -q 'more than one transaction may take' && _why="the journal's bound"
    echo "1 set ${_what%% *} $r" >> /tmp/results
    echo "  $_what: $e ($_why), state unchanged: $r"
}
observe /mnt > /tmp/v.before
enospc_set "new file, 3 chunks, WAL (2 slots free)" /mnt/n1 --fvecs $E --rows 20..23
enospc_set "new file, 3 chunks, --index-now" /mnt/n1 --fvecs $E --rows 20..23 --index-now
enospc_set "replacing 2 chunks by 5, WAL (4 slots with its own)" /mnt/v1 --fvecs $E --rows 20..25
enospc_set "replacing 2 chunks by 5, --index-now" /mnt/v1 --fvecs $E --rows 20..25 --index-now
enospc_set "replacing 5 chunks by 8 (vector-id block kept)" /mnt/v3 --fvecs $E --rows 20..28
enospc_set "new file, 16 chunks (the whole region)" /mnt/n1 --fvecs $E --rows 20..36
enospc_set "new file, 17 chunks (more than the region)" /mnt/n1 --fvecs $E --rows 20..37 --index-now
# With vectors pending (not yet linked): one more SET takes slot 15; the next needs 2.
must vexctl set /mnt/n2 --fvecs $E --row 40
observe /mnt > /tmp/v.before
enospc_set "new file, 2 chunks, one vector pending" /mnt/n1 --fvecs $E --rows 20..22
enospc_set "replacing a pending chunk by 3" /mnt/n2 --fvecs $E --rows 20..23
must umount /mnt
fsck_clean /dev/vdb "1: after the ENOSPC SETs"
mount_vexfs /dev/vdb /mnt
observe /mnt > /tmp/v.after
same /tmp/v.before /tmp/v.after "1: after the remount" && echo "  the remount shows the same state"
# REMOVE frees 5 linked slots (tombstones: a SET that finds no free slot purges them).
e=$(op_errno "vexctl rm-embedding /mnt/v3")
[ "$e" = ok ] || problem "1: REMOVE v3: $e"
e=$(op_errno "vexctl set /mnt/n1 --fvecs $E --rows 20..23")
[ "$e" = ok ] || problem "1: SET n1 3 chunks after the REMOVE: $e"
e=$(op_errno "vexctl set /mnt/v1 --fvecs $E --rows 23..26 --index-now")
[ "$e" = ok ] || problem "1: SET v1 3 chunks --index-now after the REMOVE: $e"
must vexctl wait-indexed /mnt > /dev/null 2>&1
observe /mnt > /tmp/v.after
for r in 20 21 22; do grep -q "^E:$r n1 " /tmp/v.after || problem "1: row $r of n1 not found after the SET"; done
for r in 23 24 25; do grep -q "^E:$r v1 " /tmp/v.after || problem "1: row $r of v1 not found after the SET"; done
for r in 5 6 7 8 9 0 1; do ! grep -q "^E:$r " /tmp/v.after || problem "1: row $r still found after its removal or replacement"; done
echo "  REMOVE, then SET (3 chunks, WAL) and SET (3 chunks replacing 2, --index-now): $(grep -c '^E:' /tmp/v.after) embeddings found"
must umount /mnt
fsck_clean /dev/vdb "1: at the end"
fi

# ================================================================================================
if part 2; then
section "2. ENOSPC in the data region (/dev/vdc)"
mount_vexfs /dev/vdc /mnt
# name200 TAG: a 200-byte name.
name200() { printf '%s%0196d' "$1" 0; }
# How many 200-byte names fill a directory block: the count at which it grows.
must mkdir /mnt/probe
c=0
while [ "$(stat -c %s /mnt/probe)" -le 4096 ] && [ $c -lt 100 ]; do
    c=$((c + 1))
    must faultops create "/mnt/probe/$(name200 p$c)" > /dev/null
done
c=$((c - 1))
must rm -rf /mnt/probe
[ $c -ge 5 ] || fail "2: a directory block holds only $c 200-byte names?"
must mkdir /mnt/full /mnt/empty
i=0
while [ $i -lt $c ]; do i=$((i + 1)); must faultops create "/mnt/full/$(name200 f$i)" > /dev/null; done
[ "$(stat -c %s /mnt/full)" = 4096 ] || fail "2: /mnt/full is $(stat -c %s /mnt/full) bytes with $c names"
echo "a directory block holds $c names of 200 bytes: /full is one full block"
must faultops write /mnt/w 0 4096 > /dev/null
for b in 0 2 4 6 8 10; do must faultops write /mnt/frag $((b * 4096)) 4096 > /dev/null; done
must faultops create /mnt/s > /dev/null
must faultops truncate /mnt/s 1048576 > /dev/null
must faultops write /mnt/a 0 100 > /dev/null
must faultops create /mnt/g > /dev/null
# Blocks freed (the probe directory's) are barred until a checkpoint: the remount does one.
must umount /mnt
mount_vexfs /dev/vdc /mnt
# Fill the rest: the filler's size is the free space.
dd if=/dev/zero of=/mnt/filler bs=4096 2> /dev/null
must faultops syncfs /mnt > /dev/null
FILL=$(($(stat -c %s /mnt/filler) / 4096))
echo "filler: $FILL blocks; free now: $(stat -f -c %f /mnt)"
must umount /mnt
fsck_clean /dev/vdc "2: the full filesystem"
must dd if=/dev/vdc of=/tmp/full.img bs=1M 2> /dev/null
# The full filesystem with exactly k free blocks, k = 0..4 (freed blocks become allocatable at
# the checkpoint of the unmount).
for k in 0 1 2 3 4; do
    must dd if=/tmp/full.img of=/dev/vdc bs=1M conv=fsync 2> /dev/null
    mount_vexfs /dev/vdc /mnt
    must faultops truncate /mnt/filler $(((FILL - k) * 4096)) > /dev/null
    must umount /mnt
    must dd if=/dev/vdc of=/tmp/full$k.img bs=1M 2> /dev/null
done

# data_case NAME NEED CMD [PRE]: (PRE, a command run first, not part of the operation) for k = 0 .. NEED (NEED+1 with FAULTS_FULL=1) free blocks: CMD must
# fail with ENOSPC (SIGBUS for a mapping) below NEED, changing nothing, and succeed at NEED.
data_case() {
    _name=$1 _need=$2 _cmd=$3 _pre=${4:-}
    _top=$_need
    [ "$FULL" = 1 ] && _top=$((_need + 1))
    _k=0
    _line="  $_name (needs $_need):"
    while [ $_k -le $_top ]; do
        must dd if=/tmp/full$_k.img of=/dev/vdc bs=1M conv=fsync 2> /dev/null
        mount_vexfs /dev/vdc /mnt
        [ -z "$_pre" ] || (cd /mnt && must sh -c "$_pre" > /dev/null)
        _free=$(stat -f -c %f /mnt)
        [ "$_free" = $_k ] || problem "2: $_name: $_free blocks free, $_k wanted"
        observe /mnt > /tmp/d.before
        dmesg -c > /dev/null
        _e=$(cd /mnt && op_errno "$_cmd")
        cp /tmp/op.out /tmp/data.out
        _s=$(op_errno "faultops syncfs /mnt")
        _r=ok
        if [ $_k -lt "$_need" ]; then
            case $_e in ENOSPC|SIGBUS) ;; *) _r=bad; problem "2: $_name with $_k free: $_e, not ENOSPC: $(head -c 200 /tmp/data.out)" ;; esac
            [ "$_s" = ok ] || { _r=bad; problem "2: $_name with $_k free: syncfs after the failure: $_s"; }
            if dmesg | grep -q 'journal aborted'; then _r=bad; problem "2: $_name with $_k free: the journal aborted"; fi
        else
            [ "$_e" = ok ] || { _r=bad; problem "2: $_name with $_k free: $_e, not ok: $(head -c 200 /tmp/data.out)"; }
        fi
        must umount /mnt
        fsck_clean /dev/vdc "2: $_name with $_k free"
        mount_vexfs /dev/vdc /mnt
        if [ $_k -lt "$_need" ]; then
            observe /mnt > /tmp/d.after
            same /tmp/d.before /tmp/d.after "2: $_name with $_k free" || _r=bad
            # Still writable: a file in the root (no block needed), then its removal.
            [ "$(op_errno "faultops create /mnt/probe && faultops unlink /mnt/probe")" = ok ] || { _r=bad; problem "2: $_name with $_k free: not writable after ENOSPC"; }
        fi
        must umount /mnt
        echo "2 $_name k$_k $_r" >> /tmp/results
        _line="$_line k=$_k $_e"
        _k=$((_k + 1))
    done
    echo "$_line"
}
# A directory whose one block is full becomes indexed (dir_index, on by default) and its bucket
# splits: 3 blocks free at once (core::dir_index::CONVERT_BLOCKS), else ENOSPC before anything.
data_case create-in-full-dir 3 "faultops create full/$(name200 x)"
data_case create-in-empty-dir 1 "faultops create empty/x"
data_case mkdir-in-full-dir 3 "faultops mkdir full/$(name200 y)"
data_case symlink-3000 1 "faultops symlink 3000 sl"
data_case rename-into-full-dir 3 "faultops rename a full/$(name200 z)"
data_case append 1 "faultops write w 4096 4096"
data_case write-7th-extent 2 "faultops write frag 49152 4096"
data_case mmap-write 1 "faultops mmap-write s 8192 4096"
data_case truncate-up-write 1 "faultops write s 2000000 100" "faultops truncate s 3000000"
data_case set-6-chunks 1 "vexctl set g --fvecs $E --rows 60..66"
fi

# ================================================================================================
# Parts 3 and 4: the base image on the device $D (part 3: /dev/vda under device-mapper; part 4:
# /dev/vda), the state before an operation (/tmp/m0) and after it (/tmp/m1.OP), and the check of
# what a case left.

# The operations of parts 3 and 4, one faultops process each (FAIL_NTH counts the steps of one
# process; a SET as `vexctl set` makes it, VEXFS_SET_TRUNCATE): name, then the command run in
# /mnt.
cat > /tmp/ops <<'OPS'
set-new faultops set d1/f1 /share/emb.fvecs 20 1
set-replace faultops set d1/f3 /share/emb.fvecs 21 3
set-index-now faultops set d2/g /share/emb.fvecs 25 2 index-now
set-7-chunks faultops set d1/f1 /share/emb.fvecs 28 7
remove faultops rm-embedding d1/f3
create faultops create d2/new
mkdir faultops mkdir d1/sub
rename faultops rename d1/f2 d2/f2
rename-over faultops rename d1/f3 e5
unlink faultops unlink e5
write faultops write d1/f1 8192 4096
append-1m faultops write d1/f1 8192 1048576
mmap-write faultops mmap-write t 16384 4096
truncate-down faultops truncate big 4096
truncate-up-write faultops truncate t 100000 + write t 90000 100
falloc-keep faultops fallocate big keep 36000 20000
falloc-grow faultops fallocate t alloc 36000 8000
falloc-keep-trunc faultops fallocate big keep 40960 40960 + truncate big 30000
OPS

# make_base: the base tree made on $D, observed (/tmp/m0) and kept in /tmp/base.img.
make_base() {
    mount_vexfs $D /mnt
    must mkdir /mnt/d1 /mnt/d2
    must faultops write /mnt/d1/f1 0 5000 > /dev/null
    must faultops write /mnt/d1/f2 0 100 > /dev/null
    must faultops create /mnt/d1/f3 > /dev/null
    must faultops write /mnt/d2/g 0 10 > /dev/null
    must faultops create /mnt/e5 > /dev/null
    must faultops write /mnt/big 0 40000 > /dev/null
    must faultops write /mnt/t 0 100 > /dev/null
    must faultops truncate /mnt/t 40000 > /dev/null
    must faultops symlink 500 /mnt/sl > /dev/null
    must vexctl set /mnt/d1/f2 --fvecs $E --row 0
    must vexctl set /mnt/d1/f3 --fvecs $E --rows 1..4
    must vexctl set /mnt/e5 --fvecs $E --rows 5..11
    must vexctl wait-indexed /mnt > /dev/null 2>&1
    observe /mnt > /tmp/m0
    must umount /mnt
    fsck_clean $D "the base image"
    must dd if=$D of=/tmp/base.img bs=1M 2> /dev/null
    echo "base: $(grep -c '^P:' /tmp/m0) paths, $(grep -c '^E:' /tmp/m0) embeddings"
}

# restore_base: the base image onto $D. The first fsync of the device after a case
# whose writes failed reports that error (errseq: an error no one saw goes to the next opener),
# so a failed first copy is tried once more.
restore_base() {
    dd if=/tmp/base.img of=$D bs=1M conv=fsync 2> /dev/null ||
        dd if=/tmp/base.img of=$D bs=1M conv=fsync 2> /tmp/dd.err || fail "restoring the base image: $(cat /tmp/dd.err)"
}

# calibrate OP CMD: CMD run on the base image without failures (caches dropped before it, as in
# the cases), synced, the filesystem mounted again: the state after it, /tmp/m1.OP. CMD's output
# stays in /tmp/op.out.
calibrate() {
    restore_base
    mount_vexfs $D /mnt
    sync
    echo 3 > /proc/sys/vm/drop_caches
    e=$(cd /mnt && op_errno "$2")
    [ "$e" = ok ] || fail "$1 without failures: $e: $(cat /tmp/op.out)"
    must faultops syncfs /mnt > /dev/null
    must umount /mnt
    mount_vexfs $D /mnt
    must vexctl wait-indexed /mnt > /dev/null 2>&1
    observe /mnt > "/tmp/m1.$1"
    must umount /mnt
    cmp -s /tmp/m0 "/tmp/m1.$1" && fail "$1 changed nothing"
}

# check_outcome WHERE OP E S [BEFORE]: after operation OP ended with E (ok or an errno) and its
# syncfs with S, the filesystem on $D unmounted: fsck.vexfs -n (replaying in memory), mount
# (replays): the state must be the one before (BEFORE, default /tmp/m0: OP failed), the one
# after (/tmp/m1.OP: OP and the syncfs succeeded), one of the two otherwise; fsck.vexfs -n after
# the unmount. Problems are named WHERE; status 1 if a check failed.
check_outcome() {
    _co=0
    _before=${5:-/tmp/m0}
    fsck_clean $D "$1, before the replay"
    [ "$(tail -n 1 /tmp/fscks)" = fsck-ok ] || _co=1
    if mount -t vexfs $D /mnt 2> /tmp/mount.err; then
        observe /mnt > /tmp/obs
        umount /mnt
        if [ "$3" != ok ]; then
            same "$_before" /tmp/obs "$1 ($3, the state before wanted)" || _co=1
        elif [ "$4" = ok ]; then
            same "/tmp/m1.$2" /tmp/obs "$1 (ok and synced: the state after wanted)" || _co=1
        elif ! cmp -s "$_before" /tmp/obs && ! cmp -s "/tmp/m1.$2" /tmp/obs; then
            _co=1
            problem "$1 (ok, syncfs $4): neither the state before nor after: $(diff "$_before" /tmp/obs | grep '^[-+][^-+]' | head -n 3 | tr '\n' ' ')"
        fi
    else
        _co=1
        problem "$1: mount after the failure: $(cat /tmp/mount.err)"
    fi
    fsck_clean $D "$1, after the replay"
    [ "$(tail -n 1 /tmp/fscks)" = fsck-ok ] || _co=1
    return $_co
}

# ================================================================================================
if part 3; then
case " $PARTS " in *" x "*) set -x ;; esac
section "3. EIO from the block device (/dev/vda under device-mapper, tables swapped while mounted)"
LINEAR="0 $(cat /sys/block/vda/size) linear /dev/vda 0"
dm_create fx "$LINEAR"
D=$DM_DEV
JOURNAL=$(awk '$1 == "journal" { print $2 "+" $3 }' /tmp/regions)
make_base


# eio_case OP CMD CACHE STEP SPEC...: one case: the blocks of SPEC (fail_table) fail from
# before the operation until after the unmount (CACHE cold: caches dropped before; warm: the
# tree read first). Appends "3 OP STEP outcome met op/syncfs-errno aborted CACHE" to
# /tmp/results.
eio_case() {
    _op=$1 _cmd=$2 _cache=$3 _step=$4
    shift 4
    restore_base
    mount_vexfs $D /mnt
    if [ "$_cache" = warm ]; then observe /mnt > /dev/null; else sync; echo 3 > /proc/sys/vm/drop_caches; fi
    dmesg -c > /dev/null
    dm_swap fx "$(fail_table "$@")"
    _e=$(cd /mnt && op_errno "$_cmd")
    cp /tmp/op.out /tmp/eio.out
    _s=$(op_errno "faultops syncfs /mnt")
    # The unmount too (its commit and checkpoint meet the errors), then the table restored.
    umount /mnt 2> /tmp/umount.err || problem "3: $_op $_step: umount: $(cat /tmp/umount.err)"
    dm_swap fx "$LINEAR"
    dmesg > /tmp/case.dmesg
    _ab=0
    grep -q 'journal aborted' /tmp/case.dmesg && _ab=1
    _w=$(kernel_problems /tmp/case.dmesg)
    [ "$_w" = 0 ] || problem "3: $_op $_step: $_w kernel warnings"
    _r=ok
    case $_e in
        # SIGBUS: mmap-write's page fault met the EIO (page_mkwrite's errors are delivered so).
        ok|EIO|EROFS|SIGBUS) ;;
        *) _r=bad; problem "3: $_op $_step: failed with $_e (EIO, EROFS or SIGBUS expected): $(head -c 200 /tmp/eio.out)" ;;
    esac
    check_outcome "3: $_op $_step" "$_op" "$_e" "$_s" || _r=bad
    _met=0
    { [ "$_e" != ok ] || [ "$_s" != ok ]; } && _met=1
    echo "3 $_op $_step $_r $_met $_e/$_s $_ab $_cache" >> /tmp/results
    echo "    $_op, $_step ($_cache): op $_e, syncfs $_s, aborted $_ab, $_r"
}

# The candidate blocks: every block of the metadata regions in use (the journal's aside: a case
# of its own), the used part of the data region (directory, extent, vector-id, symlink and file
# blocks). The kernel reads them through the buffer cache; one dropped from the cache is read
# again by the next operation that needs it, which then meets its error.
used=$(awk -v f="$(grep -o '^S: [0-9]*' /tmp/m0 | cut -d' ' -f2)" '$1 == "data" { print $3 - f }' /tmp/regions)
slots=$(grep -c '^E:' /tmp/m0)
awk -v used="$used" -v slots="$slots" '
    $1 == "block_bitmap" || $1 == "inode_bitmap" || $1 == "vector_bitmap" || $1 == "vector_map" || $1 == "hnsw_index" {
        for (b = $2; b < $2 + $3; b++) print b, $1 }
    $1 == "inode_table" { print $2, $1 }
    $1 == "vector_data" { n = int((slots + 8) * 1536 / 4096) + 1; for (b = $2; b < $2 + n && b < $2 + $3; b++) print b, $1 }
    $1 == "data" { for (b = $2; b < $2 + used + 4; b++) print b, $1 }' /tmp/regions > /tmp/blocks.r
cut -d' ' -f1 /tmp/blocks.r > /tmp/blocks
echo "candidate blocks: $(wc -l < /tmp/blocks) ($(cut -d' ' -f2 /tmp/blocks.r | uniq -c | awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }'))"
nop=0
while read -r op cmd <&3; do
    # Calibration: no error; the state after.
    calibrate "$op" "$cmd"
    if [ "$FULL" = 1 ]; then
        cp /tmp/blocks.r /tmp/pick
    else
        # One block of the metadata regions, chosen by the seed (other blocks, steps and regions
        # with another seed); FAULTS_FULL=1 for the data region's blocks too.
        awk -v s="$SEED$nop" 'BEGIN { srand(s) } $2 != "data" { print int(rand() * 1000000), $0 }' /tmp/blocks.r |
            sort -n | head -n 1 | cut -d' ' -f2- > /tmp/pick
    fi
    echo "  $op"
    while read -r b reg <&4; do
        eio_case "$op" "$cmd" cold "$reg:$b" "$b"
    done 4< /tmp/pick
    # The commit (the whole journal failing), and, caches warm, every block of the operation
    # failing (met at the commit's checkpoint, at the unmount): both with FAULTS_FULL=1, else
    # one of the two in turn.
    if [ "$FULL" = 1 ] || [ $((nop % 2)) = 0 ]; then
        eio_case "$op" "$cmd" cold "journal" "$JOURNAL"
    fi
    if [ "$FULL" = 1 ] || [ $((nop % 2)) = 1 ]; then
        # shellcheck disable=SC2046 # one SPEC per block
        eio_case "$op" "$cmd" warm "all-blocks" $(cat /tmp/blocks)
    fi
    nop=$((nop + 1))
done 3< /tmp/ops
must $DM remove fx
fi

# ================================================================================================
if part 4; then
section "4. a failed allocation at each step (fail-nth, failslab)"
# The kernel's failslab settings: allocations that may sleep fail too (ignore-gfp-wait N), no
# message per injected failure (verbose 0: else a stack dump each time), no random failures
# (probability 0): only fail-nth injects, in the thread that armed it (faultops FAIL_NTH=N).
mount -t debugfs none /sys/kernel/debug 2> /dev/null
F=/sys/kernel/debug/failslab
if [ ! -d $F ] || [ ! -e /proc/thread-self/fail-nth ]; then
    problem "4: no $F or /proc/thread-self/fail-nth: the test kernel needs CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS and CONFIG_DEBUG_FS (qemu/kernel.config)"
else
echo N > $F/ignore-gfp-wait
echo 0 > $F/verbose
echo 0 > $F/probability
[ "$(cat $F/ignore-gfp-wait) $(cat $F/verbose) $(cat $F/probability)" = "N 0 0" ] ||
    fail "4: failslab settings not taken: $(cat $F/ignore-gfp-wait) $(cat $F/verbose) $(cat $F/probability)"
# FAULTS_NTH (a reproduction): failslab prints each injected failure's stack (verbose 2), kept
# off the console during the operation (console loglevel 1: the harness takes a call trace on
# the console for a kernel error); the stack is printed from dmesg, functions only.
CONSOLE_LEVEL=$(cut -f1 /proc/sys/kernel/printk)
[ -z "$NTHS" ] || echo 2 > $F/verbose
# The base image of part 3, on /dev/vda itself (no device-mapper: its allocations would be
# counted among the operation's steps).
D=/dev/vda
[ -f /tmp/base.img ] || make_base

# nth_case OP CMD N: one case: the base mounted, caches dropped, CMD run with FAIL_NTH=N, its
# syncfs, the unmount; CMD must succeed or fail with ENOMEM (EIO, EROFS or SIGBUS only with the
# journal aborted, in dmesg), the syncfs succeed unless the journal aborted; then part 3's
# checks (check_outcome; when operation K of a sequence failed, the state before it is the one
# after the first K-1, /tmp/m1.OP.K-1). Sets NTH to CMD's fail-nth line (injected | not-reached P); appends
# "4 OP nN outcome injected(1|0) op/syncfs-errno aborted" to /tmp/results.
nth_case() {
    _op=$1 _cmd=$2 _n=$3
    restore_base
    mount_vexfs $D /mnt
    sync
    echo 3 > /proc/sys/vm/drop_caches
    dmesg -c > /dev/null
    [ -z "$NTHS" ] || echo 1 > /proc/sys/kernel/printk
    _e=$(cd /mnt && op_errno "FAIL_NTH=$_n $_cmd")
    cp /tmp/op.out /tmp/nth.out
    [ -z "$NTHS" ] || echo "$CONSOLE_LEVEL" > /proc/sys/kernel/printk
    NTH=$(grep -oE '^(injected|not-reached [0-9]+)$' /tmp/nth.out)
    _s=$(op_errno "faultops syncfs /mnt")
    umount /mnt 2> /tmp/umount.err || problem "4: $_op n=$_n: umount: $(cat /tmp/umount.err)"
    dmesg > /tmp/case.dmesg
    _ab=0
    grep -q 'journal aborted' /tmp/case.dmesg && _ab=1
    _w=$(kernel_problems /tmp/case.dmesg)
    _r=ok
    [ "$_w" = 0 ] || { _r=bad; problem "4: $_op n=$_n: $_w kernel warnings: $(grep -m 3 -E 'WARN''ING|BU''G:|Oo''ps|lock''dep' /tmp/case.dmesg | tr '\n' ' ')"; }
    case $NTH in
        injected|not-reached*) ;;
        *) _r=bad; problem "4: $_op n=$_n: no fail-nth line from faultops: $(head -c 200 /tmp/nth.out)" ;;
    esac
    case $_e/$_ab in
        ok/*|ENOMEM/*|EIO/1|EROFS/1|SIGBUS/1) ;;
        *) _r=bad; problem "4: $_op n=$_n: $_e (ENOMEM expected; EIO/EROFS only with a journal abort): $(head -c 200 /tmp/nth.out | tr '\n' ' ') dmesg: $(grep -m 3 vexfs /tmp/case.dmesg | tr '\n' ' ')" ;;
    esac
    [ "$_s" = ok ] || [ $_ab = 1 ] || { _r=bad; problem "4: $_op n=$_n: syncfs after it: $_s, no journal abort"; }
    [ "$NTH" != "${NTH#not-reached}" ] && [ "$_e" != ok ] && { _r=bad; problem "4: $_op n=$_n: $_e with no failure injected"; }
    _k=$(grep -oE ' in operation [0-9]+$' /tmp/nth.out | grep -oE '[0-9]+$')
    _before=/tmp/m0
    [ -z "$_k" ] || _before="/tmp/m1.$_op.$((_k - 1))"
    check_outcome "4: $_op n=$_n" "$_op" "$_e" "$_s" "$_before" || _r=bad
    _inj=0
    [ "$NTH" = injected ] && _inj=1
    echo "4 $_op n$_n $_r $_inj $_e/$_s $_ab" >> /tmp/results
    # A case with a problem, and every case of FAULTS_NTH: what the operation and the kernel said
    # (the module's messages; with FAULTS_NTH, the failed allocation's call chain, generic
    # frames left out).
    if [ $_r != ok ] || [ -n "$NTHS" ]; then
        echo "    $_op n=$_n: $(head -n 1 /tmp/nth.out), $NTH; syncfs $_s; journal aborted $_ab: $([ $_r = ok ] && echo ok || echo a problem)"
        # The frames the unwinder is sure of, or (none) all it printed, marked '?'.
        sed -n '/forcing a failure/,/<\/TASK>/p' /tmp/case.dmesg > /tmp/stack
        grep -q ']  [A-Za-z_]' /tmp/stack && grep -v ' ? ' /tmp/stack > /tmp/stack.sure && mv /tmp/stack.sure /tmp/stack
        grep -oE '[A-Za-z_][A-Za-z0-9_.$]*\+0x[0-9a-f]+/0x[0-9a-f]+( \[vexfs\])?' /tmp/stack |
            grep -vE '^(dump_stack_lvl|should_fail_ex|should_failslab|slab_pre_alloc_hook|slab_alloc_node|krealloc_noprof|__kmalloc[a-z_]*|kmalloc_trace[a-z_]*|kmem_cache_alloc[a-z_]*)\+' |
            head -n 12 | demangle_frames | sed 's/^/      at /'
        grep -E ' vexfs: |VM_FAULT_OOM' /tmp/case.dmesg | grep -vE 'distance kernel|WARN''ING|BU''G:|Oo''ps' | head -n 8 | sed 's/^/      /'
    fi
}

nop=0
while read -r op cmd <&3; do
    # A failed allocation inside a write of many pages (a page-cache node, a buffer head)
    # makes it short, which leaves the pages before it written: neither the state before nor
    # after. Part 3 runs it (an I/O error aborts the journal: the state before).
    case $op in *-1m) continue ;; esac
    if [ -n "$NTHS" ]; then
        ns=$(echo "$NTHS" | tr ' ' '\n' | awk -F: -v op="$op" '$1 == op { gsub(/,/, "\n", $2); print $2 }')
        [ -n "$ns" ] || continue
    fi
    # Calibration: no failure (FAIL_NTH past the end), the state after, and the number of
    # fault-injection points the operation passes, P.
    [ ! -f "/tmp/m1.$op" ] || mv "/tmp/m1.$op" "/tmp/m1.3.$op"
    calibrate "$op" "FAIL_NTH=1000000 $cmd"
    P=$(grep -oE '^not-reached [0-9]+$' /tmp/op.out | cut -d' ' -f2)
    [ -n "$P" ] || fail "4: $op: no fail-nth count from faultops: $(cat /tmp/op.out)"
    # A sequence (faultops A + B ...): the state after its first K operations, /tmp/m1.OP.K.
    k=1 rest=${cmd#faultops } prefix=
    while [ "$rest" != "${rest#* + }" ]; do
        prefix="$prefix${prefix:+ + }${rest%% + *}"
        rest=${rest#* + }
        calibrate "$op.$k" "faultops $prefix"
        k=$((k + 1))
    done
    # Part 3 ran the same operation with vexctl: the same state after it.
    [ ! -f "/tmp/m1.3.$op" ] || same "/tmp/m1.3.$op" "/tmp/m1.$op" "4: $op: faultops and part 3's command differ"
    # The steps: FAULTS_FULL=1 every n from 1 until the operation no longer reaches its n-th
    # point (syzkaller's loop); else n = 1..4 and 3 more chosen by the seed among 5..P.
    if [ -n "$NTHS" ]; then
        for n in $ns; do nth_case "$op" "$cmd" "$n"; done
        steps=$P
    elif [ "$FULL" = 1 ]; then
        n=1
        while :; do
            nth_case "$op" "$cmd" $n
            case $NTH in injected) ;; *) break ;; esac
            [ $n -lt 5000 ] || fail "4: $op: still injected at n=$n"
            n=$((n + 1))
        done
        steps=$((n - 1))
        [ "$steps" = "$P" ] || echo "    ($op: $steps steps here, $P at the calibration)"
    else
        awk -v p="$P" -v s="$SEED$nop" 'BEGIN {
            for (n = 1; n <= 4 && n <= p; n++) print n
            srand(s); k = 0
            while (p > 4 && k < 3 && k < p - 4) { n = 5 + int(rand() * (p - 4)); if (!(n in seen)) { seen[n] = 1; print n; k++ } } }' |
            sort -n > /tmp/ns
        while read -r n <&4; do nth_case "$op" "$cmd" "$n"; done 4< /tmp/ns
        steps=$P
    fi
    awk -v op="$op" -v steps="$steps" '$1 == 4 && $2 == op {
            n++; split($6, es, "/"); errs[es[1]]++; inj += $5; ab += $7; if ($4 != "ok") bad++
            if ($5 == 1 && es[1] == "ok") okinj++ }
        END { printf "  %-18s %4d steps, %3d run:", op, steps, n
              for (e in errs) printf " %s %d", e, errs[e]
              printf "; ok despite the failure %d, aborts %d, problems %d\n", okinj, ab, bad }' /tmp/results
    nop=$((nop + 1))
done 3< /tmp/ops
fi
fi

# ================================================================================================
section "figures"
END=$(cut -d' ' -f1 /proc/uptime)
awk -v secs="$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%d", b - a }')" '
    { n++; part[$1]++; if ($4 != "ok") bad++ }
    $1 == 3 { if ($5 == 1) { met++; steps[$2 " " $3] = 1; ops[$2] = 1 } else unmet++
              split($6, es, "/"); errs[es[1]]++; if ($7 == 1) ab++ }
    $1 == 4 { inj4 += $5; ab4 += $7; nops4[$2] = 1; split($6, es, "/"); errs4[es[1]]++; if ($5 == 1 && es[1] == "ok") okinj4++ }
    END {
        printf "cases: %d (%d s): vector ENOSPC %d, data ENOSPC %d, EIO %d, fail-nth %d\n", n, secs, part[1], part[2], part[3], part[4]
        for (s in steps) ns++
        for (o in ops) no++
        printf "EIO: failures injected %d; met by the operation or its syncfs %d, not met %d (blocks it did not read again)\n", part[3], met, unmet
        printf "EIO: distinct (operation, step) cases exercised: %d, over %d operations; journal aborts: %d\n", ns, no, ab
        printf "EIO: operation results:"; for (e in errs) printf " %s %d", e, errs[e]; printf "\n"
        for (o in nops4) no4++
        printf "fail-nth: %d cases over %d operations, a failure injected in %d (the operation succeeded anyway in %d); journal aborts: %d\n", part[4], no4, inj4, okinj4, ab4
        printf "fail-nth: operation results:"; for (e in errs4) printf " %s %d", e, errs4[e]; printf "\n"
        printf "cases with a problem: %d\n", bad
    }' /tmp/results
echo "fsck.vexfs -n: $(grep -c fsck-ok /tmp/fscks) clean, $(grep -c fsck-bad /tmp/fscks) not clean"
echo "kernel warnings: $(dmesg | grep -cE 'WARN''ING|BU''G:|Oo''ps')"
np=$(wc -l < /tmp/problems)
echo "problems: $np"
[ "$np" = 0 ] || { sort /tmp/problems | uniq -c | head -n 40; fail "$np problems (above)"; }
GUEST
)

run_guest --disk "$img3" --disk "$img1" --disk "$img2" --share "$share" --mem 1024 \
    --timeout "$([ "$FULL" = 1 ] && echo 3600 || echo 900)" "$script" "$FULL" "$SEED" "${FAULTS_PARTS:-1 2 3 4}" "${FAULTS_NTH:-}"
echo "079-faults: PASS"
