#!/usr/bin/env bash
# Structure-aware fuzzing of the kernel's image reader (issue 8, item 2): no image crashes the
# kernel. The host writes a populated base image (testkit's mutate_image base: files, an extent
# block, holes, nested and two-block directories, symlinks, hard links, embeddings inline and in
# vector-id blocks, tombstones, pending vectors; and format v3's extent tree of depth 3, FIFOs,
# sockets, devices, xattr blocks with POSIX ACLs, indexed directories), and the older base
# without the v3 structures that the listed regressions were found over (mutate_image base
# --regressions), and the v3 base with PQ codes in node records instead of SQ8 codes
# (mutate_image base --pq: its mutants also hit the codebook, the PQ codes and the
# superblock's PQ fields; the kernel's PQ table, walk and record reads). In ONE guest
# boot, mutate_image gen makes mutant 0..N-1 of the run's seed, one at a time, in the guest's
# tmpfs (1 to 3 mutations inside inodes, dirents, directory/extent/vector-id blocks, extent-tree
# index nodes, xattr blocks, the vector map, HNSW records and header, vectors, bitmaps, the
# journal superblock and the superblock, every checksum recomputed with
# core's own encoders); each is attached with losetup, mounted read-write (errors=continue for
# odd mutants, the default remount-ro for even ones) and exercised by testkit's fuzz_exercise
# (one process: a walk with lstat/stat, every file and symlink read, creates, writes, appends,
# truncates, renames, links, unlinks, mkdir/rmdir, SET, GET and REMOVE of embeddings, searches
# at ef 5, 64 and 512, STATS, sync, the removal of everything), unmounted, mounted again and
# walked; then fsck.vexfs -n checks the result (any status but a panic).
# Errors (EUCLEAN, EIO, EROFS...) are expected; a kernel WARNING, BUG, Oops or panic is not:
# after each mutant the guest scans dmesg and prints any such report to the console (run-guest
# then fails with 125), and a panic ends the boot right after the "fuzz: mutant S/I" line naming
# the image. Figures: mutants made, mounted, refused at mount, exercised, with EUCLEAN seen,
# kernel reports (must be 0).
#
#   FUZZ_IMAGES=N (default 200; 10000 for a long run: about 2 hours on a loaded 2-core host, so
#   raise scripts/test's per-test limit, e.g. VEXFS_TEST_TIMEOUT=36000)  FUZZ_FIRST=I (default 0)
#   FUZZ_PQ_IMAGES=P (mutants of the PQ base, indices FIRST.., default N / 4)
#   SEED=S (the mutants' seed)   FUZZ_MUTATIONS=K (mutations per image, default 1 to 3)
#   FUZZ_ERRORS=continue (every mutant with errors=continue; default: alternate with remount-ro)
# Replay one mutant on the host:
#   target/release/mutate_image base base.img && target/release/mutate_image gen base.img \
#       --seed S --index I --out mutant.img
# (a listed regression: `base --regressions`; a mutant "of base-pq.img": `base --pq`; the
# base's timestamps differ from run to run, the mutations do not).
. "$(dirname "$0")/lib.sh"

MUTATE="$VEXFS_HOST_BIN/mutate_image"
need_tool "$MUTATE"
for t in mutate_image fuzz_exercise; do
    [ -x "$VEXFS_MUSL_BIN/$t" ] || fail "missing $VEXFS_MUSL_BIN/$t: run scripts/setup tools"
done
N=${FUZZ_IMAGES:-200}
NPQ=${FUZZ_PQ_IMAGES:-$((N / 4))}
FIRST=${FUZZ_FIRST:-0}
KMUT=${FUZZ_MUTATIONS:-0}
# The seed of the mutants is a u64: lib.sh's SEED is digits.
share="$T/share"
mkdir -p "$share"
must "$MUTATE" base "$share/base.img"
must "$MUTATE" base --regressions "$share/base-reg.img"
must "$MUTATE" base --pq "$share/base-pq.img"
for b in base base-reg base-pq; do
    check_fsck "$share/$b.img"
