#!/usr/bin/env bash
# Structure-aware fuzzing of the kernel's image reader (issue 8, item 2): no image crashes the
# kernel. The host writes a populated base image (testkit's mutate_image base: files, an extent
# block, holes, nested and two-block directories, symlinks, hard links, embeddings inline and in
# vector-id blocks, tombstones, pending vectors). In ONE guest boot, mutate_image gen makes
# mutant 0..N-1 of the run's seed, one at a time, in the guest's tmpfs (1 to 3 mutations inside
# inodes, dirents, directory/extent/vector-id blocks, the vector map, HNSW records and header,
# vectors, bitmaps, the journal superblock and the superblock, every checksum recomputed with
# core's own encoders); each is attached with losetup, mounted read-write (errors=continue for
# odd mutants, the default remount-ro for even ones) and exercised: a walk (find + stat), every
# file and symlink read, creates, appends, truncates, renames, links, unlinks, mkdir/rmdir, SET,
# GET and REMOVE of embeddings, searches at ef 5, 64 and 512, rm -rf of whole subtrees, umount.
# Errors (EUCLEAN, EIO, EROFS...) are expected; a kernel WARNING, BUG, Oops or panic is not:
# after each mutant the guest scans dmesg and prints any such report to the console (run-guest
# then fails with 125), and a panic ends the boot right after the "fuzz: mutant I" line naming
# the image. Figures: mutants made, mounted, refused at mount, exercised, with EUCLEAN seen,
# kernel reports (must be 0).
#
#   FUZZ_IMAGES=N (default 200; 10000 for a long run)  FUZZ_FIRST=I (default 0)
#   SEED=S (the mutants' seed)   FUZZ_MUTATIONS=K (mutations per image, default 1 to 3)
# Replay one mutant on the host:
#   target/release/mutate_image base base.img && target/release/mutate_image gen base.img \
#       --seed S --index I --out mutant.img
# (the base's timestamps differ from run to run; the mutations do not).
. "$(dirname "$0")/lib.sh"

MUTATE="$VEXFS_HOST_BIN/mutate_image"
need_tool "$MUTATE"
[ -x "$VEXFS_MUSL_BIN/mutate_image" ] || fail "missing $VEXFS_MUSL_BIN/mutate_image: run scripts/setup tools"
N=${FUZZ_IMAGES:-200}
FIRST=${FUZZ_FIRST:-0}
KMUT=${FUZZ_MUTATIONS:-0}
# The seed of the mutants is a u64: lib.sh's SEED is digits.
share="$T/share"
mkdir -p "$share"
must "$MUTATE" base "$share/base.img" --queries "$share/q.fvecs"
check_fsck "$share/base.img"
"$MUTATE" targets "$share/base.img"
# Wall-clock budget: about 1.2 s per mutant under TCG, plus the boot.
timeout=$((120 + N * 3))

