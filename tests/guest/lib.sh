# Host-side helpers for the guest tests tests/guest/NNN-name.sh. Source it first thing:
#     . "$(dirname "$0")/lib.sh"
# It sets `set -euo pipefail`, picks the seed (replay a run with SEED=<seed> tests/guest/NNN-name.sh),
# and makes $T, a temp dir removed on exit (kept if VEXFS_KEEP_TMP=1).
# shellcheck shell=bash
# shellcheck disable=SC2034 # variables set here are for the tests that source this file
set -euo pipefail

# shellcheck source=../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

TEST_NAME=$(basename "$0" .sh)
GUEST_LIB="$VEXFS_ROOT/tests/guest/guest-lib.sh"
RUN_GUEST="$VEXFS_ROOT/qemu/run-guest"
# Host builds of the tools (scripts/setup tools).
MKFS="$VEXFS_HOST_BIN/mkfs.vexfs"
FSCK="$VEXFS_HOST_BIN/fsck.vexfs"
VEXCTL="$VEXFS_HOST_BIN/vexctl"
# Exit statuses of qemu/run-guest when the run itself went wrong.
GUEST_TIMEOUT=124
GUEST_KERNEL_ERROR=125
GUEST_NO_STATUS=126

SEED=${SEED:-$RANDOM$RANDOM}
echo "seed=$SEED (replay: SEED=$SEED ${0#"$VEXFS_ROOT"/})"

T=$(mktemp -d "${TMPDIR:-/tmp}/vexfs-$TEST_NAME.XXXXXX")
_lib_cleanup() {
    local rc=$?
    if [ "${VEXFS_KEEP_TMP:-0}" = 1 ]; then
        echo "kept temp dir $T" >&2
    else
        rm -rf "$T"
        [ "$rc" -eq 0 ] || echo "$TEST_NAME failed (status $rc); to keep its images and logs:" \
            "VEXFS_KEEP_TMP=1 SEED=$SEED ${0#"$VEXFS_ROOT"/}" >&2
    fi
}
trap _lib_cleanup EXIT

# fail MSG: ends the test with status 1.
fail() {
    echo "FAIL: $TEST_NAME: $*" >&2
    exit 1
}

# must CMD ARGS...: runs CMD; fails the test (naming CMD) if it fails.
must() {
    "$@" || fail "command failed (status $?): $*"
}

# need_tool PATH: the host tool must have been built (scripts/setup tools); a test never skips.
need_tool() {
    [ -x "$1" ] || fail "missing $1: run scripts/setup tools"
}

# run_guest [run-guest options] SCRIPT [ARGS...]: qemu/run-guest, with its console log in $T.
# Returns run-guest's status (so `run_guest ...` under set -e fails the test on a non-zero one).
run_guest() {
    VEXFS_GUEST_LOG="$T/guest-$((++_LIB_GUEST_RUNS)).log" "$RUN_GUEST" "$@"
}
_LIB_GUEST_RUNS=0

# guest_script NAME: writes stdin (a heredoc) to $T/NAME and prints its path; for the guest part.
guest_script() {
    cat > "$T/$1"
    echo "$T/$1"
}

# mkraw SIZE: prints the path of a new sparse, unformatted image of SIZE (truncate syntax: 64M).
mkraw() {
    local img
    img=$(mktemp "$T/disk-XXXXXX.img")
    truncate -s "$1" "$img"
    echo "$img"
}

# mkimg SIZE [MKFS_ARGS...]: prints the path of a new image of SIZE formatted by the host
# mkfs.vexfs (options before the image path). mkfs output goes to stderr.
mkimg() {
    local size=$1 img
    shift
    need_tool "$MKFS"
    img=$(mkraw "$size")
    "$MKFS" "$@" "$img" >&2 || fail "mkfs.vexfs $* $img failed"
    echo "$img"
}

# has_node_records IMAGE: whether vexctl inspect shows IMAGE laid out in node records
# (docs/FORMAT.md "Node records"). The listing is read whole before grep sees it: `inspect |
# grep -q` under pipefail fails whenever grep exits before vexctl's last line (SIGPIPE).
has_node_records() {
    local info
    info=$("$VEXCTL" inspect "$1") || fail "vexctl inspect $1"
    grep -q "^Node records:" <<<"$info"
}

# check_fsck IMAGE: the host fsck.vexfs must find IMAGE clean (-n: check only).
check_fsck() {
    need_tool "$FSCK"
    "$FSCK" -n "$1" || fail "fsck.vexfs -n $1 reported problems (status $?)"
}

# gen_data SEED SIZE: the same bytes as gen_data in the guest (it runs the guest-lib function with
# busybox, so both sides use the same awk).
gen_data() {
    busybox sh -c '. "$1"; gen_data "$2" "$3"' sh "$GUEST_LIB" "$1" "$2"
}

# data_md5 SEED SIZE: the md5sum of gen_data SEED SIZE (for check_md5 in the guest).
data_md5() {
    gen_data "$1" "$2" | md5sum | cut -d' ' -f1
}

# expect_status WANT CMD ARGS...: CMD must exit with status WANT.
expect_status() {
    local want=$1 got=0
    shift
    "$@" || got=$?
    [ "$got" -eq "$want" ] || fail "expected status $want, got $got: $*"
}