done
"$MUTATE" targets "$share/base.img"
"$MUTATE" targets "$share/base-pq.img"
# Mutants that once made the kernel warn or panic, run before the seed's (seed/index):
# drop_nlink in unlink/rmdir and inc_nlink in mkdir (two dirents for one inode, a dirent
# pointing back at a directory, a directory with 0 links; kmod/namei.rs), a block count near
# u64::MAX overflowing in alloc_file_block (a Rust panic: kmod/inode.rs); a NULL dereference
# at umount after errors=remount-ro (20261201/508: the ordered-data list's last reference of
# an unlinked file dropped by vexfs_c_mount_free after the journal is gone, its eviction
# starting a handle in txn::Journal::begin; fixed by f7f647d; 20261201/544 is the same).
REGRESSIONS=(988114993/5 988114993/7 988114993/33 988114993/69 988114993/91 988114993/106
    988114993/115 988114993/159 988114993/180 3107019540/90 20261201/508 20261201/544)
# FUZZ_REGRESSIONS="S/I ..." replaces the list (FUZZ_IMAGES=0 then replays only those).
[ -z "${FUZZ_REGRESSIONS:-}" ] || read -r -a REGRESSIONS <<< "$FUZZ_REGRESSIONS"
# Wall-clock budget: about 0.5 s per mutant under TCG (3 s allowed for a loaded host), plus the boot.
timeout=$((120 + (N + NPQ + ${#REGRESSIONS[@]}) * 3))

script=$(guest_script fuzz.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
SEED=$1 N=$2 FIRST=$3 KMUT=$4 REGRESSIONS=$5 ERRORS=$6 NPQ=$7
cp /share/base.img /share/base-reg.img /share/base-pq.img /tmp/ || fail "copy the base images"
mkdir -p /mnt
# Kernel messages below KERN_ERR stay off the serial console (the corruption reports of
# thousands of mutants would slow the run down): every mutant's dmesg is scanned below instead.
dmesg -n 3
dmesg -c > /dev/null
# The kernel's own words for its failures (scripts/lib.sh VEXFS_CONSOLE_ERRORS), built so that
# this script's text never holds them.
B=BUG W=WARN O=Oops
KPAT="$B:|kernel $B at|$O|$W""ING:|Kernel panic|general protection fault|Call Trace:|lockdep|INFO: task .* blocked|detected stalls|UBSAN|KASAN|rust_panic|panicked at|segfault at|trap invalid opcode"
NREG=$(echo $REGRESSIONS | wc -w)
made=0 mounted=0 refused=0 exercised=0 euclean=0 reports=0 mount_euclean=0 ro=0 remounted=0 tool_panics=0

# fuzz_one BASE S I: makes mutant I of seed S of BASE, mounts it, exercises it, unmounts it,
# scans dmesg.
fuzz_one() {
    b=$1 s=$2 i=$3
    echo "fuzz: mutant $s/$i of ${b##*/}"
    if [ "$KMUT" -gt 0 ]; then
        desc=$(mutate_image gen "$b" --seed "$s" --index "$i" --out /tmp/m.img --mutations "$KMUT")
    else
        desc=$(mutate_image gen "$b" --seed "$s" --index "$i" --out /tmp/m.img)
    fi || fail "mutate_image gen $b --seed $s --index $i"
    echo "$desc"
    made=$((made + 1))
    losetup /dev/loop0 /tmp/m.img || fail "losetup"
    opts=errors=remount-ro
    [ $((i % 2)) -eq 1 ] || [ "$ERRORS" = continue ] && opts=errors=continue
    if out=$(mount -t vexfs -o "$opts" /dev/loop0 /mnt 2>&1); then
        mounted=$((mounted + 1))
        # The exercise, in one process (testkit's fuzz_exercise): its errors are expected.
        ex=$(fuzz_exercise /mnt 2>&1) || ex="$ex (status $?)"
        case "$ex" in *" EUCLEAN 0 "*) ;; *) euclean=$((euclean + 1)) ;; esac
        case "$ex" in *" EROFS 0 "*) ;; *) ro=$((ro + 1)) ;; esac
        umount /mnt || fail "mutant $s/$i: umount failed"
        exercised=$((exercised + 1))
        echo "fuzz: mutant $s/$i exercised: $ex"
        # What the exercise left: mounted again (journal replay, orphans) and walked.
        if mount -t vexfs -o "$opts" /dev/loop0 /mnt 2> /dev/null; then
            remounted=$((remounted + 1))
            find /mnt > /dev/null 2>&1
            umount /mnt || fail "mutant $s/$i: second umount failed"
        fi
    else
        refused=$((refused + 1))
        case "$out" in *"Structure needs cleaning"*) mount_euclean=$((mount_euclean + 1)) ;; esac
        echo "fuzz: mutant $s/$i refused: ${out##*: }"
    fi
    losetup -d /dev/loop0 || fail "losetup -d"
    # The userspace checker on the same bytes: any status but a Rust panic's (101).
    fsck.vexfs -n /tmp/m.img > /tmp/fsck.out 2>&1
    if [ $? -eq 101 ]; then
        tool_panics=$((tool_panics + 1))
        echo "fuzz: fsck.vexfs panicked on mutant $s/$i: $desc"
        tail -n 5 /tmp/fsck.out
    fi
    dmesg -c > /tmp/k.log
    grep -a -m 1 'vexfs (loop0)' /tmp/k.log
    if grep -aqE "$KPAT" /tmp/k.log; then
        reports=$((reports + 1))
        echo "fuzz: KERNEL REPORT with mutant $s/$i: $desc"
        # Shown on the console: run-guest fails the run on these lines.
        cat /tmp/k.log
    fi
}

