# Helpers for the guest side of the tests (busybox sh). In a guest script:
#     . /lib/vexfs/guest-lib.sh
# qemu/run-guest puts this file at /lib/vexfs/guest-lib.sh. Guest scripts must never print the
# words the harness treats as kernel errors (BUG:, WARNING:, Oops, panicked at, ...: see
# VEXFS_CONSOLE_ERRORS in scripts/lib.sh): the run would fail with exit 125.
# shellcheck shell=sh

# Prints MSG and ends the test with status 1.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Marks the start of a step in the console log.
section() {
    echo "== $*"
}

# assert_eq ACTUAL EXPECTED MSG
assert_eq() {
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

# json_num KEY FILE: the first number after "KEY": in FILE (vexctl's JSON, as --json prints it).
json_num() {
    grep -o "\"$1\": *[0-9]*" "$2" | head -n 1 | tr -dc 0-9
}

# json_str KEY FILE: the first string after "KEY": in FILE (vexctl's JSON), without its quotes
# (letters and digits: enough for the names vexctl prints, such as distance_impl's).
json_str() {
    grep -o "\"$1\": *\"[A-Za-z0-9]*\"" "$2" | head -n 1 | cut -d'"' -f4
}

# stats_num KEY [PATH]: the number KEY of `vexctl stats PATH --json` (PATH default /mnt).
stats_num() {
    vexctl stats "${2:-/mnt}" --json > /tmp/stats_num.json || fail "vexctl stats ${2:-/mnt} --json"
    json_num "$1" /tmp/stats_num.json
}

# must CMD ARGS...: runs CMD; fails the test (naming CMD) if it fails.
must() {
    "$@" || fail "command failed (status $?): $*"
}

# expect_fail CMD ARGS...: CMD must fail (any non-zero status).
expect_fail() {
    if "$@"; then
        fail "command succeeded but should have failed: $*"
    fi
    return 0
}

# mount_vexfs DEV DIR [OPTIONS]: mounts a vexfs filesystem, creating DIR.
mount_vexfs() {
    mkdir -p "$2" || fail "mkdir $2"
    if [ -n "${3:-}" ]; then
        mount -t vexfs -o "$3" "$1" "$2" || fail "mount -t vexfs -o $3 $1 $2"
    else
        mount -t vexfs "$1" "$2" || fail "mount -t vexfs $1 $2"
    fi
}

# warm_memory: writes and frees a file, on a tmpfs of its own, as large as the available memory
# less 128 MiB, so that the host has backed every guest page before a benchmark
# times anything: QEMU allocates guest RAM on first touch, and a phase that first touches pages
# (the first big write after boot) would pay that host-side cost, which the next phase does not.
warm_memory() {
    _wm=$(sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo)
    _wm=$((${_wm:-0} / 1024 - 128))
    [ "$_wm" -gt 0 ] || return 0
    mkdir -p /warm-memory || fail "warm_memory: mkdir"
    mount -t tmpfs -o size="$_wm"m warm /warm-memory || fail "warm_memory: mount"
    dd if=/dev/zero of=/warm-memory/f bs=1M count="$_wm" 2> /dev/null || fail "warm_memory: dd"
    umount /warm-memory || fail "warm_memory: umount"
}

# file_size FILE: prints the size of FILE in bytes.
file_size() {
    stat -c %s "$1"
}

# Deterministic test data ------------------------------------------------------------------------
# gen_data SEED SIZE: writes SIZE pseudo-random bytes that depend only on SEED (any string) to
# stdout. Every 4 KiB block starts with its block number and the seed's hash, so data read back from
# the wrong block or the wrong file never compares equal. It uses busybox's own awk and xxd, so the
# host makes the same bytes (tests/guest/lib.sh: gen_data and data_md5 run this very function).
# Speed: the emulated guest makes a few MB/s; for large data, generate on the host and pass it
# through --share, or compare checksums (check_md5 with the host's data_md5).
gen_data() {
    _gd_key=$(printf '%s' "$1" | busybox md5sum | cut -c1-7)
    _gd_key=$((0x$_gd_key))
    _gd_blocks=$((($2 + 4095) / 4096))
    busybox awk -v key="$_gd_key" -v blocks="$_gd_blocks" 'BEGIN {
        srand(key)
        for (i = 0; i < 256; i++) hex[i] = sprintf("%02x", i)
        # A pool of 4 random chunks of 4064 bytes (as hex): each block body is one of them, rotated
        # by a random number of bytes. Output is one printf per block, as awk is slow when emulated.
        for (c = 0; c < 4; c++) {
            chunk[c] = ""
            for (p = 0; p < 127; p++) {
                s = ""
                for (i = 0; i < 32; i++) s = s hex[int(rand() * 256)]
                chunk[c] = chunk[c] s
            }
        }
        for (b = 0; b < blocks; b++) {
            c = chunk[int(rand() * 4)]
            off = 2 * int(rand() * 4064)
            # 32-byte header: block number, seed hash, 24 random bytes; then the rotated chunk.
            printf "%08x%08x%s%s%s\n", b, key, substr(chunk[int(rand() * 4)], 2 * int(rand() * 4000) + 1, 48),
                substr(c, off + 1), substr(c, 1, off)
        }
    }' | busybox xxd -r -p | busybox head -c "$2"
}

# write_data FILE SEED SIZE: creates FILE holding gen_data SEED SIZE.
write_data() {
    gen_data "$2" "$3" > "$1" || fail "write_data $1"
}

# check_data FILE SEED SIZE: FILE must hold exactly gen_data SEED SIZE.
check_data() {
    [ -f "$1" ] || fail "check_data: no file $1"
    assert_eq "$(file_size "$1")" "$3" "size of $1"
    # md5sum is much faster than cmp in the emulated guest; cmp then locates a difference.
    if [ "$(gen_data "$2" "$3" | md5sum | cut -d' ' -f1)" != "$(md5sum < "$1" | cut -d' ' -f1)" ]; then
        gen_data "$2" "$3" | cmp - "$1"
        fail "content of $1 differs from gen_data $2 $3"
    fi
}

# check_md5 FILE MD5: FILE's md5sum must be MD5 (e.g. computed on the host by data_md5).
check_md5() {
    [ -f "$1" ] || fail "check_md5: no file $1"
    assert_eq "$(md5sum < "$1" | cut -d' ' -f1)" "$2" "md5sum of $1"
}
