# Shared paths and helpers for the vexfs scripts. Source it; do not run it.
# shellcheck shell=bash

VEXFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything built outside the repo (kernel tree, initramfs parts) lives here; safe to delete.
VEXFS_CACHE=${VEXFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vexfs}
# Target triple of the static binaries that run in the busybox guest.
VEXFS_MUSL=x86_64-unknown-linux-musl

log() { printf '\033[1m[vexfs]\033[0m %s\n' "$*" >&2; }
die() { printf '[vexfs] error: %s\n' "$*" >&2; exit 1; }

# Version of the Debian kernel source package, e.g. 6.12.117-1~deb12u1 (empty if not installed).
kernel_pkg_version() { dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || true; }

# VEXFS_DEBUG_KERNEL=1 selects the debug kernel (qemu/kernel.config + qemu/kernel-debug.config:
# lockdep, KASAN, ...) and its own build of vexfs.ko for everything below: scripts/setup builds
# them, qemu/run-guest boots them (scripts/test --debug sets it).
debug_kernel() { [ "${VEXFS_DEBUG_KERNEL:-0}" = 1 ]; }

# The config fragments of the selected kernel, in merge order.
kernel_fragments() {
    echo "$VEXFS_ROOT/qemu/kernel.config"
    ! debug_kernel || echo "$VEXFS_ROOT/qemu/kernel-debug.config"
}

# Directory of the configured and built test kernel; keyed by source version and config fragments.
kernel_build_dir() {
    local ver hash name=kernel
    ver=$(kernel_pkg_version)
    [ -n "$ver" ] || die "linux-source-6.12 is not installed: run scripts/setup"
    if debug_kernel; then
        name=kernel-debug
        hash=$(cat "$VEXFS_ROOT/qemu/kernel.config" "$VEXFS_ROOT/qemu/kernel-debug.config" \
            | sha256sum | cut -c1-12)
    else
        hash=$(sha256sum "$VEXFS_ROOT/qemu/kernel.config" | cut -c1-12)
    fi
    echo "$VEXFS_CACHE/$name-${ver//[~:]/_}-$hash"
}

# The vexfs.ko that run-guest loads: the repo's own for the test kernel; for the debug kernel, the
# one built out of tree from a copy of the sources in its cache dir (the repo's stays untouched).
module_path() {
    if debug_kernel; then
        echo "$(kernel_build_dir)/module/vexfs.ko"
    else
        echo "$VEXFS_ROOT/vexfs.ko"
    fi
}

# Timeouts of guest runs are multiplied by this (the debug kernel runs several times slower).
timeout_scale() {
    local s=${VEXFS_TIMEOUT_SCALE:-}
    [ -n "$s" ] || { debug_kernel && s=4 || s=1; }
    [[ $s =~ ^[1-9][0-9]*$ ]] || die "VEXFS_TIMEOUT_SCALE must be a positive integer, not '$s'"
    echo "$s"
}

# The bootable image of the test kernel (built by `scripts/setup kernel`).
kernel_image() { echo "$(kernel_build_dir)/build/arch/x86/boot/bzImage"; }

# Static binaries that run in the guest, and the host builds of the same tools.
VEXFS_MUSL_BIN="$VEXFS_ROOT/target/$VEXFS_MUSL/release"
VEXFS_HOST_BIN="$VEXFS_ROOT/target/release"

# Console lines that mean the guest kernel (or a tool in it) went wrong. Case matters: the kernel
# writes these exactly so, and the boot log has lowercase "panic=-1"/"oops=panic" on its command line.
# Guest scripts must not print these words themselves (tests/guest/002 relies on that).
VEXFS_CONSOLE_ERRORS='BUG:|kernel BUG at|Oops|WARNING:|Kernel panic|general protection fault|Call Trace:|possible circular locking|lockdep is turned off|INFO: task .* blocked|detected stalls|UBSAN|KASAN|rust_panic|panicked at|segfault at|trap invalid opcode'

# Prints the lines of console log FILE that match VEXFS_CONSOLE_ERRORS; status 0 if there are any.
console_errors() { tr -d '\r' < "$1" | grep -aE -- "$VEXFS_CONSOLE_ERRORS"; }

# The least kernel stack (bytes) a guest task may leave unused: an exiting task that used more
# of its stack than any before it prints "used greatest stack depth: N bytes left"
# (CONFIG_DEBUG_STACK_USAGE, qemu/kernel.config), and run-guest fails a run whose lowest N is
# under this floor. Default: a quarter of x86-64's 16 KiB stack.
VEXFS_MIN_STACK_LEFT=${VEXFS_MIN_STACK_LEFT:-4096}

# Prints the least free kernel stack (bytes) a task of console log FILE left at its exit; status
# 1 if the log reports none.
stack_left_min() {
    tr -d '\r' < "$1" | grep -aoE 'used greatest stack depth: [0-9]+ bytes left' | grep -oE '[0-9]+' \
        | sort -n | head -n 1 | grep .
}

# Prints the Python of the benchmarks' venv ($VEXFS_CACHE/bench-venv, with hnswlib, faiss-cpu and
# numpy from PyPI), making and filling it first if needed (python3-venv from Debian if missing).
bench_python() {
    local venv=$VEXFS_CACHE/bench-venv sudo=""
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        mkdir -p "$VEXFS_CACHE"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            rm -rf "$venv"
            [ "$(id -u)" -eq 0 ] || sudo=sudo
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
    fi
    if ! "$venv/bin/python" -c 'import hnswlib, faiss, numpy' 2>/dev/null; then
        log "pip install hnswlib faiss-cpu numpy (hnswlib compiles from source: ~1 min)"
        "$venv/bin/python" -m pip install --quiet hnswlib faiss-cpu numpy >&2
    fi
    echo "$venv/bin/python"
}
