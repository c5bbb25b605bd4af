# Guest side helpers of tests/guest/079-faults.sh (busybox sh): the observation of a mounted
# vexfs, the errno of an operation, device-mapper tables that fail chosen blocks, and kernel
# stack frames made readable. Source it
# after /lib/vexfs/guest-lib.sh and /share/crash-guest.sh (dm_create, $DM, $EMB). Never prints the words the harness treats as kernel errors.
# shellcheck shell=sh

# observe MNT: the state a failed operation must leave as it was, one line per item, sorted:
#   P:<path> D | P:<path> L <md5 of the target> | P:<path> F <size>   the tree
#   M:<path> <md5>   each regular file's contents
#   E:<row> <path> <chunk>   each row of $EMB whose nearest vector is at distance 0
#   S: <free blocks> <free inodes> <vectors>   statfs and VEXFS_IOC_STATS (graph + pending)
# Few processes: the guest is emulated, and a process costs milliseconds.
observe() {
    {
        (
            cd "$1" || exit 1
            find . -mindepth 1 -type d | sed 's|^|P:|; s|$| D|'
            find . -mindepth 1 -type f -exec stat -c 'P:%n F %s' {} +
            find . -mindepth 1 -type f -exec md5sum {} + | awk '{ print "M:" $2, $1 }'
            find . -mindepth 1 -type l | while read -r _p; do
                echo "P:$_p L $(readlink "$_p" | md5sum | cut -c1-12)"
            done
        )
        if vexctl search "$1" --fvecs "$EMB" --all -k 1 --json > /tmp/search.json 2> /tmp/search.err; then
            awk -v m="$1/" '{
                q = $0; sub(/^[{]"query":/, "", q); sub(/,.*/, "", q)
                if (match($0, /"path":("[^"]*"|null),"ino":[0-9]+,"chunk":[0-9]+,"distance":[-+.0-9eE]+/)) {
                    r = substr($0, RSTART, RLENGTH)
                    p = r; sub(/^"path":/, "", p); sub(/,"ino".*/, "", p); gsub(/"/, "", p)
                    if (index(p, m) == 1) p = substr(p, length(m) + 1)
                    c = r; sub(/.*"chunk":/, "", c); sub(/,.*/, "", c)
                    d = r; sub(/.*"distance":/, "", d)
                    if (d + 0 == 0) print "E:" q, p, c
                }
            }' /tmp/search.json
        else
            echo "E: search failed: $(cat /tmp/search.err)"
        fi
        _vec=$(vexctl stats "$1" --json 2> /dev/null | grep -o '"vectors": *[0-9]*' | tr -dc 0-9)
        echo "S: $(stat -f -c '%f %d' "$1") ${_vec:-?}"
    } | sort
}

# op_errno CMD: runs the shell command CMD; prints "ok", or the name of the errno it failed with
# (faultops prints it, vexctl names it in its message; SIGBUS from a refused page fault), or
# "status N" if none is named. Status: CMD's. Its whole output is in /tmp/op.out.
op_errno() {
    sh -c "$1" > /tmp/op.out 2>&1
    _rc=$?
    if [ $_rc = 0 ]; then
        echo ok
        return 0
    fi
    _e=$(grep -oE '(ENOSPC|EIO|EROFS|EUCLEAN|ENOMEM|EEXIST|ENOENT|EINVAL|EFBIG|EBUSY|EDEADLK|ENOTEMPTY|EPERM|EACCES|EBADF|SIGBUS)' /tmp/op.out | head -n 1)
    if [ -z "$_e" ]; then
        case $(grep -oE 'os error [0-9]+' /tmp/op.out | head -n 1) in
            "os error 5") _e=EIO ;;
            "os error 28") _e=ENOSPC ;;
            "os error 30") _e=EROFS ;;
            "os error 117") _e=EUCLEAN ;;
            *) _e="status $_rc" ;;
        esac
    fi
    echo "$_e"
    return $_rc
}

# kernel_problems FILE: how many kernel warnings, bugs or oopses the dmesg text FILE holds.
kernel_problems() {
    grep -cE 'WARN''ING|BU''G:|Oo''ps|Kernel pan''ic|lock''dep|circular locking' "$1"
}

# Device-mapper tables over /dev/vda ---------------------------------------------------------------
# fail_table SPEC...: a table of /dev/vda whose 4 KiB blocks in SPEC (each "B" or "B+N", N blocks
# from B) are mapped to the error target and every other block linearly to /dev/vda.
fail_table() {
    for _s in "$@"; do
        case $_s in
            *+*) echo "${_s%%+*} ${_s##*+}" ;;
            *) echo "$_s 1" ;;
        esac
    done | sort -n | awk -v total="$(cat /sys/block/vda/size)" '
        BEGIN { pos = 0 }
        { s = $1 * 8; n = $2 * 8; if (s < pos) { s = pos; n -= pos - $1 * 8 } ; if (n <= 0) next
          if (s > pos) print pos, s - pos, "linear", "/dev/vda", pos
          print s, n, "error"; pos = s + n }
        END { if (pos < total) print pos, total - pos, "linear", "/dev/vda", pos }'
}

# dm_swap NAME TABLE: replaces the table of the live device NAME (the switch suspends it without
# freezing the filesystem on it: --nolockfs), so the mounted filesystem meets the new table's
# errors.
dm_swap() {
    echo "$2" | $DM load "$1" 2> /dev/null || fail "dmsetup load $1: $2"
    $DM resume --nolockfs "$1" 2> /dev/null || fail "dmsetup resume $1"
}

# region_of BLOCK: the name of the region of the part-3 image holding BLOCK (/tmp/regions: the
# region table of vexctl inspect, "name start blocks" per line).
region_of() {
    awk -v b="$1" '$2 <= b && b < $2 + $3 { print $1; found = 1; exit } END { if (!found) print "?" }' /tmp/regions
}

# demangle_frames: stdin to stdout, each Rust (v0, _R...) symbol of a kernel stack frame written
# as its identifiers joined by :: (crudely: generic arguments are flattened into the path), so a
# frame of the module reads vexfs_main::txn::Journal::dirty+0xab/0x123.
demangle_frames() {
    awk 'function demangle(s,    out, i, c, n, j) {
        out = ""; i = 3
        while (i <= length(s)) {
            c = substr(s, i, 1)
            if (c ~ /[0-9]/) {
                # An identifier: its length, an optional "_", its bytes.
                n = 0
                while (i <= length(s) && substr(s, i, 1) ~ /[0-9]/) { n = n * 10 + substr(s, i, 1); i++ }
                if (substr(s, i, 1) == "_") i++
                out = out (out == "" ? "" : "::") substr(s, i, n); i += n
            } else if (c ~ /[BsC]/) {
                # A back-reference (B...), a disambiguator (s..._) or a crate hash (Cs..._): skipped.
                j = i + 1; if (c == "C" && substr(s, j, 1) == "s") j++
                if (c != "C" || j > i + 1) {
                    while (j <= length(s) && substr(s, j, 1) ~ /[0-9A-Za-z]/) j++
                    if (substr(s, j, 1) == "_") { i = j + 1; continue }
                }
                i++
            } else i++
        }
        return out
    }
    { for (f = 1; f <= NF; f++) if ($f ~ /^_R/) { split($f, p, "+"); $f = demangle(p[1]) "+" p[2] } print }'
}
