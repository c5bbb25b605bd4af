# Guest side of the crash tests (tests/guest/070-crash-replay.sh, scripts/power-cut), busybox sh:
# the workload with its model of what is acknowledged, the observation of a mounted filesystem,
# and the check of a crash state against the model. The host puts this file, crash-env.sh (FS and
# SMALL), the file contents data/sN (N bytes each) and emb.fvecs (the vectors set) in /share
# (tests/guest/crash-lib.sh: crash_share). Source it after /lib/vexfs/guest-lib.sh.
# shellcheck shell=sh
# shellcheck disable=SC2016 # the workload's commands are eval'ed with $R set

. /share/crash-env.sh
EMB=/share/emb.fvecs
ACK=/tmp/ack
mkdir -p $ACK /tmp/model /mnt2

# observe_tree DIR: one line per entry under DIR (paths relative to DIR), unsorted:
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
# itself failed (its error in /tmp/search.err). Nothing on ext4.
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

# check_state DEV ID WHERE SM SN DATA OP: checks the crash state on DEV against the model.
#   SM: the state acknowledged last ($ACK/aNNN, or $ACK/init); SN: the next acknowledgement's
#   state (SM if none); DATA: keys whose content the operation in flight writes; OP: its name.
# fsck.vexfs -n must find DEV clean (complaints about the journal alone are counted apart), DEV
# must mount (at /mnt2), every key of SM that SN keeps must be seen as it is (a lost file or
# embedding otherwise), nothing that neither has may be seen (stray), and the keys the operation
# in flight changes must all be as in SM or all as in SN (half-done otherwise), a file being
# written holding any content; a key both have (with different values) but not seen is lost. Prints each problem, prefixed with WHERE; appends
# "ID fsck(ok|journal|FAIL) mount(ok|FAIL) lost-files lost-embeddings half-done" to /tmp/results.
# With CHECK_FSCK_AFTER=1, fsck.vexfs -n also runs after the unmount and must exit 0.
# Status 1 if anything is wrong.
check_state() {
    _dev=$1 _id=$2 _where=$3 _sm=$4 _sn=$5 _data=$6 _op=$7
    _fsck=ok
    if [ "$FS" = vexfs ] && ! fsck.vexfs -n "$_dev" > /tmp/fsck.out 2>&1; then
        # Complaints about the journal alone are counted apart (fsck does not replay it yet).
        if grep -v 'inodes, .* blocks used' /tmp/fsck.out | grep -qiv journal; then _fsck=FAIL; else _fsck=journal; fi
        echo "$_where: fsck.vexfs -n: $_fsck"
        head -n 5 /tmp/fsck.out | sed 's/^/    /'
    fi
    if ! mount -t "$FS" "$_dev" /mnt2 2> /tmp/mount.err; then
        echo "$_where: mount FAILED: $(cat /tmp/mount.err)"
        dmesg | grep -i "$FS" | tail -n 3 | sed 's/^/    /'
        echo "$_id $_fsck FAIL 0 0 0" >> /tmp/results
        return 1
    fi
    observe_tree /mnt2 > /tmp/obs.raw
    if ! observe_embeddings /mnt2 >> /tmp/obs.raw; then
        echo "$_where: vexctl search failed: $(cat /tmp/search.err)"
    fi
    sort /tmp/obs.raw > /tmp/obs
    umount /mnt2 || echo "$_where: umount failed"
    # CHECK_FSCK_AFTER=1: after the unmount, fsck.vexfs -n must find it clean (status 0).
    if [ "$FS" = vexfs ] && [ "${CHECK_FSCK_AFTER:-0}" = 1 ] && ! fsck.vexfs -n "$_dev" > /tmp/fsck.out 2>&1; then
        _fsck=FAIL
        echo "$_where: fsck.vexfs -n after umount: FAIL"
        head -n 5 /tmp/fsck.out | sed 's/^/    /'
    fi
    _counts=$(awk -v where="$_where" -v sm="$_sm" -v sn="$_sn" -v dataf="$_data" -v op="$_op" '
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
                } else if (vm != "-" && vn != "-" && vo == "-") {
                    # There before and after the operation in flight, but gone: lost, whatever it did.
                    if (k ~ /^E:/) { what = "LOST embedding"; lost_e++ } else { what = "LOST file"; lost_f++ }
                    if (shown++ < 6) printf "%s: %s %s: acknowledged %s (%s once %s is done), found -\n", where, what, k, vm, vn, op
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
    echo "$_counts" | grep -v '^COUNTS '
    # shellcheck disable=SC2046 # three numbers
    set -- $(echo "$_counts" | grep '^COUNTS ' | cut -d' ' -f2-)
    echo "$_id $_fsck ok $1 $2 $3" >> /tmp/results
    [ "$_fsck" != FAIL ] && [ "$1" = 0 ] && [ "$2" = 0 ] && [ "$3" = 0 ]
}

# dm_create NAME TABLE: creates the device-mapper device NAME from TABLE (dmsetup from /share/dm:
# tests/guest/crash-lib.sh crash_share_dmsetup) and sets DM_DEV to its node /dev/dm-N, made
# with mknod if missing (no udev in the guest).
DM="/share/dm/ld-linux-x86-64.so.2 --library-path /share/dm /share/dm/dmsetup"
dm_create() {
    must $DM create "$1" --table "$2"
    DM_DEV=""
    for _d in /sys/block/dm-*; do
        [ "$(cat "$_d/dm/name")" = "$1" ] && DM_DEV=/dev/${_d##*/}
    done
    [ -n "$DM_DEV" ] || fail "no dm device named $1 in /sys/block"
    if [ ! -b "$DM_DEV" ]; then
        _mm=$(cat "/sys/block/${DM_DEV##*/}/dev")
        must mknod "$DM_DEV" b "${_mm%%:*}" "${_mm##*:}"
    fi
}

# to_replay IMAGE: the journal transactions the next mount of IMAGE would replay (vexctl inspect
# --log), empty if it cannot tell.
to_replay() {
    vexctl inspect --log --json "$1" 2> /dev/null | awk '/"to_replay":/ { gsub(/[^0-9]/, "", $2); print $2 }'
}

# print_figures SECONDS WHAT: the totals of /tmp/results and the kernel's warnings; status 1 if
# any is not zero (or nothing was checked).
print_figures() {
    _warnings=$(dmesg | grep -cE 'WARNING:|BUG:|Oops|Kernel panic')
    awk -v warn="$_warnings" -v secs="$1" -v what="$2" '
        { n++; if ($2 == "FAIL") fsck++; if ($2 == "journal") jrnl++; if ($3 == "FAIL") mnt++
          lf += $4; le += $5; hd += $6; if ($4 > 0) plf++; if ($5 > 0) ple++; if ($6 > 0) phd++ }
        END {
            printf "%s: %d (%d s)\n", what, n, secs
            printf "acknowledged files lost: %d (at %d of them)\n", lf, plf
            printf "acknowledged embeddings lost: %d (at %d of them)\n", le, ple
            printf "half-done or stray states: %d (at %d of them)\n", hd, phd
            printf "fsck failures: %d (and %d complaining about the journal only)\n", fsck, jrnl
            printf "mount failures: %d\n", mnt
            printf "kernel warnings: %d\n", warn
            exit (n == 0 || lf + le + hd + fsck + mnt + warn > 0)
        }' /tmp/results
}

# The workload -------------------------------------------------------------------------------------
# Each operation is applied to /mnt (if WORKLOAD_LIVE=1) and to the model /tmp/model ($R is each
# in turn); its acknowledgement is awaited (fsync, fdatasync, fsync of a directory, syncfs, or
# the return of `vexctl set`), then ack_done aNNN is called (the caller's: a dm-log-writes mark,
# a record on a disk) and the acknowledged state saved: $ACK/aNNN (sorted observe_tree lines of
# the model and E:<row> <path> of the embeddings), $ACK/aNNN.data (keys whose content the
# operation writes), a line "aNNN description [ack]" in $ACK/ops. $ACK/init is the state before.
# With WORKLOAD_STOP=N, operations after the N-th do nothing (to recompute the model quickly).

_op() {
    _N=$((_N + 1))
    _OP="$*"
    _skip=0
    [ -z "${WORKLOAD_STOP:-}" ] || [ $_N -le "$WORKLOAD_STOP" ] || _skip=1
    : > $ACK/cur.data
}
_writes() {
    [ $_skip = 0 ] || return 0
    for _p in "$@"; do echo "P:$_p" >> $ACK/cur.data; done
}
_both() {
    [ $_skip = 0 ] || return 0
    for R in /mnt /tmp/model; do
        [ "$R" = /tmp/model ] || [ "$WORKLOAD_LIVE" = 1 ] || continue
        eval "$1" || fail "op $_N ($_OP): $1 with R=$R"
    done
}
_emb_set() { # FILE ROW...: FILE's embeddings become these rows
    _f=$1
    shift
    awk -v p="$_f" '$2 != p' /tmp/emb > /tmp/emb.new
    for _r in "$@"; do echo "E:$_r $_f" >> /tmp/emb.new; done
    mv /tmp/emb.new /tmp/emb
}
_emb_drop() {
    [ $_skip = 0 ] || return 0
    awk -v p="$1" '$2 != p' /tmp/emb > /tmp/emb.new && mv /tmp/emb.new /tmp/emb
}
_emb_move() { # FROM TO: a rename of a file or of a directory
    [ $_skip = 0 ] || return 0
    awk -v a="$1" -v b="$2" '{
        if ($2 == a) $2 = b
        else if (index($2, a "/") == 1) $2 = b substr($2, length(a) + 1)
        print
    }' /tmp/emb > /tmp/emb.new && mv /tmp/emb.new /tmp/emb
}
_set_rows() { # FILE ROWS (vexctl's --row R or --rows A..B, B excluded)
    [ $_skip = 0 ] && [ "$FS" = vexfs ] || return 0
    case $2 in
        *..*)
            [ "$WORKLOAD_LIVE" != 1 ] || must vexctl set "/mnt/$1" --fvecs $EMB --rows "$2"
            _emb_set "$1" $(seq "${2%%..*}" $((${2##*..} - 1)))
            ;;
        *)
            [ "$WORKLOAD_LIVE" != 1 ] || must vexctl set "/mnt/$1" --fvecs $EMB --row "$2"
            _emb_set "$1" "$2"
            ;;
    esac
}
_rm_embedding() {
    [ $_skip = 0 ] && [ "$FS" = vexfs ] || return 0
    [ "$WORKLOAD_LIVE" != 1 ] || must vexctl rm-embedding "/mnt/$1"
    _emb_drop "$1"
}
_ack() { # fsync FILE | fdatasync FILE | dirsync DIR | syncfs | set
    [ $_skip = 0 ] || return 0
    if [ "$WORKLOAD_LIVE" = 1 ]; then
        case $1 in
            fsync | dirsync) must sync "/mnt/$2" ;;
            fdatasync) must sync -d "/mnt/$2" ;;
            syncfs) must sync -f /mnt ;;
            set) ;;
            *) fail "_ack $1?" ;;
        esac
        ack_done "$(printf 'a%03d' $_N)"
    fi
    _name=$(printf 'a%03d' $_N)
    { observe_tree /tmp/model; cat /tmp/emb; } | sort > $ACK/$_name
    mv $ACK/cur.data $ACK/$_name.data
    echo "$_name $_OP [$*]" >> $ACK/ops
}