# Regressions first: mutants that made kernel reports once (seed/index, over base-reg.img).
for r in $REGRESSIONS; do
    fuzz_one /tmp/base-reg.img "${r%/*}" "${r#*/}"
done
i=$FIRST
end=$((FIRST + N))
while [ "$i" -lt "$end" ]; do
    fuzz_one /tmp/base.img "$SEED" "$i"
    i=$((i + 1))
done
i=$FIRST made0=$made mounted0=$mounted
while [ "$i" -lt "$((FIRST + NPQ))" ]; do
    fuzz_one /tmp/base-pq.img "$SEED" "$i"
    i=$((i + 1))
done
echo "fuzz-figures: seed $SEED mutants $made mounted $mounted refused $refused (EUCLEAN $mount_euclean) exercised $exercised euclean-seen $euclean read-only-seen $ro remounted $remounted fsck-panics $tool_panics kernel-reports $reports pq-made $((made - made0)) pq-mounted $((mounted - mounted0))"
[ "$reports" -eq 0 ] || fail "$reports mutants made kernel reports"
[ "$tool_panics" -eq 0 ] || fail "fsck.vexfs panicked on $tool_panics mutants"
[ "$made" -eq "$((N + NPQ + NREG))" ] || fail "made $made of $N + $NPQ + $NREG mutants"
GUEST
)
start=$SECONDS
run_guest --share "$share" --mem 1024 --timeout "$timeout" "$script" "$SEED" "$N" "$FIRST" "$KMUT" "${REGRESSIONS[*]}" "${FUZZ_ERRORS:-alternate}" "$NPQ"
figures=$(grep -a 'fuzz-figures:' "$T/guest-1.log" | tail -n 1)
[ -n "$figures" ] || fail "no figures in the guest log"
echo "${figures#fuzz-figures: } in $((SECONDS - start)) s"
# Every mutant was made, and a good share of them mounted and exercised (the mutations land
# inside structures the kernel reads after mount, so most mount).
read -r _ _ _ made _ mounted _ _ _ _ _ exercised _ <<< "${figures#fuzz-figures: }"
[ "$made" -eq $((N + NPQ + ${#REGRESSIONS[@]})) ] || fail "made $made of $N + $NPQ + ${#REGRESSIONS[@]} mutants"
[ "$exercised" -eq "$mounted" ] || fail "mounted $mounted, exercised $exercised"
[ $((mounted * 2)) -ge $((N + NPQ)) ] || fail "only $mounted of $((N + NPQ)) mutants mounted: the mutations miss"
# The PQ base's mutants ran, and a good share of them mounted (past the kernel's checks of the
# codebook and the PQ fields, which refuse more of them than the other bases' mutants).
pq_made=${figures##* pq-made } pq_made=${pq_made%% *}
pq_mounted=${figures##* pq-mounted } pq_mounted=${pq_mounted%%[!0-9]*}
[ "$pq_made" -eq "$NPQ" ] || fail "made $pq_made of $NPQ mutants of the PQ base"
[ $((pq_mounted * 3)) -ge "$NPQ" ] || fail "only $pq_mounted of $NPQ PQ mutants mounted"
echo "090-fuzz-images: PASS"