script=$(guest_script fuzz.guest <<'GUEST'
. /lib/vexfs/guest-lib.sh
SEED=$1 N=$2 FIRST=$3 KMUT=$4
cp /share/base.img /tmp/base.img || fail "copy the base image"
cp /share/q.fvecs /tmp/q.fvecs || fail "copy the queries"
mkdir -p /mnt
# Kernel messages below KERN_ERR stay off the serial console (the corruption reports of
# thousands of mutants would slow the run down): every mutant's dmesg is scanned below instead.
dmesg -n 3
dmesg -c > /dev/null
# The kernel's own words for its failures (scripts/lib.sh VEXFS_CONSOLE_ERRORS), built so that
# this script's text never holds them.
B=BUG W=WARN O=Oops
KPAT="$B:|kernel $B at|$O|$W""ING:|Kernel panic|general protection fault|Call Trace:|lockdep|INFO: task .* blocked|detected stalls|UBSAN|KASAN|rust_panic|panicked at|segfault at|trap invalid opcode"
made=0 mounted=0 refused=0 exercised=0 euclean=0 reports=0 mount_euclean=0 ro=0

# q: runs a command of the exercise; its errors go to the log (they are expected).
q() {
    "$@" >> /tmp/ex.out 2>> /tmp/ex.err
}

exercise() {
    m=/mnt
    : > /tmp/ex.out
    : > /tmp/ex.err
    # The walk: every entry stat'ed, every file and symlink read.
    q find $m -exec stat {} +
    q find $m -type f -exec cat {} +
    q find $m -type l -exec readlink {} +
    q find $m -type d -exec ls -la {} +
    # Writes at the root and in existing directories (each may be the mutated one).
    for d in $m $m/docs $m/docs/sub/deep $m/many $m/vec; do
        q sh -c "echo fuzz > $d/fz-new && echo more >> $d/fz-new && mv $d/fz-new $d/fz-moved"
        q mkdir $d/fz-dir
        q touch $d/fz-dir/a
        q ln $d/fz-moved $d/fz-dir/b
        q rm $d/fz-dir/a
    done
    q sh -c "echo append >> $m/hello.txt"
    q truncate -s 3 $m/docs/big.bin
    q truncate -s 100000 $m/docs/frag.bin
    q dd if=/tmp/q.fvecs of=$m/docs/sparse.bin bs=1 seek=6000 conv=notrunc
    q mv $m/docs/sub $m/many/sub-moved
    q mv $m/hard $m/docs/hard2
    q rm $m/many/an-entry-with-a-rather-long-name-007
    q ln -s /nowhere $m/vec/fz-link
    # Embeddings: SET (replacing, new, several chunks), GET, REMOVE; searches at several ef.
    q vexctl set $m/vec/v05 --fvecs /tmp/q.fvecs --row 1
    q vexctl set $m/vec/v11 --fvecs /tmp/q.fvecs --rows 0..6
    q vexctl set $m/fz-moved --fvecs /tmp/q.fvecs --rows 2..4
    q vexctl get $m/vec/v07
    q vexctl rm-embedding $m/vec/v01
    q vexctl rm-embedding $m/vec/v03
    for ef in 5 64 512; do
        q vexctl search $m --fvecs /tmp/q.fvecs --row 3 -k 5 --ef $ef
    done
    q vexctl stats $m
    q sync
    # Removals of whole subtrees (unlink, rmdir, the files' embeddings with them).
    q rm -rf $m/vec/v1 $m/vec/v0 $m/docs $m/many
    q vexctl search $m --fvecs /tmp/q.fvecs --row 5 -k 3 --ef 64
    q rm -rf $m/vec
    q sync
}

i=$FIRST
end=$((FIRST + N))
while [ "$i" -lt "$end" ]; do
    echo "fuzz: mutant $i"
    if [ "$KMUT" -gt 0 ]; then
        desc=$(mutate_image gen /tmp/base.img --seed "$SEED" --index "$i" --out /tmp/m.img --mutations "$KMUT")
    else
        desc=$(mutate_image gen /tmp/base.img --seed "$SEED" --index "$i" --out /tmp/m.img)
    fi || fail "mutate_image gen --seed $SEED --index $i"
    echo "$desc"
    made=$((made + 1))
    losetup /dev/loop0 /tmp/m.img || fail "losetup"
    opts=errors=remount-ro
    [ $((i % 2)) -eq 1 ] && opts=errors=continue
    if out=$(mount -t vexfs -o "$opts" /dev/loop0 /mnt 2>&1); then
        mounted=$((mounted + 1))
        exercise
        if grep -q "Structure needs cleaning" /tmp/ex.err; then euclean=$((euclean + 1)); fi
        if grep -q "Read-only file system" /tmp/ex.err; then ro=$((ro + 1)); fi
        umount /mnt || fail "mutant $i: umount failed"
        exercised=$((exercised + 1))
        echo "fuzz: mutant $i exercised, $(wc -l < /tmp/ex.err) error lines"
    else
        refused=$((refused + 1))
        case "$out" in *"Structure needs cleaning"*) mount_euclean=$((mount_euclean + 1)) ;; esac
        echo "fuzz: mutant $i refused: ${out##*: }"
    fi
    losetup -d /dev/loop0 || fail "losetup -d"
    dmesg -c > /tmp/k.log
    grep -a -m 1 'vexfs (loop0)' /tmp/k.log
    if grep -aqE "$KPAT" /tmp/k.log; then
        reports=$((reports + 1))
        echo "fuzz: KERNEL REPORT with mutant $i: $desc"
        # Shown on the console: run-guest fails the run on these lines.
        cat /tmp/k.log
    fi
    i=$((i + 1))
done
echo "fuzz-figures: seed $SEED mutants $made mounted $mounted refused $refused (EUCLEAN $mount_euclean) exercised $exercised euclean-seen $euclean read-only-seen $ro kernel-reports $reports"
[ "$reports" -eq 0 ] || fail "$reports mutants made kernel reports"
[ "$made" -eq "$N" ] || fail "made $made of $N mutants"
GUEST
)
start=$SECONDS
run_guest --share "$share" --mem 1024 --timeout "$timeout" "$script" "$SEED" "$N" "$FIRST" "$KMUT"
figures=$(grep -a 'fuzz-figures:' "$T/guest-1.log" | tail -n 1)
[ -n "$figures" ] || fail "no figures in the guest log"
echo "${figures#fuzz-figures: } in $((SECONDS - start)) s"
# Every mutant was made, and a good share of them mounted and exercised (the mutations land
# inside structures the kernel reads after mount, so most mount).
read -r _ _ _ made _ mounted _ refused _ _ _ exercised _ <<< "${figures#fuzz-figures: }"
[ "$made" -eq "$N" ] || fail "made $made of $N mutants"
[ "$exercised" -eq "$mounted" ] || fail "mounted $mounted, exercised $exercised"
[ $((mounted * 2)) -ge "$N" ] || fail "only $mounted of $N mutants mounted: the mutations miss"
echo "090-fuzz-images: PASS"