# workload: runs the operations (SMALL sets how many small files are made at the end).
workload() {
    _N=0
    _skip=0
    rm -rf /tmp/model
    mkdir -p /tmp/model
    : > /tmp/emb
    : > $ACK/ops
    observe_tree /tmp/model | sort > $ACK/init
    _op "mkdir d1 d2"; _both 'mkdir $R/d1 $R/d2'; _ack syncfs
    _op "create f1 (4096 B)"; _writes f1; _both 'cp /share/data/s4096 $R/f1'; _ack fsync f1
    _op "create d1/f2 (70000 B)"; _writes d1/f2; _both 'cp /share/data/s70000 $R/d1/f2'; _ack fsync d1/f2
    _op "create d1/f3 (1 B)"; _writes d1/f3; _both 'cp /share/data/s1 $R/d1/f3'; _ack fsync d1/f3
    _op "create empty f4"; _writes f4; _both ': > $R/f4'; _ack fsync f4
    _op "SET f1 row 0"; _set_rows f1 0; _ack set
    _op "overwrite 100 B of f1 at 1000"; _writes f1
    _both 'dd if=/share/data/s100 of=$R/f1 bs=100 seek=10 conv=notrunc 2> /dev/null'; _ack fdatasync f1
    _op "append 5000 B to d1/f2"; _writes d1/f2; _both 'cat /share/data/s5000 >> $R/d1/f2'; _ack fsync d1/f2
    _op "rename f1 to d2/g1"; _both 'mv $R/f1 $R/d2/g1'; _emb_move f1 d2/g1; _ack syncfs
    _op "SET d1/f2 rows 1..4 (3 chunks)"; _set_rows d1/f2 1..4; _ack set
    _op "truncate d1/f2 to 5000 B"; _writes d1/f2; _both 'truncate -s 5000 $R/d1/f2'; _ack fsync d1/f2
    _op "unlink d1/f3"; _both 'rm $R/d1/f3'; _ack dirsync d1
    _op "rename d1/f2 to d1/f5"; _both 'mv $R/d1/f2 $R/d1/f5'; _emb_move d1/f2 d1/f5; _ack dirsync d1
    _op "create d2/h (5000 B)"; _writes d2/h; _both 'cp /share/data/s5000 $R/d2/h'; _ack fsync d2/h
    _op "SET d2/h row 4"; _set_rows d2/h 4; _ack set
    _op "rename d2/h over d2/g1"; _both 'mv -f $R/d2/h $R/d2/g1'; _emb_drop d2/g1; _emb_move d2/h d2/g1
    _ack syncfs
    _op "rm-embedding d1/f5"; _rm_embedding d1/f5; _ack fsync d1/f5
    _op "mkdir d3 d3/sub"; _both 'mkdir -p $R/d3/sub'; _ack syncfs
    _op "rmdir d3/sub"; _both 'rmdir $R/d3/sub'; _ack dirsync d3
    _op "SET f4 row 5"; _set_rows f4 5; _ack set
    _op "SET f4 row 6 (replaces row 5)"; _set_rows f4 6; _ack set
    _op "hard link d1/f5 as d1/link"; _both 'ln $R/d1/f5 $R/d1/link'; _ack syncfs
    _op "unlink f4 (and its embedding)"; _both 'rm $R/f4'; _emb_drop f4; _ack syncfs
    _op "unlink d1/f5 (d1/link remains)"; _both 'rm $R/d1/f5'; _ack dirsync d1
    _op "rename directory d3 to d2/d3"; _both 'mv $R/d3 $R/d2/d3'; _ack syncfs
    # A file of 400 one-block extents (every other block): an extent tree of depth 1 (format
    # v3), then truncated into the middle of it and removed.
    _op "sparse d2/sp (400 blocks, every other one)"; _writes d2/sp
    _both 'faultops fill-n 400 2 $R/d2/sp > /dev/null'; _ack fsync d2/sp
    _op "truncate d2/sp to 300 blocks (into its tree)"; _writes d2/sp
    _both 'truncate -s 1228800 $R/d2/sp'; _ack fsync d2/sp
    _op "unlink d2/sp"; _both 'rm $R/d2/sp'; _ack syncfs
    # Preallocation past the end of a file (fallocate KEEP_SIZE: the inode's eofblocks flag and,
    # the first time, the superblock's feature, in the same transaction), a write into it, a
    # truncate to the size (frees it), then mode 0 (the size grows with each block).
    _op "fallocate d2/pa (empty): 10 blocks past its end"; _writes d2/pa
    _both ': > $R/d2/pa && faultops fallocate $R/d2/pa keep 0 40960 > /dev/null'; _ack fsync d2/pa
    _op "write 5000 B into d2/pa's preallocation"; _writes d2/pa
    _both 'dd if=/share/data/s5000 of=$R/d2/pa conv=notrunc 2> /dev/null'; _ack fsync d2/pa
    _op "truncate d2/pa to its size (frees the preallocation)"; _writes d2/pa
    _both 'truncate -s 5000 $R/d2/pa'; _ack fsync d2/pa
    _op "fallocate d2/pa to 20 blocks (the size grows)"; _writes d2/pa
    _both 'faultops fallocate $R/d2/pa alloc 0 81920 > /dev/null'; _ack fsync d2/pa
    _row=7
    _i=1
    while [ $_i -le "$SMALL" ]; do
        _s=$(((_i - 1) % 20 * 300 + 307))
        _op "create d2/d3/s$_i ($_s B)"; _writes d2/d3/s$_i
        _both "cp /share/data/s$_s \$R/d2/d3/s$_i"; _ack fsync d2/d3/s$_i
        if [ $((_i % 3)) = 0 ] && [ $_row -lt 100 ]; then
            _op "SET d2/d3/s$_i row $_row"; _set_rows d2/d3/s$_i $_row; _ack set
            _row=$((_row + 1))
        fi
        if [ $((_i % 4)) = 0 ]; then
            _op "unlink d2/d3/s$((_i - 2))"; _both "rm \$R/d2/d3/s$((_i - 2))"; _emb_drop d2/d3/s$((_i - 2))
            _ack syncfs
        fi
        _i=$((_i + 1))
    done
    _op "rename directory d2/d3 to d4 (embeddings move)"; _both 'mv $R/d2/d3 $R/d4'; _emb_move d2/d3 d4
    _ack syncfs
    _op "rename d2/g1 to g2"; _both 'mv $R/d2/g1 $R/g2'; _emb_move d2/g1 g2; _ack syncfs
    _op "unlink d1/link"; _both 'rm $R/d1/link'; _ack dirsync d1
    _op "rmdir d1"; _both 'rmdir $R/d1'; _ack syncfs
    WORKLOAD_OPS=$_N
    WORKLOAD_LAST=$(printf 'a%03d' $_N)
}

# workload_tail: operations to run after workload (tests/guest/071), each acknowledged by fsync,
# fdatasync, fsync of a directory or a SET, never by syncfs (which also writes the block device's
# dirty buffers home): right after them the journal holds committed transactions whose blocks
# have not reached their home yet (new directory and inode blocks, bitmaps, the vector regions),
# so a crash there leaves a replay with work to do. Embeddings use the rows after workload's.
workload_tail() {
    [ $((_row + 6)) -le 100 ] || fail "workload_tail: rows $_row.. run past the 100 of $EMB"
    _op "mkdir d6"; _both 'mkdir $R/d6'; _ack dirsync .
    _op "create d6/t1 (70000 B)"; _writes d6/t1; _both 'cp /share/data/s70000 $R/d6/t1'; _ack fsync d6/t1
    _op "SET d6/t1 rows $_row..$((_row + 3)) (3 chunks)"; _set_rows d6/t1 $_row..$((_row + 3)); _ack set
    _row=$((_row + 3))
    _op "create d6/t2 (4096 B)"; _writes d6/t2; _both 'cp /share/data/s4096 $R/d6/t2'; _ack fsync d6/t2
    _op "SET d6/t2 row $_row"; _set_rows d6/t2 $_row; _ack set
    _row=$((_row + 1))
    _op "rename g2 to d6/g3"; _both 'mv $R/g2 $R/d6/g3'; _emb_move g2 d6/g3; _ack dirsync d6
    _op "create d6/t3 (5000 B)"; _writes d6/t3; _both 'cp /share/data/s5000 $R/d6/t3'; _ack fdatasync d6/t3
    _op "SET d6/t3 row $_row"; _set_rows d6/t3 $_row; _ack set
    _row=$((_row + 1))
    _op "rm-embedding d6/t2"; _rm_embedding d6/t2; _ack fsync d6/t2
    _op "unlink d6/t3 (and its embedding)"; _both 'rm $R/d6/t3'; _emb_drop d6/t3; _ack dirsync d6
    _op "create d6/t4 (1 B)"; _writes d6/t4; _both 'cp /share/data/s1 $R/d6/t4'; _ack fsync d6/t4
    _op "SET d6/t4 row $_row"; _set_rows d6/t4 $_row; _ack set
    _row=$((_row + 1))
    WORKLOAD_OPS=$_N
    WORKLOAD_LAST=$(printf 'a%03d' $_N)
}
